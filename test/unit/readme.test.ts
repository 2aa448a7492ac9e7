/**
 * Keeps README.md's reference tables true to the code, entry by entry and both ways
 * (nothing missing, nothing extra): each event's field list, nested objects included
 * (lib/daemon/events.ts, lib/fleet/events.ts; record keys are data, not fields), and
 * the values listed for `action`, `reason`, `op`, `why` and `outcome`; the flags of the
 * `portanoia watch` usage block against the commander program itself, and the
 * commands beside it; every row of the Metrics table (names, type, labels) against
 * the prom-client registry; the `sensor.stats()` totals against what a sensor
 * returns; the Hit fields and scan kinds of the iterator section. docs/fleet.md names
 * every fleet metric. A new field, flag, metric or counter fails here until the
 * README documents it, and a documented one that is gone fails too.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { buildProgram } from '../../lib/cli/program.js'
import { blockBypassedEventSchema, decisionEventSchema, decoyEventSchema, errorEventSchema, FIREWALL_OPS, firewallEventSchema, hitEventSchema, operatorEventSchema, PREFIX_OPS, prefixEventSchema, scanEventSchema, statsEventSchema } from '../../lib/daemon/events.js'
import { forgeryEventSchema } from '../../lib/attribution/events.js'
import { Metrics } from '../../lib/daemon/metrics.js'
import { FLEET_OPS, fleetDecisionEventSchema, fleetEventSchema, SKIP_WHYS } from '../../lib/fleet/events.js'
import { ACTIONS, REASON_CODES } from '../../lib/policy/decision.js'
import { open } from '../../lib/sensor.js'
import { SCAN_KINDS } from '../../lib/types.js'
import { fakeBinding } from '../helpers/fake-binding.js'

const README = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8')
const FLEET_DOC = readFileSync(join(import.meta.dirname, '../../docs/fleet.md'), 'utf8')

/** The text under `heading` (e.g. '## Events', '### `sensor.stats()`') up to the next heading of that level or above. */
function section(heading: string): string {
  const start = README.indexOf(`\n${heading}\n`)
  if (start < 0) throw new Error(`README.md has no "${heading}" heading`)
  const level = heading.indexOf(' ')
  const next = README.slice(start + heading.length + 2).search(new RegExp(`\\n#{1,${level}} `))
  return README.slice(start, next < 0 ? undefined : start + heading.length + 2 + next)
}

/** The inline code spans of `text`, in order, whitespace runs folded. */
function spans(text: string): string[] {
  return [...text.matchAll(/`([^`]+)`/g)].map((m) => m[1]!.replace(/\s+/g, ' ').trim())
}

/** `a b (c d) e` → paths a, b, b.c, b.d, e: a word's parenthesised list is its fields. */
function listPaths(text: string): string[] {
  const out: string[] = []
  const stack: string[] = []
  let last: string | undefined
  for (const token of text.match(/[()]|[^\s()]+/g) ?? []) {
    if (token === '(') {
      if (last === undefined) throw new Error(`"(" with no field before it in "${text}"`)
      stack.push(last)
    } else if (token === ')') {
      stack.pop()
    } else {
      last = stack.length === 0 ? token : `${stack.at(-1)!}.${token}`
      out.push(last)
    }
  }
  return out
}

/** Field paths of a zod object schema, nested objects (also as array elements) included; records are data. */
function schemaPaths(schema: z.ZodType, prefix = ''): string[] {
  let s: z.ZodType = schema
  for (;;) {
    if (s instanceof z.ZodOptional || s instanceof z.ZodNullable) s = s.unwrap() as z.ZodType
    else if (s instanceof z.ZodArray) s = s.element as z.ZodType
    else break
  }
  if (!(s instanceof z.ZodObject)) return []
  const out: string[] = []
  for (const [key, value] of Object.entries(s.shape as Record<string, z.ZodType>)) {
    if (prefix === '' && ['type', 'time', 'v'].includes(key)) continue // common to every event, said once
    out.push(`${prefix}${key}`)
    out.push(...schemaPaths(value, `${prefix}${key}.`))
  }
  return out
}

const sorted = (xs: Iterable<string>): string[] => [...new Set(xs)].sort()

/**
 * One event's entry in the Events section: the text after "- `NAME`…: " up to the next
 * entry, and within it up to the first `;` outside code spans (what follows is prose).
 */
function entry(events: string, name: string): string {
  const m = new RegExp(`\\n- \`${name}\`[^\\n]*?: ([\\s\\S]*?)(?=\\n- |\\n\\n|$)`).exec(events)
  if (m === null) throw new Error(`README.md Events section has no "- \`${name}\`" entry`)
  let inCode = false
  for (let i = 0; i < m[1]!.length; i++) {
    const c = m[1]![i]
    if (c === '`') inCode = !inCode
    else if (c === ';' && !inCode) return m[1]!.slice(0, i)
  }
  return m[1]!
}

/**
 * Splits an entry into its value lists — `field` (`a`, `b|c`, …) — and its field lists
 * (every other code span). `guard:self|gateway` names guard:self and guard:gateway.
 */
function parseEntry(text: string): { values: Record<string, string[]>; paths: string[] } {
  const values: Record<string, string[]> = {}
  const rest = text.replace(/`([A-Za-z]+)`\s+\(((?:`[^`]+`(?:,\s*(?:or\s+)?)?)+)\)/g, (_m, field: string, list: string) => {
    const out: string[] = []
    for (const v of spans(list)) {
      const [head, ...alts] = v.split('|')
      out.push(head!)
      const prefix = head!.includes(':') ? head!.slice(0, head!.indexOf(':') + 1) : ''
      for (const a of alts) out.push(`${prefix}${a}`)
    }
    values[field] = out
    return `\`${field}\``
  })
  // `source: 'fleet'` documents the field `source` with its one value.
  const paths = spans(rest).flatMap((s) => listPaths(s.replace(/:\s*'[^']*'$/, '')))
  return { values, paths }
}

describe('README.md Events section', () => {
  const events = section('## Events')

  it('a sanity check of this test: nested lists and value lists parse', () => {
    expect(listPaths('a b (c d (e)) f')).toEqual(['a', 'b', 'b.c', 'b.d', 'b.d.e', 'f'])
    expect(parseEntry('`x` (`a`, `g:b|c`), `y z (w)`')).toEqual({ values: { x: ['a', 'g:b', 'g:c'] }, paths: ['x', 'y', 'z', 'z.w'] })
    expect(schemaPaths(decisionEventSchema)).toContain('trigger.dstPort')
  })

  const cases: Array<[string, z.ZodType]> = [
    ['hit', hitEventSchema],
    ['decision', decisionEventSchema],
    ['fleet decision', fleetDecisionEventSchema],
    ['stats', statsEventSchema],
    ['error', errorEventSchema],
    ['fleet', fleetEventSchema],
    ['operator', operatorEventSchema],
    ['firewall', firewallEventSchema],
    ['prefix', prefixEventSchema],
    ['block-bypassed', blockBypassedEventSchema],
    ['forgery', forgeryEventSchema],
    ['scan', scanEventSchema],
    ['decoy', decoyEventSchema],
  ]
  for (const [name, schema] of cases) {
    it(`lists exactly the fields of the ${name} event`, () => {
      expect(sorted(parseEntry(entry(events, name)).paths)).toEqual(sorted(schemaPaths(schema)))
    })
  }

  it('lists exactly the actions and reason codes of a decision', () => {
    const { values } = parseEntry(entry(events, 'decision'))
    expect(sorted(values.action ?? [])).toEqual(sorted(ACTIONS))
    expect(sorted(values.reason ?? [])).toEqual(sorted(REASON_CODES))
  })

  it('lists exactly the actions and reasons of a fleet decision', () => {
    const { values } = parseEntry(entry(events, 'fleet decision'))
    const shape = fleetDecisionEventSchema.shape
    expect(sorted(values.action ?? [])).toEqual(sorted(shape.action.options))
    expect(sorted(values.reason ?? [])).toEqual(sorted(shape.reason.options.flatMap((o) => ('options' in o ? o.options : [o.value]))))
    expect(sorted(values.source ?? ['fleet'])).toEqual(['fleet'])
  })

  it('lists exactly the ops and outcomes of an operator event', () => {
    const { values } = parseEntry(entry(events, 'operator'))
    expect(sorted(values.op ?? [])).toEqual(sorted(operatorEventSchema.shape.op.options))
    expect(sorted(values.outcome ?? [])).toEqual(sorted(operatorEventSchema.shape.outcome.options))
  })

  it('lists exactly the ops of a firewall event', () => {
    const { values } = parseEntry(entry(events, 'firewall'))
    expect(sorted(values.op ?? [])).toEqual(sorted(FIREWALL_OPS))
  })

  it('lists exactly the paths of a block-bypassed event', () => {
    const { values } = parseEntry(entry(events, 'block-bypassed'))
    expect(sorted(values.path ?? [])).toEqual(sorted(blockBypassedEventSchema.shape.path.options))
  })

  it('lists exactly the phases and shapes of a scan event', () => {
    const { values } = parseEntry(entry(events, 'scan'))
    expect(sorted(values.phase ?? [])).toEqual(sorted(scanEventSchema.shape.phase.options))
    expect(sorted(values.shape ?? [])).toEqual(sorted(scanEventSchema.shape.shape.options))
  })

  it('lists exactly the ops of a prefix event', () => {
    const { values } = parseEntry(entry(events, 'prefix'))
    expect(sorted(values.op ?? [])).toEqual(sorted(PREFIX_OPS))
  })

  it('lists exactly the ops of a fleet event and the reasons a fleet ban is skipped', () => {
    const { values } = parseEntry(entry(events, 'fleet'))
    expect(sorted(values.op ?? [])).toEqual(sorted(FLEET_OPS))
    expect(sorted(values.why ?? [])).toEqual(sorted(SKIP_WHYS))
  })
})

describe('README.md CLI section', () => {
  const usage = /```\n([\s\S]*?)```/.exec(section('## CLI'))?.[1] ?? ''
  const program = buildProgram(() => {}, () => {}, () => {})

  it('the watch usage names exactly the visible flags of `portanoia watch`', () => {
    const watchUsage = usage.slice(usage.indexOf('portanoia watch'), usage.indexOf('\nportanoia ', usage.indexOf('portanoia watch')))
    const documented = sorted(watchUsage.match(/(?<![\w-])--?[a-z][a-z0-9-]*/g) ?? [])
    const watch = program.commands.find((c) => c.name() === 'watch')!
    const flags = watch.options.filter((o) => !o.hidden).flatMap((o) => [o.long, o.short].filter((f): f is string => f !== undefined))
    expect(flags.length).toBeGreaterThan(20)
    expect(documented).toEqual(sorted(flags))
  })

  it('names exactly the visible commands', () => {
    const documented = sorted([...usage.matchAll(/^portanoia ([a-z]+)/gm)].map((m) => m[1]!))
    const commands = program.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden).map((c) => c.name())
    expect(documented).toEqual(sorted(commands.filter((c) => c !== 'help')))
  })
})

describe('README.md Metrics table', () => {
  const rows = section('## Metrics')
    .split('\n')
    .filter((l) => l.startsWith('| `'))
    .map((l) => l.split('|').slice(1, -1).map((c) => c.trim()))
  const registry = new Metrics({ defaultMetrics: false }).registry

  it('has a row for every portanoia_* metric and none for a metric that does not exist', () => {
    const documented = rows.flatMap((r) => spans(r[0]!))
    const actual = registry.getMetricsAsArray().map((m) => m.name).filter((n) => n.startsWith('portanoia_'))
    expect(sorted(documented)).toEqual(sorted(actual))
    expect(documented.length).toBe(new Set(documented).size)
  })

  it('gives each metric its type and its labels', async () => {
    const json = await registry.getMetricsAsJSON()
    for (const [names, types, labels] of rows) {
      const ns = spans(names!)
      const ts = types!.split(',').map((t) => t.trim())
      expect(ts.length === 1 || ts.length === ns.length, `one type, or one per metric: ${names}`).toBe(true)
      ns.forEach((name, i) => {
        const metric = json.find((m) => m.name === name)
        expect(metric?.type, name).toBe(ts.length === 1 ? ts[0] : ts[i])
        const labelNames = (registry.getSingleMetric(name) as unknown as { labelNames: string[] }).labelNames
        expect(sorted(spans(labels ?? '')), `labels of ${name}`).toEqual(sorted(labelNames))
      })
    }
  })
})

describe('README.md API section', () => {
  it('`sensor.stats()` lists exactly the totals a sensor returns', async () => {
    const sensor = await open({ ports: ['2222/tcp'], binding: fakeBinding() })
    const keys = Object.keys(sensor.stats())
    await sensor.close()
    const totals = /Running totals:([^.]*)\./.exec(section('### `sensor.stats()`'))?.[1] ?? ''
    expect(sorted(spans(totals))).toEqual(sorted(keys))
  })

  it('the iterator section lists exactly the Hit fields and the scan kinds', () => {
    const text = section('### `for await (const hit of sensor)` / `sensor.next()`')
    const [fields, kinds] = spans(text).filter((s) => s.startsWith('{') || s.startsWith('syn '))
    const documented = sorted(fields!.replace(/[{}?]/g, '').split(/[,\s]+/).filter((w) => w !== ''))
    // A Hit is the hit event without the event envelope, plus `time` (ms); timeNs is a bigint there.
    expect(documented).toEqual(sorted([...schemaPaths(hitEventSchema), 'time']))
    expect(sorted(kinds!.split(' '))).toEqual(sorted(SCAN_KINDS.filter((k) => k !== 'none')))
  })
})

describe('docs/fleet.md', () => {
  it('names every portanoia_fleet_* metric', () => {
    const names = new Metrics({ defaultMetrics: false }).registry.getMetricsAsArray().map((m) => m.name)
    const fleet = names.filter((n) => n.startsWith('portanoia_fleet_'))
    expect(fleet.length).toBeGreaterThan(3)
    expect(fleet.filter((n) => !FLEET_DOC.includes(n))).toEqual([])
  })
})
