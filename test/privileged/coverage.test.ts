/**
 * The coverage generator (scripts/coverage.ts, `npm run coverage`) on three of its
 * techniques, into a temporary file, so it cannot rot: the lab comes up and goes away,
 * real nmap runs, and the rows are computed from the sensor's hits — a SYN scan is
 * detected with its real sender not forged, the random decoys of -D RND are forged (no
 * route back) while the real sender among them is not, and an IPv6 -S with an unheld
 * on-link address is forged by the link layer with no real sender at all. The rendered
 * page carries those rows. Needs root, nmap and tcpdump (.ci/run installs them).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type CoverageResult, type Row, runCoverage } from '../../scripts/coverage.js'
import { outcome, renderCoverage } from '../../scripts/coverage-render.js'
import { IS_ROOT, warnIfNotRoot } from '../helpers/netns.js'
import { hasCommand } from '../helpers/tools.js'

const FILE = 'test/privileged/coverage.test.ts'
warnIfNotRoot(FILE)

const missing = ['nmap', 'tcpdump'].filter((c) => !hasCommand(c))
if (IS_ROOT && missing.length > 0) console.warn(`\n*** SKIPPED: ${FILE} needs ${missing.join(', ')}; .ci/run installs them. ***\n`)

const ONLY = ['nmap-sS/4', 'nmap-D-rnd/4', 'nmap-S-unheld/6']

describe.skipIf(!IS_ROOT || missing.length > 0)('npm run coverage, three techniques', () => {
  let dir: string
  let result: CoverageResult
  let page: string
  const row = (id: string): Row => {
    const r = result.rows.find((x) => x.technique.id === id)
    if (r === undefined) throw new Error(`no row ${id}`)
    return r
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pncov-test-'))
    result = await runCoverage({ only: ONLY })
    await writeFile(join(dir, 'coverage.md'), renderCoverage(result))
    page = await readFile(join(dir, 'coverage.md'), 'utf8')
  }, 120_000)

  afterAll(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('runs exactly the techniques asked for, each to its sentinel', () => {
    expect(result.rows.map((r) => r.technique.id)).toEqual(ONLY)
    for (const r of result.rows) {
      expect(r.incomplete).toBe(false)
      expect(r.refused).toBeUndefined()
      expect(outcome(r)).toBe('yes')
      // tcpdump, independently, saw the probes arrive.
      expect(r.wire).toBeGreaterThan(0)
    }
  })

  it('nmap -sS: detected as syn, the real sender plausible, nothing forged', () => {
    const r = row('nmap-sS/4')
    expect(r.kinds).toContain('syn')
    const syn = r.real.find((g) => g.who === 'attacker' && g.kind === 'syn')
    expect(syn?.attribution).toBe('plausible')
    expect(syn?.evidence).toEqual(expect.arrayContaining(['link:match', 'rpf:pass']))
    expect(r.forged).toEqual([])
    expect(r.falseAccusations).toBe(0)
  })

  it('nmap -D RND:4: the four decoys forged (no route back), the real sender not', () => {
    const r = row('nmap-D-rnd/4')
    const decoys = r.forged.filter((g) => g.who === 'off-link' && g.kind === 'syn')
    expect(decoys.reduce((n, g) => n + g.sources, 0)).toBe(4)
    for (const g of decoys) {
      expect(g.attribution).toBe('forged')
      expect(g.evidence).toContain('rpf:no-route')
    }
    expect(r.real.some((g) => g.who === 'attacker' && g.kind === 'syn')).toBe(true)
    expect(r.real.every((g) => g.attribution !== 'forged')).toBe(true)
    expect(r.missedForgeries).toBe(0)
  })

  it('nmap -6 -S with an unheld on-link address: forged by the link layer', () => {
    const r = row('nmap-S-unheld/6')
    expect(r.real).toEqual([])
    const syn = r.forged.find((g) => g.who === 'on-link unheld' && g.kind === 'syn')
    expect(syn?.attribution).toBe('forged')
    expect(syn?.evidence).toContain('link:no-answer')
  })

  it('writes the page: versions, each command, the computed summary', () => {
    expect(page).toContain(result.versions['nmap']!)
    for (const r of result.rows) expect(page).toContain(`\`${r.command}\``)
    expect(page).toContain('Real senders called `forged` (false accusations): 0.')
    expect(page).toContain('`rpf:no-route`')
  })
})
