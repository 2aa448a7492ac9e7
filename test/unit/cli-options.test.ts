/**
 * The CLI's grammar and validation without root: durations, flag and config
 * parsing (errors name the flag or field), flags overriding the config file, the
 * legacy `-p/-c` form mapped onto watch, and default tripwire selection against a
 * fake socket table.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { resolveWatch, UsageError } from '../../lib/cli/options.js'
import { formatDuration, needsShell, parseAllowList, parseConfig, parseDuration, resolveConfig } from '../../lib/daemon/config.js'
import { parseCommandLine } from '../../lib/cli/program.js'
import { parsePorts } from '../../lib/bpf/ports.js'
import { DEFAULT_TRIPWIRES, listeningPorts, unusedTripwires, withoutListening } from '../../lib/listening.js'

function watchOf(argv: string[]) {
  const p = parseCommandLine(argv)
  if (p.command !== 'watch') throw new Error(`not watch: ${p.command}`)
  return p
}

describe('durations', () => {
  it('parses units and combinations', () => {
    expect(parseDuration('90s')).toBe(90_000)
    expect(parseDuration('5m')).toBe(300_000)
    expect(parseDuration('1h')).toBe(3_600_000)
    expect(parseDuration('2d')).toBe(172_800_000)
    expect(parseDuration('500ms')).toBe(500)
    expect(parseDuration('1h30m')).toBe(5_400_000)
  })
  it('refuses bare numbers and unknown units', () => {
    for (const bad of ['5x', '60', '', 'h', '1.5h', '-1m', '1 h']) expect(() => parseDuration(bad), bad).toThrow(expect.objectContaining({ code: 'PORTANOIA_BAD_CONFIG', message: expect.stringMatching(/is not a duration/) }))
  })
  it('formats back', () => {
    expect(formatDuration(3_600_000)).toBe('1h')
    expect(formatDuration(5_400_000)).toBe('1h30m')
    expect(formatDuration(90_000)).toBe('1m30s')
  })
})

describe('watch flags', () => {
  it('collects ports per protocol and maps options onto the policy', () => {
    const p = watchOf(['watch', '--tcp', '2222,2323', '--tcp', '9000-9010', '--udp', '5353', '--sctp', '2905', '--block', 'all',
      '--block-ttl', '2h', '--spoofable-ttl', '90s', '--max-blocks-per-minute', '10', '--max-active-blocks', '100',
      '--allow', '10.0.0.0/8', '--allow', '2001:db8::/32', '--threshold', '2', '--window', '30s', '--backend', 'ipset',
      '--exec', 'logger {src}', '--webhook', 'https://hooks.example/x', '--json', '--dry-run'])
    const plan = resolveWatch(p.input)
    expect(plan.ports).toEqual(parsePorts(['2222/tcp', '2323/tcp', '9000-9010/tcp', '5353/udp', '2905/sctp']))
    expect(plan.policy).toMatchObject({ block: 'all', blockTtlMs: 7_200_000, spoofableTtlMs: 90_000, maxBlocksPerMinute: 10, maxActiveBlocks: 100, threshold: 2, windowMs: 30_000, dryRun: true })
    expect(plan.allow).toEqual(['10.0.0.0/8', '2001:db8::/32'])
    expect(plan).toMatchObject({ backend: 'ipset', exec: { command: 'logger {src}', shell: false }, webhook: 'https://hooks.example/x', json: true, dryRun: true, useDefaults: false })
  })

  it('--ip-proto adds IP protocol tripwires, on top of the default ports when no port is given; --unused refuses them', () => {
    const only = resolveWatch(watchOf(['watch', '--ip-proto', '47,50']).input)
    expect(only.ports).toEqual([{ proto: 'ip', from: 47, to: 47 }, { proto: 'ip', from: 50, to: 50 }])
    expect(only.useDefaults).toBe(true)
    const both = resolveWatch(watchOf(['watch', '--tcp', '2222', '--ip-proto', '97-99']).input)
    expect(both.ports).toEqual([{ proto: 'tcp', from: 2222, to: 2222 }, { proto: 'ip', from: 97, to: 99 }])
    expect(both.useDefaults).toBe(false)
    expect(() => resolveConfig({ ipProto: [6] })).toThrow(/IP protocol 6 cannot be a tripwire/)
    expect(() => resolveConfig({ ipProto: [256] })).toThrow(/outside 0\.\.255/)
    expect(() => resolveConfig({ unused: ['47/ip'] })).toThrow(/IP protocols have no sockets/)
  })

  it('uses the default set when no port is given', () => {
    const plan = resolveWatch(watchOf(['watch']).input)
    expect(plan.useDefaults).toBe(true)
    expect(plan.policy.block).toBe('verified')
    expect(plan.policy.blockTtlMs).toBe(3_600_000)
    expect(plan.backend).toBe('nftables')
  })

  it.each([
    [['watch', '--block-ttl', '5x'], /--block-ttl: "5x" is not a duration/],
    [['watch', '--allow', '300.1.1.1/8'], /--allow "300.1.1.1\/8"/],
    [['watch', '--tcp', '70000'], /--tcp: .*70000 is outside 1..65535/],
    [['watch', '--tcp', '22/udp'], /--tcp: "22\/udp" is not a tcp port/],
    [['watch', '--tcp', '2222,2222'], /listed twice/],
    [['watch', '--block', 'maybe'], /--block: "maybe" is not a block mode/],
    [['watch', '--threshold', '0'], /--threshold: "0" is not a whole number/],
    [['watch', '--window', '500ms'], /--window: 500ms is shorter than the 1s minimum/],
    [['watch', '--backend', 'pf'], /--backend: "pf" is not a backend/],
    [['watch', '--webhook', 'ftp://x'], /--webhook: only http\(s\)/],
    [['watch', '--interface', 'a/b'], /--interface/],
    // ipset's limit is 2147483 s (~24.8 days): refused before the sets and rules are made.
    [['watch', '--backend', 'ipset', '--block-ttl', '30d'], /--block-ttl: 30d is longer than ipset allows \(24d20h31m23s\)/],
    [['watch', '--backend', 'ipset', '--block-ttl', '1h', '--spoofable-ttl', '25d'], /--spoofable-ttl: 25d is longer than the verified TTL \(--block-ttl 1h\)/],
    // nftables' limit is 2^31-1 s: 25000d used to pass here and then fail every block.
    [['watch', '--block-ttl', '25000d'], /--block-ttl: 25000d is longer than nftables allows \(24855d3h14m7s\)/],
    // A forged packet must not buy a longer block than a handshake.
    [['watch', '--spoofable-ttl', '2h'], /--spoofable-ttl: 2h is longer than the verified TTL \(--block-ttl default 1h\)/],
  ])('%j is refused with a clear message', (argv, message) => {
    expect(() => resolveWatch(watchOf(argv).input)).toThrow(message)
  })

  it('accepts the longest TTL ipset takes, and long TTLs with nftables', () => {
    expect(resolveWatch(watchOf(['watch', '--backend', 'ipset', '--block-ttl', '24d20h31m23s']).input).policy.blockTtlMs).toBe(2_147_483_000)
    expect(resolveWatch(watchOf(['watch', '--block-ttl', '30d']).input).policy.blockTtlMs).toBe(30 * 86_400_000)
    expect(resolveWatch(watchOf(['watch', '--block-ttl', '24855d3h14m7s']).input).policy.blockTtlMs).toBe((2 ** 31 - 1) * 1000)
  })

  it('a verified TTL shorter than the default spoofable one shortens the spoofable default with it', () => {
    expect(resolveWatch(watchOf(['watch', '--block-ttl', '2s']).input).policy).toMatchObject({ blockTtlMs: 2000, spoofableTtlMs: 2000 })
    expect(resolveWatch(watchOf(['watch', '--block-ttl', '2h', '--spoofable-ttl', '2h']).input).policy.spoofableTtlMs).toBe(7_200_000)
  })

  it('refuses unknown flags and missing values at parse time', () => {
    expect(() => parseCommandLine(['watch', '--bogus'])).toThrow(/unknown option '--bogus'/)
    expect(() => parseCommandLine(['watch', '--tcp'])).toThrow(/argument missing/)
    expect(() => parseCommandLine(['nope'])).toThrow(UsageError)
  })
})

describe('config file', () => {
  it('holds what the flags hold; flags override field by field', () => {
    const config = parseConfig(JSON.stringify({ tcp: [2222, '2323'], udp: '5353', block: 'all', blockTtl: '2h', allow: ['10.0.0.0/8'], json: true }), 'c.json')
    const plan = resolveWatch(watchOf(['watch', '--block-ttl', '3h', '--allow', '192.0.2.0/24']).input, config)
    expect(plan.ports).toEqual(parsePorts(['2222/tcp', '2323/tcp', '5353/udp']))
    expect(plan.policy.block).toBe('all')
    expect(plan.policy.blockTtlMs).toBe(10_800_000)
    expect(plan.allow).toEqual(['192.0.2.0/24'])
    expect(plan.json).toBe(true)
  })

  it('takes comments and trailing commas', () => {
    const text = [
      '// tripwires for the web tier',
      '{',
      '  "tcp": [2222, 3389], /* RDP too */',
      '  "block": "all",',
      '}',
    ].join('\n')
    expect(resolveWatch({}, parseConfig(text, 'c.json')).ports).toEqual(parsePorts(['2222/tcp', '3389/tcp']))
  })

  it('says file:line:column and what is wrong, with the nearest field for a misspelt one', () => {
    expect(() => parseConfig('{"blokTtl": "1h"}', 'c.json')).toThrow('c.json:1:2: unknown field "blokTtl" (did you mean "blockTtl"?)')
    expect(() => parseConfig('{\n  "tcp": [2222],\n  "frobnicate": 1\n}', 'c.json')).toThrow(/^c\.json:3:3: unknown field "frobnicate"$/)
    expect(() => parseConfig('{"block": "maybe"}', 'c.json')).toThrow(/^c\.json:1:11: field block: /)
    expect(() => parseConfig('{\n"maxActiveBlocks": 0}', 'c.json')).toThrow(/^c\.json:2:20: field maxActiveBlocks: /)
    expect(() => parseConfig('{"tcp": true}', 'c.json')).toThrow(/^c\.json:1:9: field tcp: /)
    expect(() => parseConfig('[1]', 'c.json')).toThrow(/^c\.json:1:1: the config file must hold one JSON object/)
    expect(() => parseConfig('{\n  "tcp": [2222]\n  "udp": [53]\n}', 'c.json')).toThrow(/^c\.json:3:3: comma expected/)
    expect(() => parseConfig('{', 'c.json')).toThrow(/^c\.json:1:2: /)
    const bad = parseConfig('{\n  "blockTtl": "5x"}', 'c.json')
    expect(() => resolveWatch({}, bad)).toThrow('c.json:2:3 (field blockTtl): "5x" is not a duration')
    const badAllow = parseConfig('{"allow": ["300.1.1.1/8"]}', 'c.json')
    expect(() => resolveWatch({}, badAllow)).toThrow(/^c\.json:1:2 \(field allow\) "300\.1\.1\.1\/8"/)
    // Flags win, so a flag's value is named as the flag even when the file has the field.
    expect(() => resolveWatch(watchOf(['watch', '--block-ttl', '7x']).input, bad)).toThrow(/^--block-ttl: "7x"/)
  })

  it('an embedding service passes the same shape, errors name the field', () => {
    const config = resolveConfig({ tcp: [2222], udp: '5353', block: 'all', spoofableTtl: '2m' })
    expect(config.ports).toEqual(parsePorts(['2222/tcp', '5353/udp']))
    expect(config.policy).toMatchObject({ block: 'all', spoofableTtlMs: 120_000, blockTtlMs: 3_600_000 })
    expect(config.backend).toBe('nftables')
    expect(() => resolveConfig({ blockTtl: 'soon' })).toThrow(expect.objectContaining({ code: 'PORTANOIA_BAD_CONFIG', message: 'field blockTtl: "soon" is not a duration' }))
  })

  it('an allow file: one address or CIDR a line, # comments; a bad line is named file:line', () => {
    expect(parseAllowList('# admins\n192.0.2.7\n\n2001:db8::/32  # v6 office\n', 'allow.txt')).toEqual(['192.0.2.7', '2001:db8::/32'])
    expect(() => parseAllowList('192.0.2.7\n10.0.0.0/33\n', 'allow.txt')).toThrow(/^allow\.txt:2: /)
  })
})

describe('ring size', () => {
  it('--ring-records and ringRecords size the daemon\'s ring (262,144 by default); out of range or not a number is an error that says the bounds', () => {
    expect(resolveWatch(watchOf(['watch', '--tcp', '2222']).input).ringRecords).toBe(1 << 18)
    expect(resolveWatch(watchOf(['watch', '--tcp', '2222', '--ring-records', '65536']).input).ringRecords).toBe(65_536)
    expect(resolveWatch({}, parseConfig('{"tcp": [2222], "ringRecords": 131072}', 'c.json')).ringRecords).toBe(131_072)
    expect(() => resolveWatch(watchOf(['watch', '--ring-records', '32']).input)).toThrow(/^--ring-records: 32 is not 64 to 16,777,216 records/)
    expect(() => resolveWatch(watchOf(['watch', '--ring-records', '1e6']).input)).toThrow(/^--ring-records: "1e6" is not a whole number/)
    expect(() => resolveConfig({ ringRecords: 1 << 25 })).toThrow(expect.objectContaining({ code: 'PORTANOIA_BAD_CONFIG', hint: expect.stringMatching(/96 bytes/) }))
    expect(() => parseConfig('{"ringRecords": -1}', 'c.json')).toThrow(/^c\.json:1:17: field ringRecords: /)
  })
})

describe('legacy form', () => {
  it('maps -p/-c onto watch with the exec responder and no firewall table', () => {
    const p = watchOf(['-p', '1337', '-c', 'iptables -A INPUT -s [SRC_IP] -j DROP'])
    expect(p.legacy).toBe(true)
    const plan = resolveWatch(p.input)
    expect(plan.ports).toEqual(parsePorts(['1337/tcp']))
    expect(plan.backend).toBe('none')
    expect(plan.exec).toEqual({ command: 'iptables -A INPUT -s [SRC_IP] -j DROP', shell: false })
    expect(plan.policy.block).toBe('verified')
  })
  it('runs commands with shell syntax through sh, plain ones as argv', () => {
    expect(needsShell('iptables -A INPUT -s [SRC_IP] -j DROP')).toBe(false)
    expect(needsShell("logger 'a | b' \"c;d\"")).toBe(false)
    expect(needsShell('iptables -I INPUT -s [SRC_IP] -j DROP && logger x')).toBe(true)
    expect(needsShell('echo [SRC_IP] >> /var/log/x')).toBe(true)
    const p = watchOf(['-p', '1337', '-c', 'echo [SRC_IP] | logger'])
    expect(resolveWatch(p.input).exec).toEqual({ command: 'echo [SRC_IP] | logger', shell: true })
  })
  it('-p without -c watches with the default response; -c without -p is an error', () => {
    const plan = resolveWatch(watchOf(['-p', '1337,2222']).input)
    expect(plan.ports).toEqual(parsePorts(['1337/tcp', '2222/tcp']))
    expect(plan.backend).toBe('nftables')
    expect(() => parseCommandLine(['-c', 'x'])).toThrow(/-c needs -p/)
  })
})

describe('other commands', () => {
  it('parses list, unblock, uninstall, selftest', () => {
    expect(parseCommandLine(['list', '--json'])).toEqual({ command: 'list', json: true })
    expect(parseCommandLine(['unblock', '192.0.2.1', '2001:db8::1', '--netns', 'x'])).toEqual({ command: 'unblock', addresses: ['192.0.2.1', '2001:db8::1'], netns: 'x' })
    expect(parseCommandLine(['list', '--backend', 'ipset', '--control', '/tmp/p.sock'])).toEqual({ command: 'list', backend: 'ipset', control: '/tmp/p.sock' })
    expect(parseCommandLine(['uninstall', '--backend', 'ipset'])).toEqual({ command: 'uninstall', backend: 'ipset' })
    expect(() => parseCommandLine(['uninstall', '--backend', 'pf'])).toThrow(UsageError)
    expect(parseCommandLine(['selftest'])).toEqual({ command: 'selftest', keep: false })
    expect(() => parseCommandLine(['unblock'])).toThrow(/missing required argument/)
    expect(parseCommandLine(['--help'])).toMatchObject({ command: 'help', exitCode: 0 })
  })

  it('parses status, reload, block and the watch control flags', () => {
    expect(parseCommandLine(['status'])).toEqual({ command: 'status' })
    expect(parseCommandLine(['status', '--json', '--netns', 'x'])).toEqual({ command: 'status', json: true, netns: 'x' })
    expect(parseCommandLine(['reload', '--control', '/run/p.sock'])).toEqual({ command: 'reload', control: '/run/p.sock' })
    expect(parseCommandLine(['block', '192.0.2.1', '--ttl', '10m', '--config', '/etc/p.json'])).toEqual({
      command: 'block',
      addresses: ['192.0.2.1'],
      ttl: '10m',
      config: '/etc/p.json',
    })
    expect(() => parseCommandLine(['block'])).toThrow(/missing required argument/)
    expect(() => parseCommandLine(['status', '--backend', 'ipset'])).toThrow(UsageError)
    expect(watchOf(['watch', '--tcp', '2222', '--control', '/tmp/p.sock']).input.control).toBe('/tmp/p.sock')
    expect(watchOf(['watch', '--tcp', '2222', '--no-control']).input.control).toBe(false)
    expect(watchOf(['watch', '--tcp', '2222']).input.control).toBeUndefined()
  })

  it('control: a path (absolute, fits a socket address) or false, from a flag or the config file', () => {
    expect(resolveWatch({ tcp: ['2222'], control: '/tmp/p.sock' }).control).toBe('/tmp/p.sock')
    expect(resolveWatch({ tcp: ['2222'], control: false }).control).toBe(false)
    expect(resolveWatch({ tcp: ['2222'] }).control).toBeUndefined()
    expect(() => resolveWatch({ tcp: ['2222'], control: 'relative.sock' })).toThrow(/--control: "relative.sock" is not a usable socket path/)
    expect(() => resolveWatch({ tcp: ['2222'], control: `/${'x'.repeat(107)}` })).toThrow(/not a usable socket path/)
    expect(resolveWatch({}, parseConfig('{"tcp": [2222], "control": false}', 'p.json')).control).toBe(false)
    expect(() => resolveWatch({}, parseConfig('{"tcp": [2222], "control": 7}', 'p.json'))).toThrow(/p\.json:1:\d+: field control/)
  })

  it('an unknown command is named as one, with the nearest command when it looks like a typo', () => {
    expect(() => parseCommandLine(['frobnicate'])).toThrow(/^unknown command "frobnicate"$/)
    expect(() => parseCommandLine(['wach', '--tcp', '2222'])).toThrow('unknown command "wach" (did you mean watch?)')
    expect(() => parseCommandLine(['help', 'nope'])).toThrow(/unknown command "nope"/)
  })

  it('`help COMMAND` prints that command\'s help, `help` the program\'s', () => {
    const watch = parseCommandLine(['help', 'watch'])
    expect(watch).toMatchObject({ command: 'help', exitCode: 0 })
    expect((watch as { text: string }).text).toMatch(/^Usage: portanoia watch /)
    expect((watch as { text: string }).text).toMatch(/--block-ttl/)
    expect((parseCommandLine(['help']) as { text: string }).text).toMatch(/^Usage: portanoia \[options\] \[command\]/)
  })

  it('--version prints the version package.json holds', () => {
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '../../package.json'), 'utf8')) as { version: string }
    expect(parseCommandLine(['--version'])).toEqual({ command: 'help', text: `${pkg.version}\n`, exitCode: 0 })
  })
})

// /proc/net/tcp rows: LISTEN (0A) on 0.0.0.0:6379 (18EB) and 0.0.0.0:22; an ESTABLISHED client.
const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0100007F:0BB8 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
`
// UDP: 0.0.0.0:1900 (076C) unconnected (07); a connected client on 0BB9 (01) is not a service.
const UDP = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 00000000:076C 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4 2 0000000000000000 0
  2: 0100007F:0BB9 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 5 2 0000000000000000 0
`

describe('default tripwires and --unused', () => {
  const listening = listeningPorts({ tcp: TCP, tcp6: null, udp: UDP, udp6: null, sctp: null }, 'LE')

  it('reads the listening table', () => {
    expect([...listening.tcp].sort((a, b) => a - b)).toEqual([22, 6379])
    expect([...listening.udp]).toEqual([1900])
  })

  it('skips default tripwires a local service uses', () => {
    const sel = withoutListening(parsePorts(DEFAULT_TRIPWIRES), listening)
    expect(sel.skipped).toEqual(parsePorts(['6379/tcp', '1900/udp']))
    const kept = sel.ports.map((r) => `${r.from}/${r.proto}`)
    expect(kept).toContain('2222/tcp')
    expect(kept).not.toContain('6379/tcp')
    expect(kept).not.toContain('1900/udp')
  })

  it('--unused: the range minus listening ports, explicit tripwires kept', () => {
    const set = unusedTripwires(parsePorts(['2222/tcp']), parsePorts(['20-25/tcp', '1899-1901/udp']), listening)
    expect(set).toEqual(parsePorts(['20-21/tcp', '23-25/tcp', '2222/tcp', '1899/udp', '1901/udp']))
  })

  it('--unused leaves out the ephemeral range, for every protocol; explicit tripwires in it stay', () => {
    const none = { tcp: new Set<number>(), udp: new Set<number>(), sctp: new Set<number>() }
    const set = unusedTripwires(parsePorts(['40500/tcp']), parsePorts(['30000-65535/tcp', '30000-65535/udp', '39000-41000/sctp']), none, [40000, 50000])
    expect(set).toEqual(parsePorts(['30000-39999/tcp', '40500/tcp', '50001-65535/tcp', '30000-39999/udp', '50001-65535/udp', '39000-39999/sctp']))
  })
})
