/**
 * Decoy grouping (lib/attribution/decoy.ts), scan shapes (lib/daemon/scans.ts) and tool
 * guesses (lib/daemon/scan-tools.ts) on synthetic hits. Hits are decoded from records
 * laid out as native/hit_record.h says (test/helpers/fake-binding.ts hitRecord), so the numbers the tracker keys by (the probe's
 * shape, the TCP fingerprint, the source hash) come from the real decoder; attribution is
 * set per hit, as an attributor would answer. The tool fingerprints are the values seen
 * on the wire from nmap 7.93, masscan 1.3.2 and zmap 2.1.1 (scan-tools.ts).
 */
import { describe, expect, it } from 'vitest'
import { DecoyGrouper } from '../../lib/attribution/decoy.js'
import { decodeHit } from '../../lib/decode.js'
import { decoyEvent, parseEventLine, scanEvent, toJsonLine } from '../../lib/daemon/events.js'
import { TOOL_MASSCAN, TOOL_NMAP, TOOL_NONE, TOOL_ZMAP, toolOf } from '../../lib/daemon/scan-tools.js'
import { type ScanReport, ScanTracker } from '../../lib/daemon/scans.js'
import { type Attribution, type Hit, PROBE_SHAPE, SOURCE_HASH, TCP_OPTIONS, TCP_SHAPE } from '../../lib/types.js'
import { type FakeHit, hitRecord } from '../helpers/fake-binding.js'

interface Probe extends Omit<FakeHit, 'kind'> {
  kind?: FakeHit['kind']
  /** ms since the epoch. */
  time: number
  attribution?: Attribution
  evidence?: string[]
}

const NMAP_SYN = { kind: 'syn', window: 1024, options: 'mss1460', ttl: 47 } as const
/** A Linux client's SYN: window 64240, MSS SACK-permitted TS NOP WS, TTL 64. */
const LINUX_SYN = { kind: 'syn', window: 64240, options: [2, 4, 8, 1, 3], ttl: 64 } as const

/** A decoded hit with the attribution an attributor would have given it. */
function hit(p: Probe): Hit {
  const d = decodeHit(hitRecord({ srcPort: 46997, window: 1024, ttl: 47, ipId: 58723, ...p, kind: p.kind ?? 'syn' }), 0, () => 'eth0') as Hit & { toJSON(): Omit<Hit, 'timeNs'> }
  const attribution = p.attribution ?? 'plausible'
  const evidence = p.evidence ?? []
  return {
    ...d.toJSON(),
    timeNs: d.timeNs,
    attribution,
    evidence,
    [PROBE_SHAPE]: () => d[PROBE_SHAPE]!(),
    [TCP_SHAPE]: () => d[TCP_SHAPE]!(),
    [SOURCE_HASH]: () => d[SOURCE_HASH]!(),
  }
}

/** nmap -D: each probe from every decoy and the sender, back to back (µs apart), the TTL drawn per packet. */
function decoyScan(sender: string, decoys: readonly string[], ports: readonly number[], t0: number, forged = true): Hit[] {
  const out: Hit[] = []
  ports.forEach((port, i) => {
    const all = [...decoys.slice(0, 2), sender, ...decoys.slice(2)]
    all.forEach((src, j) => {
      out.push(
        hit({
          ...NMAP_SYN,
          src,
          dstPort: port,
          ipId: 1000 + i,
          ttl: 37 + ((i * 7 + j * 5) % 23),
          time: t0 + i * 2 + j * 0.005,
          attribution: src === sender || !forged ? 'plausible' : 'forged',
          evidence: src === sender || !forged ? ['rpf:pass'] : ['rpf:no-route'],
        }),
      )
    })
  })
  return out
}

describe('tool fingerprints', () => {
  const shape = (window: number, options: number): number => window + options * 65536

  it('nmap: window 1024, MSS 1460 alone on a SYN, no options on its other raw probes, TTL at most 59', () => {
    expect(toolOf('syn', shape(1024, TCP_OPTIONS.mss1460), 47, 5555)).toBe(TOOL_NMAP)
    for (const k of ['fin', 'null', 'xmas', 'ack', 'maimon'] as const) expect(toolOf(k, shape(1024, TCP_OPTIONS.none), 40, 1)).toBe(TOOL_NMAP)
    // The same SYN with a TTL no nmap draws, or a window nmap does not send, is not nmap.
    expect(toolOf('syn', shape(1024, TCP_OPTIONS.mss1460), 64, 5555)).toBe(TOOL_NONE)
    expect(toolOf('syn', shape(2048, TCP_OPTIONS.mss1460), 47, 5555)).toBe(TOOL_NONE)
    expect(toolOf('fin', shape(1024, TCP_OPTIONS.mss1460), 40, 1)).toBe(TOOL_NONE)
  })

  it('masscan: SYN, window 1024, TTL 255 less the hops, no options or MSS 1460', () => {
    expect(toolOf('syn', shape(1024, TCP_OPTIONS.none), 254, 38055)).toBe(TOOL_MASSCAN)
    expect(toolOf('syn', shape(1024, TCP_OPTIONS.mss1460), 240, 38055)).toBe(TOOL_MASSCAN)
    expect(toolOf('syn', shape(1024, TCP_OPTIONS.other), 254, 38055)).toBe(TOOL_NONE)
  })

  it('zmap: SYN with IP ID 54321 and a TTL from 255', () => {
    expect(toolOf('syn', shape(65535, TCP_OPTIONS.none), 254, 54321)).toBe(TOOL_ZMAP)
    expect(toolOf('syn', shape(65535, TCP_OPTIONS.none), 60, 54321)).toBe(TOOL_NONE)
  })

  it('an ordinary stack: no guess; not TCP: no guess', () => {
    expect(toolOf('syn', shape(64240, TCP_OPTIONS.other), 64, 1234)).toBe(TOOL_NONE)
    expect(toolOf('udp', 0, 40, 1)).toBe(TOOL_NONE)
  })

  it('the decoder reads the window and the options class from the record', () => {
    expect(hit({ src: '198.18.0.2', dstPort: 1, time: 0, ...NMAP_SYN })[TCP_SHAPE]!()).toBe(shape(1024, TCP_OPTIONS.mss1460))
    expect(hit({ src: '198.18.0.2', dstPort: 1, time: 0, ...LINUX_SYN })[TCP_SHAPE]!()).toBe(shape(64240, TCP_OPTIONS.other))
    expect(hit({ src: '198.18.0.2', dstPort: 1, time: 0, window: 1024 })[TCP_SHAPE]!()).toBe(shape(1024, TCP_OPTIONS.none))
  })
})

describe('probe shape', () => {
  it('is the same for copies of one probe from other sources with other TTLs, and differs with the IP ID, port or window', () => {
    const base = { ...NMAP_SYN, dstPort: 2001, ipId: 77, time: 0 }
    const a = hit({ ...base, src: '198.18.0.2', ttl: 40 })[PROBE_SHAPE]!()
    expect(hit({ ...base, src: '105.64.251.101', ttl: 55 })[PROBE_SHAPE]!()).toBe(a)
    expect(hit({ ...base, src: '198.18.0.2', ipId: 78 })[PROBE_SHAPE]!()).not.toBe(a)
    expect(hit({ ...base, src: '198.18.0.2', dstPort: 2002 })[PROBE_SHAPE]!()).not.toBe(a)
    expect(hit({ ...base, src: '198.18.0.2', window: 2048 })[PROBE_SHAPE]!()).not.toBe(a)
    expect(hit({ ...base, src: '198.18.0.2', srcPort: 1 })[PROBE_SHAPE]!()).not.toBe(a)
  })
})

describe('decoy grouping', () => {
  const decoys = ['105.64.251.101', '190.190.205.185', '69.139.155.236', '23.1.2.3']

  it('nmap -D: one group over every probe, the one member not forged named its sender and marked', () => {
    const marks: Array<[string, readonly string[]]> = []
    const g = new DecoyGrouper({ mark: (src, names) => marks.push([src, names]) })
    const t0 = 1_700_000_000_000
    const hits = decoyScan('198.18.0.2', decoys, [2001, 2002, 2003], t0)
    for (const h of hits) g.observe(h)
    const { report } = g.sweep(t0 + 1000)
    expect(report).toHaveLength(1)
    const group = report[0]!
    expect(group.sender).toBe('198.18.0.2')
    expect(group.members.map((m) => m.src).sort()).toEqual([...decoys, '198.18.0.2'].sort())
    expect(group.probes).toBe(3)
    expect(group.ports.sort()).toEqual([2001, 2002, 2003])
    expect(group.members.find((m) => m.src === '198.18.0.2')!.attribution).toBe('plausible')
    expect(new Map(marks).get('198.18.0.2')).toEqual(['decoy', 'decoy:sender'])
    for (const d of decoys) expect(new Map(marks).get(d)).toEqual(['decoy'])
    // Reported once.
    expect(g.sweep(t0 + 2000).report).toHaveLength(0)
    const e = parseEventLine(toJsonLine(decoyEvent(group)))
    expect(e).toMatchObject({ type: 'decoy', sender: '198.18.0.2', memberCount: 5, probes: 3 })
  })

  it('with no member or several not forged, no sender is named (and nobody is marked the sender)', () => {
    const marks: Array<[string, readonly string[]]> = []
    const g = new DecoyGrouper({ mark: (src, names) => marks.push([src, names]) })
    for (const h of decoyScan('198.18.0.2', decoys, [2001, 2002], 0, false)) g.observe(h)
    const [group] = g.sweep(1000).report
    expect(group!.sender).toBeUndefined()
    expect(group!.members.every((m) => m.attribution === 'plausible')).toBe(true)
    expect(marks.every(([, names]) => !names.includes('decoy:sender'))).toBe(true)
  })

  it('waits for pending answers (until settleMs), and follows them when they settle', () => {
    const g = new DecoyGrouper({ settleMs: 2000 })
    const hits = decoyScan('198.18.0.2', decoys, [2001], 0).map((h) => (h.src === decoys[0] ? { ...h, attribution: 'plausible' as const, evidence: ['pending'] } : h))
    for (const h of hits) g.observe(h)
    expect(g.sweep(100).report).toHaveLength(0)
    g.settled(decoys[0]!, 'forged')
    const [group] = g.sweep(200).report
    expect(group!.sender).toBe('198.18.0.2')
    // Unsettled for good: reported anyway after settleMs, with no sender while two are not forged.
    const h2 = new DecoyGrouper({ settleMs: 2000 })
    for (const h of hits) h2.observe(h)
    expect(h2.sweep(1999).report).toHaveLength(0)
    expect(h2.sweep(2000).report[0]!.sender).toBeUndefined()
  })

  it('a source repeating its own probe, or the same probe from another source outside the window, is no group', () => {
    const g = new DecoyGrouper({ windowMs: 10 })
    const p = { ...NMAP_SYN, dstPort: 2001, ipId: 5 }
    g.observe(hit({ ...p, src: '198.18.0.2', time: 0 }))
    g.observe(hit({ ...p, src: '198.18.0.2', time: 1 }))
    g.observe(hit({ ...p, src: '198.18.0.3', time: 50 }))
    expect(g.sweep(1000).report).toHaveLength(0)
    expect(g.stats()).toMatchObject({ coincidences: 0, groups: 0 })
  })

  it('verified hits never join a group', () => {
    const g = new DecoyGrouper()
    const p = { ...NMAP_SYN, dstPort: 2001, ipId: 5, time: 0 }
    g.observe({ ...hit({ ...p, src: '198.18.0.2' }), verified: true })
    g.observe({ ...hit({ ...p, src: '198.18.0.3' }), verified: true })
    expect(g.sweep(1000).report).toHaveLength(0)
  })

  it('ends a group after idleMs and forgets it', () => {
    const g = new DecoyGrouper({ idleMs: 5000 })
    for (const h of decoyScan('198.18.0.2', decoys, [2001], 0)) g.observe(h)
    expect(g.sweep(100).report).toHaveLength(1)
    expect(g.groupOf('198.18.0.2', 200)).toBeDefined()
    const { ended } = g.sweep(10_000)
    expect(ended).toHaveLength(1)
    expect(g.groupOf('198.18.0.2', 10_000)).toBeUndefined()
    expect(g.stats().active).toBe(0)
  })
})

describe('scan shapes', () => {
  const starts = (rs: ScanReport[]): ScanReport[] => rs.filter((r) => r.phase === 'start')

  it('vertical: one source, several ports; tool nmap; ends after the idle time with its counts', () => {
    const t = new ScanTracker({ idleMs: 5000 })
    for (let i = 0; i < 6; i++) t.observe(hit({ ...NMAP_SYN, src: '198.18.0.2', dstPort: 2001 + i, ipId: 100 + i, ttl: 40 + i, time: i }))
    const { scans } = t.sweep(1000)
    expect(scans).toHaveLength(1)
    expect(scans[0]).toMatchObject({ phase: 'start', shape: 'vertical', src: '198.18.0.2', tool: 'nmap', portCount: 6, hits: 6, attribution: 'plausible' })
    expect(scans[0]!.ports).toEqual([2001, 2002, 2003, 2004, 2005, 2006])
    expect(t.sweep(2000).scans).toHaveLength(0)
    const end = t.sweep(10_000).scans
    expect(end).toMatchObject([{ phase: 'end', id: scans[0]!.id, shape: 'vertical', hits: 6 }])
    expect(parseEventLine(toJsonLine(scanEvent(end[0]!)))).toMatchObject({ type: 'scan', phase: 'end', shape: 'vertical', tool: 'nmap' })
  })

  it('the resets a scanner’s kernel sends the tripwire listeners are no vote against its tool (answers, not counted)', () => {
    const t = new ScanTracker()
    for (let i = 0; i < 3; i++) {
      t.observe(hit({ ...NMAP_SYN, src: '198.18.0.2', dstPort: 2001 + i, ipId: 100 + i, time: i }))
      for (let j = 0; j < 2; j++) t.observe(hit({ kind: 'rst', window: 0, ttl: 64, src: '198.18.0.2', dstPort: 2001 + i, ipId: 0, time: i + 0.1 }))
    }
    const [scan] = t.sweep(1000).scans
    expect(scan).toMatchObject({ shape: 'vertical', tool: 'nmap', hits: 3, kinds: ['syn'] })
  })

  it('horizontal: one source, one port, two addresses of this host; no tool for an ordinary stack', () => {
    const t = new ScanTracker()
    t.observe(hit({ ...LINUX_SYN, src: '198.18.0.2', dst: '198.18.0.1', dstPort: 23, ipId: 1, time: 0 }))
    t.observe(hit({ ...LINUX_SYN, src: '198.18.0.2', dst: '198.18.0.9', dstPort: 23, ipId: 2, time: 1 }))
    const [scan] = t.sweep(1000).scans
    expect(scan).toMatchObject({ shape: 'horizontal', src: '198.18.0.2', dsts: ['198.18.0.1', '198.18.0.9'], ports: [23] })
    expect(scan!.tool).toBeUndefined()
  })

  it('resets are answers, not probes: a neighbour resetting the SYN-ACKs that forged SYNs in its name drew is no scan; a real scanner\'s resets change nothing', () => {
    const t = new ScanTracker()
    // The neighbour's kernel resets four SYN-ACKs it never asked for: no scan of its own.
    for (let i = 0; i < 4; i++) t.observe(hit({ kind: 'rst', window: 0, options: 'none', ttl: 64, src: '198.18.0.5', dstPort: 3000 + i, ipId: 0, time: i }))
    // nmap -sS: its SYNs, then its own kernel's resets: one vertical nmap scan, as without them.
    for (let i = 0; i < 4; i++) {
      t.observe(hit({ ...NMAP_SYN, src: '198.18.0.6', dstPort: 3000 + i, time: i }))
      t.observe(hit({ kind: 'rst', window: 0, options: 'none', ttl: 64, src: '198.18.0.6', dstPort: 3000 + i, ipId: 0, time: i + 0.5 }))
    }
    const scans = t.sweep(1000).scans
    expect(scans.map((s) => s.src)).toEqual(['198.18.0.6'])
    expect(scans[0]).toMatchObject({ shape: 'vertical', tool: 'nmap', portCount: 4 })
  })

  it('two probes to one port of one address are no scan', () => {
    const t = new ScanTracker()
    t.observe(hit({ ...NMAP_SYN, src: '198.18.0.2', dstPort: 23, time: 0 }))
    t.observe(hit({ ...NMAP_SYN, src: '198.18.0.2', dstPort: 23, ipId: 9, time: 1 }))
    expect(t.sweep(1000).scans).toHaveLength(0)
  })

  it('tools: masscan and zmap probes are guessed', () => {
    const t = new ScanTracker()
    for (let i = 0; i < 4; i++) t.observe(hit({ kind: 'syn', window: 1024, options: 'none', ttl: 254, src: '198.18.0.3', dstPort: 3000 + i, ipId: 38000 + i * 17, time: i }))
    for (let i = 0; i < 4; i++) t.observe(hit({ kind: 'syn', window: 65535, options: 'none', ttl: 254, src: '198.18.0.4', dstPort: 4000 + i, ipId: 54321, time: i }))
    const tools = new Map(t.sweep(1000).scans.map((s) => [s.src, s.tool]))
    expect(tools).toEqual(new Map([['198.18.0.3', 'masscan'], ['198.18.0.4', 'zmap']]))
  })

  it('decoy: one scan for the group, named by its sender; no scan of its own for any member', () => {
    const t = new ScanTracker()
    const decoys = ['105.64.251.101', '190.190.205.185', '69.139.155.236']
    for (const h of decoyScan('198.18.0.2', decoys, [2001, 2002, 2003, 2004], 0)) t.observe(h)
    const { scans, decoys: groups } = t.sweep(1000)
    expect(groups).toHaveLength(1)
    expect(starts(scans)).toHaveLength(1)
    expect(scans[0]).toMatchObject({ shape: 'decoy', src: '198.18.0.2', decoy: groups[0]!.id, sourceCount: 4, tool: 'nmap', attribution: 'plausible' })
    expect(scans[0]!.ports.sort()).toEqual([2001, 2002, 2003, 2004])
    expect(t.sweep(2000).scans).toHaveLength(0)
    expect(t.stats()).toMatchObject({ decoy: 1, vertical: 0 })
  })

  it('distributed: two plausible sources with one fingerprint split a port set; forged sources are not a distributed scan', () => {
    const t = new ScanTracker()
    for (const [src, ports] of [['198.18.0.2', [2001, 2003]], ['198.18.1.2', [2002, 2004]]] as const) {
      ports.forEach((p, i) => t.observe(hit({ ...NMAP_SYN, src, dstPort: p, ipId: p, time: i })))
    }
    const { scans } = t.sweep(1000)
    expect(scans).toHaveLength(1)
    expect(scans[0]).toMatchObject({ shape: 'distributed', sourceCount: 2, portCount: 4, tool: 'nmap' })
    expect(scans[0]!.sources.sort()).toEqual(['198.18.0.2', '198.18.1.2'])
    expect(scans[0]!.src).toBeUndefined()

    const f = new ScanTracker()
    for (const [src, ports] of [['198.18.0.2', [2001, 2003]], ['198.18.1.2', [2002, 2004]]] as const) {
      ports.forEach((p, i) => f.observe(hit({ ...NMAP_SYN, src, dstPort: p, ipId: p, time: i, attribution: 'forged' })))
    }
    expect(f.sweep(1000).scans).toHaveLength(0)
  })

  it('overlapping port sets are two sources, not one distributed scan', () => {
    const t = new ScanTracker()
    for (const [j, src] of ['198.18.0.2', '198.18.1.2'].entries()) [2001, 2002].forEach((p, i) => t.observe(hit({ ...NMAP_SYN, src, dstPort: p, ipId: p + i * 10 + j * 100, time: i })))
    expect(t.sweep(1000).scans).toHaveLength(0)
  })

  it('bounded: a flood of one-packet sources never evicts a scan in progress; what does not fit is counted', () => {
    const t = new ScanTracker({ sets: 1 })
    for (let i = 0; i < 3; i++) t.observe(hit({ ...NMAP_SYN, src: '198.18.0.2', dstPort: 2001 + i, ipId: i, time: i }))
    for (let i = 0; i < 2; i++) t.observe(hit({ ...NMAP_SYN, src: '198.18.0.3', dstPort: 23, ipId: 50 + i, time: i }))
    for (let i = 0; i < 1000; i++) t.observe(hit({ ...NMAP_SYN, src: `203.0.${i >> 8}.${i & 255}`, dstPort: 23, ipId: 10_000 + i, time: 10 }))
    t.observe(hit({ ...NMAP_SYN, src: '198.18.0.2', dstPort: 2004, ipId: 9, time: 11 }))
    const { scans } = t.sweep(1000)
    expect(scans).toMatchObject([{ shape: 'vertical', src: '198.18.0.2', portCount: 4 }])
    expect(t.stats()).toMatchObject({ tracked: 2, untracked: 1000 })
  })
})
