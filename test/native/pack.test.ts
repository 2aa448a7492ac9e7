/**
 * What users install: stages a copy of the package (its working tree without
 * node_modules, build/ and prebuilds/, so `files` in package.json does the choosing),
 * runs the package's own `npm run prebuildify` there (a Node-API, stripped binary in
 * prebuilds/linux-x64/; in the stage, so the repo's build/ that other tests load is
 * never rebuilt under them), packs it with `npm pack`, and installs the tarball into a
 * clean temp project with a PATH holding only node and npm: no make, g++ or python3, so
 * the `node-gyp-build` install script must pick the prebuild, because it cannot
 * compile. Then, from that project, it imports 'portanoia', checks the exported API,
 * that node-gyp-build resolves the prebuild, and that the native layout check passes:
 * an open() on a missing interface must fail in the addon with ENODEV (not
 * PORTANOIA_NO_BINARY or PORTANOIA_LAYOUT_MISMATCH); as root, a real sensor on lo opens
 * and closes. Uses dist/ as built by `npm run build` (pretest); npm runs offline from
 * its cache. Nothing is sent anywhere.
 */
import { execFile } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { IS_ROOT } from '../helpers/netns.js'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

function run(cmd: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<RunResult> {
  return new Promise((resolvePromise) => {
    execFile(
      cmd,
      args,
      { cwd: options.cwd, env: options.env ?? process.env, timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const failure = err as (Error & { code?: unknown }) | null
        const code = failure === null ? 0 : typeof failure.code === 'number' ? failure.code : null
        resolvePromise({ code, stdout: String(stdout), stderr: String(stderr) })
      },
    )
  })
}

/** Which binary absolute paths of node and npm are; the bare PATH gets links to these only. */
async function which(cmd: string): Promise<string> {
  const r = await run('sh', ['-c', `command -v ${cmd}`], { cwd: root })
  const path = r.stdout.trim()
  if (r.code !== 0 || path === '') throw new Error(`${cmd} not found in PATH`)
  return path
}

describe('the packed tarball installs and loads its prebuild without build tools', () => {
  let dir = ''
  let tarball = ''
  let entries: string[] = []
  let bareEnv: NodeJS.ProcessEnv = {}
  const project = (): string => join(dir, 'project')

  beforeAll(async () => {
    if (!existsSync(join(root, 'dist/lib/index.js'))) throw new Error('dist/ is missing: run `npm run build` first')
    dir = mkdtempSync(join(tmpdir(), 'portanoia-pack-'))
    const stage = join(dir, 'stage')
    // The working tree as a user's checkout would have it, minus what is built locally.
    const skip = new Set(['node_modules', 'build', 'prebuilds', '.git', '.fuzz'])
    mkdirSync(stage)
    for (const name of readdirSync(root)) {
      if (skip.has(name) || name.endsWith('.tgz')) continue
      cpSync(join(root, name), join(stage, name), { recursive: true })
    }
    symlinkSync(join(root, 'node_modules'), join(stage, 'node_modules'))

    const prebuild = await run('npm', ['run', 'prebuildify'], { cwd: stage, timeoutMs: 180_000 })
    expect(prebuild.code, `${prebuild.stdout}\n${prebuild.stderr}`).toBe(0)
    const built = readdirSync(join(stage, 'prebuilds/linux-x64'))
    expect(built.filter((f) => f.endsWith('.node'))).toHaveLength(1)

    // prepack (tsc) needs the whole source tree; dist/ is already built, so skip scripts.
    mkdirSync(join(dir, 'pack'))
    const pack = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', join(dir, 'pack')], { cwd: stage })
    expect(pack.code, pack.stderr).toBe(0)
    const info = JSON.parse(pack.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>
    tarball = join(dir, 'pack', basename(info[0]!.filename))
    entries = info[0]!.files.map((f) => f.path)

    // A PATH with node and npm and nothing else (npm finds its shell by absolute path).
    const bin = join(dir, 'bin')
    mkdirSync(bin)
    symlinkSync(await which('node'), join(bin, 'node'))
    symlinkSync(await which('npm'), join(bin, 'npm'))
    bareEnv = { HOME: process.env.HOME, PATH: bin, npm_config_script_shell: '/bin/sh', npm_config_update_notifier: 'false' }
    mkdirSync(project())
    writeFileSync(join(project(), 'package.json'), JSON.stringify({ name: 'pack-check', version: '1.0.0', private: true, type: 'module' }))
  }, 240_000)

  afterAll(() => {
    if (dir !== '') rmSync(dir, { recursive: true, force: true })
  })

  test('the bare PATH really lacks the build tools', async () => {
    for (const tool of ['make', 'g++', 'python3', 'cc']) {
      const r = await run('/bin/sh', ['-c', `command -v ${tool}`], { cwd: project(), env: bareEnv })
      expect(r.code, `${tool} is reachable: ${r.stdout}`).not.toBe(0)
    }
  })

  test('the tarball holds the runtime, the prebuild and the sources to rebuild, nothing else', () => {
    for (const needed of ['package.json', 'binding.gyp', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/lib/binding.js', 'dist/lib/sensor.js', 'native/hit_record.h', 'native/capture.cc', 'native/addon.cc']) {
      expect(entries, needed).toContain(needed)
    }
    expect(entries.filter((p) => /^prebuilds\/linux-x64\/[^/]+\.node$/.test(p))).toHaveLength(1)
    for (const p of entries) {
      expect(p, 'test, bench and build output do not ship').not.toMatch(/^(test|bench|lib|build|node_modules|dist\/test|dist\/bench|native\/test|native\/fuzz)\//)
    }
  })

  test('npm install --offline runs node-gyp-build, which takes the prebuild and compiles nothing', async () => {
    const r = await run(
      'npm',
      ['install', '--offline', '--no-audit', '--no-fund', '--foreground-scripts', '--loglevel', 'info', tarball],
      { cwd: project(), env: bareEnv, timeoutMs: 120_000 },
    )
    const log = `${r.stdout}\n${r.stderr}`
    expect(r.code, log).toBe(0)
    // The install script ran (and succeeded): with no compiler around, only a prebuild can satisfy it.
    expect(log).toMatch(/run portanoia@[^ ]+ install node_modules\/portanoia node-gyp-build/)
    expect(log).toMatch(/run portanoia@[^ ]+ install \{ code: 0/)
    const installed = join(project(), 'node_modules/portanoia')
    expect(existsSync(join(installed, 'build'))).toBe(false)
    expect(readdirSync(join(installed, 'prebuilds/linux-x64')).some((f) => f.endsWith('.node'))).toBe(true)
  })

  test('the installed package loads, exports its API and passes the native layout check', async () => {
    const port = 40_000 + Math.floor(Math.random() * 20_000)
    const script = `
import { createRequire } from 'node:module'
import { dirname } from 'node:path'
const m = await import('portanoia')
const require = createRequire(import.meta.url)
const pkgDir = dirname(require.resolve('portanoia/package.json'))
const resolved = require('node-gyp-build').resolve(pkgDir)
const out = { exports: Object.keys(m).sort(), resolved, pkgDir }
try {
  await m.open({ ports: ['2222/tcp'], interface: 'nosuch0', listen: false })
  out.missing = 'opened'
} catch (e) {
  out.missing = e.code
}
if (${IS_ROOT}) {
  const s = await m.open({ ports: ['${port}/udp'], interface: 'lo', listen: false })
  out.stats = Object.keys(s.stats()).sort()
  await s.close()
  out.closed = s.closed
}
console.log(JSON.stringify(out))
`
    const r = await run('node', ['--input-type=module', '-e', script], { cwd: project(), env: bareEnv, timeoutMs: 30_000 })
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
      exports: string[]
      resolved: string
      pkgDir: string
      missing: string
      stats?: string[]
      closed?: boolean
    }
    expect(out.pkgDir.startsWith(project())).toBe(true)
    expect(out.resolved).toMatch(/\/node_modules\/portanoia\/prebuilds\/linux-x64\/[^/]+\.node$/)
    for (const name of ['open', 'Sensor', 'parsePorts', 'parsePortList', 'portsToString', 'PortanoiaError', 'isPortanoiaError', 'SCAN_KINDS', 'PolicyEngine', 'Guards']) {
      expect(out.exports, name).toContain(name)
    }
    // ENODEV comes from the addon's Capture::Open: the binary loaded and its layout matched.
    expect(out.missing).toBe('ENODEV')
    if (IS_ROOT) {
      expect(out.stats).toEqual(expect.arrayContaining(['delivered', 'hits', 'kernelDrops', 'ringDrops']))
      expect(out.closed).toBe(true)
    }
  })
})
