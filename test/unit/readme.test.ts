/**
 * Keeps README.md true to the code it documents: every field of every event
 * schema (lib/daemon/events.ts and lib/fleet/events.ts, nested objects included; record
 * keys are data, not fields) is named in the Events section, every reason code
 * appears there, and every visible flag of `portanoia watch` — read from the
 * commander program itself, so a new flag fails this test until it is documented —
 * is named in the CLI section; docs/fleet.md names every fleet metric of the
 * registry. A name counts when it appears as a word inside a
 * code span (`like this`) or, for flags, anywhere in the section's code.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { buildProgram } from '../../lib/cli/program.js'
import { decisionEventSchema, errorEventSchema, hitEventSchema, operatorEventSchema, statsEventSchema } from '../../lib/daemon/events.js'
import { fleetDecisionEventSchema, fleetEventSchema } from '../../lib/fleet/events.js'
import { Metrics } from '../../lib/daemon/metrics.js'
import { REASON_CODES } from '../../lib/policy/decision.js'

const README = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8')
const FLEET_DOC = readFileSync(join(import.meta.dirname, '../../docs/fleet.md'), 'utf8')

/** The text of `## title` up to the next second-level heading. */
function section(title: string): string {
  const start = README.indexOf(`\n## ${title}\n`)
  if (start < 0) throw new Error(`README.md has no "## ${title}" section`)
  const end = README.indexOf('\n## ', start + 1)
  return README.slice(start, end < 0 ? undefined : end)
}

/** Words of the inline code spans and code blocks of `text`. */
function codeWords(text: string): Set<string> {
  const spans = [...text.matchAll(/```[^\n]*\n([\s\S]*?)```|`([^`]+)`/g)].map((m) => m[1] ?? m[2] ?? '')
  const words = new Set<string>()
  for (const s of spans) {
    // A trailing colon is punctuation (`source: 'fleet'`); inside a word it is not (`guard:self`).
    for (const w of s.split(/[\s,()[\]{}'"=…;.]+/)) if (w !== '') words.add(w.replace(/:$/, ''))
  }
  return words
}

/** Field paths of a zod object schema, nested objects included ('trigger.dstPort'). */
function fieldPaths(schema: z.ZodType, prefix = ''): string[] {
  let s: z.ZodType = schema
  while (s instanceof z.ZodOptional || s instanceof z.ZodNullable) s = s.unwrap() as z.ZodType
  if (!(s instanceof z.ZodObject)) return []
  const out: string[] = []
  for (const [key, value] of Object.entries(s.shape as Record<string, z.ZodType>)) {
    out.push(`${prefix}${key}`)
    out.push(...fieldPaths(value, `${prefix}${key}.`))
  }
  return out
}

const SCHEMAS: Record<string, z.ZodType> = {
  hit: hitEventSchema,
  decision: decisionEventSchema,
  stats: statsEventSchema,
  error: errorEventSchema,
  'fleet decision': fleetDecisionEventSchema,
  fleet: fleetEventSchema,
  operator: operatorEventSchema,
}

describe('README.md stays true', () => {
  const events = section('Events')
  const eventWords = codeWords(events)
  // `guard:self|gateway|resolver` names three reason codes.
  for (const m of events.matchAll(/guard:([a-z|]+)/g)) for (const g of (m[1] as string).split('|')) eventWords.add(`guard:${g}`)

  it('the field walker sees nested fields (a sanity check of this test)', () => {
    expect(fieldPaths(decisionEventSchema)).toContain('trigger.dstPort')
    expect(fieldPaths(statsEventSchema)).toContain('policy.activeBlocks.spoofable')
  })

  for (const [name, schema] of Object.entries(SCHEMAS)) {
    it(`names every field of the ${name} event in the Events section`, () => {
      const missing = fieldPaths(schema).filter((p) => !eventWords.has(p.split('.').pop() as string))
      expect(missing, `README.md Events section lacks these ${name} fields`).toEqual([])
    })
  }

  it('names every reason code in the Events section', () => {
    const codes = [...REASON_CODES, 'fleet']
    expect(codes.filter((c) => !eventWords.has(c))).toEqual([])
  })

  it('names every visible flag of `portanoia watch` in the CLI section', () => {
    const program = buildProgram(() => {}, () => {}, () => {})
    const watch = program.commands.find((c) => c.name() === 'watch')
    expect(watch).toBeDefined()
    const flags = watch!.options.filter((o) => !o.hidden).map((o) => o.long ?? o.short ?? o.flags)
    expect(flags.length).toBeGreaterThan(20)
    const cliWords = codeWords(section('CLI'))
    expect(flags.filter((f) => !cliWords.has(f)), 'README.md CLI section lacks these watch flags').toEqual([])
  })

  it('docs/fleet.md names every portanoia_fleet_* metric', () => {
    const names = new Metrics({ defaultMetrics: false }).registry.getMetricsAsArray().map((m) => m.name)
    const fleet = names.filter((n) => n.startsWith('portanoia_fleet_'))
    expect(fleet.length).toBeGreaterThan(3)
    expect(fleet.filter((n) => !FLEET_DOC.includes(n))).toEqual([])
  })
})
