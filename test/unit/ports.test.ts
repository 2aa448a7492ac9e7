/**
 * Unit tests for lib/bpf/ports.ts: every accepted spelling of a tripwire, the
 * canonical output (per protocol, sorted, adjacent ranges merged), each refusal
 * with its code and a hint, and the text round trip through portsToString.
 */

import { describe, expect, test } from 'vitest'
import { parsePortList, parsePorts, portCount, portInSet, portsToString } from '../../lib/bpf/ports.js'
import { PortanoiaError } from '../../lib/errors.js'
import type { PortSpec } from '../../lib/types.js'

function refusal(specs: PortSpec[], code: string, message: RegExp): PortanoiaError {
  try {
    parsePorts(specs)
  } catch (e) {
    expect(e).toBeInstanceOf(PortanoiaError)
    const err = e as PortanoiaError
    expect(err.code).toBe(code)
    expect(err.message).toMatch(message)
    expect(err.hint).toBeTruthy()
    return err
  }
  throw new Error(`expected ${code} for ${JSON.stringify(specs)}`)
}

describe('parsePorts', () => {
  test('every spelling', () => {
    expect(
      parsePorts([
        2222,
        '23',
        '8080/tcp',
        '9000-9010/udp',
        '2905/sctp',
        { port: 445 },
        { port: 161, proto: 'udp' },
        { from: 5900, to: 5910, proto: 'tcp' },
        ' 3389 / TCP ',
        '1000 - 1001/UDP',
      ]),
    ).toEqual([
      { proto: 'tcp', from: 23, to: 23 },
      { proto: 'tcp', from: 445, to: 445 },
      { proto: 'tcp', from: 2222, to: 2222 },
      { proto: 'tcp', from: 3389, to: 3389 },
      { proto: 'tcp', from: 5900, to: 5910 },
      { proto: 'tcp', from: 8080, to: 8080 },
      { proto: 'udp', from: 161, to: 161 },
      { proto: 'udp', from: 1000, to: 1001 },
      { proto: 'udp', from: 9000, to: 9010 },
      { proto: 'sctp', from: 2905, to: 2905 },
    ])
  })

  test('adjacent ports and ranges merge; the same port on two protocols does not', () => {
    expect(parsePorts(['10', '11', '12-20', 21, '30/udp', '30/tcp', '1-9'])).toEqual([
      { proto: 'tcp', from: 1, to: 21 },
      { proto: 'tcp', from: 30, to: 30 },
      { proto: 'udp', from: 30, to: 30 },
    ])
  })

  test('edges of the port space', () => {
    expect(parsePorts([1, 65535, '1/udp', '65535/udp'])).toEqual([
      { proto: 'tcp', from: 1, to: 1 },
      { proto: 'tcp', from: 65535, to: 65535 },
      { proto: 'udp', from: 1, to: 1 },
      { proto: 'udp', from: 65535, to: 65535 },
    ])
    expect(parsePorts(['1-65535/sctp'])).toEqual([{ proto: 'sctp', from: 1, to: 65535 }])
  })

  test('bad ports', () => {
    refusal([0], 'PORTANOIA_BAD_PORT', /0 is outside 1\.\.65535/)
    refusal([65536], 'PORTANOIA_BAD_PORT', /65536 is outside/)
    refusal([-1], 'PORTANOIA_BAD_PORT', /outside/)
    refusal([22.5], 'PORTANOIA_BAD_PORT', /not an integer/)
    refusal(['22.5'], 'PORTANOIA_BAD_PORT', /not an integer/)
    refusal([Number.NaN], 'PORTANOIA_BAD_PORT', /not an integer/)
    refusal(['ssh'], 'PORTANOIA_BAD_PORT', /not an integer/)
    refusal(['0x16'], 'PORTANOIA_BAD_PORT', /not an integer/)
    refusal([''], 'PORTANOIA_BAD_PORT', /not a port/)
    refusal(['22-'], 'PORTANOIA_BAD_PORT', /not a port/)
    refusal(['22/tcp/udp'], 'PORTANOIA_BAD_PORT', /unknown protocol/)
    refusal(['22/icmp'], 'PORTANOIA_BAD_PORT', /unknown protocol "icmp"/)
    refusal([{ port: 22, proto: 'dccp' as never }], 'PORTANOIA_BAD_PORT', /unknown protocol/)
    const reversed = refusal(['9010-9000/udp'], 'PORTANOIA_BAD_PORT', /reversed/)
    expect(reversed.hint).toMatch(/9000-9010/)
    refusal([{ from: 10, to: 5 }], 'PORTANOIA_BAD_PORT', /reversed/)
    refusal([{ nope: 1 } as never], 'PORTANOIA_BAD_PORT', /not a port/)
    refusal([null as never], 'PORTANOIA_BAD_PORT', /not a port/)
    refusal('22' as never, 'PORTANOIA_BAD_PORT', /array/)
  })

  test('empty set', () => {
    refusal([], 'PORTANOIA_NO_PORTS', /no tripwire ports/)
  })

  test('duplicates and overlaps name the port', () => {
    refusal([22, '22/tcp'], 'PORTANOIA_DUPLICATE_PORT', /port 22\/tcp is listed twice/)
    refusal(['9000-9010/udp', '9005/udp'], 'PORTANOIA_DUPLICATE_PORT', /port 9005\/udp .*"9000-9010\/udp".*"9005\/udp"/)
    refusal(['100-200', '150-300'], 'PORTANOIA_DUPLICATE_PORT', /port 150\/tcp/)
    // containment by an earlier, wider range is still caught after a narrower one
    refusal(['1-1000', '5', '500'], 'PORTANOIA_DUPLICATE_PORT', /port 5\/tcp/)
    refusal(['1-1000', '2000', '1000'], 'PORTANOIA_DUPLICATE_PORT', /port 1000\/tcp/)
  })
})

describe('text and lookup helpers', () => {
  test('portsToString and parsePortList round trip', () => {
    const set = parsePorts(['22', '2222-2230/tcp', '53/udp', '2905/sctp'])
    const text = portsToString(set)
    expect(text).toBe('22/tcp,2222-2230/tcp,53/udp,2905/sctp')
    expect(parsePortList(text)).toEqual(set)
    expect(parsePortList(' 22, 53/udp  2222 ')).toEqual(parsePorts([22, 2222, '53/udp']))
  })

  test('portCount and portInSet', () => {
    const set = parsePorts(['22', '2222-2230/tcp', '53/udp', '2905/sctp', '1-10/udp'])
    expect(portCount(set)).toBe(1 + 9 + 1 + 1 + 10)
    expect(portInSet(set, 'tcp', 22)).toBe(true)
    expect(portInSet(set, 'tcp', 2226)).toBe(true)
    expect(portInSet(set, 'tcp', 2231)).toBe(false)
    expect(portInSet(set, 'udp', 22)).toBe(false)
    expect(portInSet(set, 'udp', 5)).toBe(true)
    expect(portInSet(set, 'udp', 53)).toBe(true)
    expect(portInSet(set, 'sctp', 2905)).toBe(true)
    expect(portInSet(set, 'sctp', 53)).toBe(false)
  })
})

describe('IP protocol tripwires', () => {
  test("'N/ip', ranges and objects; canonical order puts them after the transports", () => {
    expect(parsePorts(['47/ip', '2222/tcp', '97-98/ip', { port: 50, proto: 'ip' }, '112/IP'])).toEqual([
      { proto: 'tcp', from: 2222, to: 2222 },
      { proto: 'ip', from: 47, to: 47 },
      { proto: 'ip', from: 50, to: 50 },
      { proto: 'ip', from: 97, to: 98 },
      { proto: 'ip', from: 112, to: 112 },
    ])
    expect(portsToString(parsePorts(['47/ip', '50/ip']))).toBe('47/ip,50/ip')
    expect(parsePortList('47/ip 22')).toEqual([
      { proto: 'tcp', from: 22, to: 22 },
      { proto: 'ip', from: 47, to: 47 },
    ])
    // The same number as a port and as a protocol are two tripwires.
    expect(parsePorts(['47/tcp', '47/ip'])).toHaveLength(2)
    expect(portInSet(parsePorts(['47/ip']), 'ip', 47)).toBe(true)
    expect(portInSet(parsePorts(['47/ip']), 'tcp', 47)).toBe(false)
  })

  test('refuses numbers outside 0..255 and the protocols that cannot be tripwires, saying why', () => {
    refusal(['256/ip'], 'PORTANOIA_BAD_PORT', /outside 0\.\.255/)
    for (const [n, why] of [
      [6, /TCP has port tripwires/],
      [17, /UDP/],
      [132, /SCTP/],
      [1, /ping/],
      [58, /neighbour discovery/],
      [0, /extension header/],
      [44, /fragment/],
      [51, /AH/],
      [60, /destination options/],
      [255, /reserved/],
    ] as const) {
      refusal([`${n}/ip`], 'PORTANOIA_BAD_PORT', why)
    }
    // A range may not run over one either.
    refusal(['45-55/ip'], 'PORTANOIA_BAD_PORT', /IP protocol 51 cannot be a tripwire/)
    refusal(['47/ip', '47/ip'], 'PORTANOIA_DUPLICATE_PORT', /listed twice/)
  })
})
