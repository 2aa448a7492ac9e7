/**
 * `npm run prebuildify` (and `npm pack` / `npm publish`, through prepack): makes the
 * Node-API prebuilds the npm tarball carries, one per CPU in TARGETS, with prebuildify:
 * prebuilds/linux-<arch>/portanoia.glibc.node. A foreign CPU is cross-compiled with
 * Debian's cross toolchain (g++-aarch64-linux-gnu for arm64 on x86-64). Each build runs
 * in a scratch copy of binding.gyp and native/, so the checkout's build/ (what the
 * tests load) is never rebuilt under them. Runs on the packing machine only; nothing
 * of it ships.
 *
 * Invariants: nothing is downloaded (node-gyp compiles against the headers of the Node
 * running this script, never fetched ones); prebuilds/ holds only what this run made
 * (a stale untagged file would also match musl) and is removed again when any step
 * fails, so a failed run leaves nothing to pack; every binary is libc-tagged, is an ELF
 * for its CPU, and needs no symbol version above BASELINE.
 */
import { spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { checkBaseline, elfMachine, type SymbolBaseline } from './elf.js'

interface Target {
  arch: 'x64' | 'arm64'
  /** GNU triple of Debian's cross toolchain for this CPU (`<triple>-g++`). */
  triple: string
  /** ELF e_machine of a binary for this CPU. */
  machine: number
  /** Debian package with that cross toolchain. */
  crossPackage: string
}

const TARGETS: readonly Target[] = [
  { arch: 'x64', triple: 'x86_64-linux-gnu', machine: 62, crossPackage: 'g++-x86-64-linux-gnu' },
  { arch: 'arm64', triple: 'aarch64-linux-gnu', machine: 183, crossPackage: 'g++-aarch64-linux-gnu' },
]

/**
 * Oldest libraries a prebuild must load with: glibc 2.28 and GCC 8's libstdc++/libgcc
 * (Debian 10+, Ubuntu 20.04+, RHEL 8+). docs/architecture.md, "Packaging", says why.
 */
const BASELINE: SymbolBaseline = { GLIBC: '2.28', GLIBCXX: '3.4.25', CXXABI: '1.3.11', GCC: '7.0.0' }

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

class PrebuildError extends Error {}

function onPath(cmd: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    try {
      if (statSync(join(dir, cmd)).isFile()) return true
    } catch {
      // not in this directory
    }
  }
  return false
}

/** The headers of the running Node: <prefix>/include/node beside <prefix>/bin/node. */
function localNodeDir(): string {
  const dir = resolve(dirname(process.execPath), '..')
  if (!existsSync(join(dir, 'include/node/node_api.h'))) {
    throw new PrebuildError(
      `the headers of this Node (${process.execPath}) are not in ${join(dir, 'include/node')}: use a Node that ships ` +
        `them (nodejs.org tarballs, NodeSource and nvm installs do); nothing is downloaded`,
    )
  }
  return dir
}

function run(cmd: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv }): string {
  const r = spawnSync(cmd, args, { ...options, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 * 1024 * 1024 })
  if (r.error !== undefined) throw new PrebuildError(`${cmd}: ${r.error.message}`)
  if (r.status !== 0) throw new PrebuildError(`${cmd} ${args.join(' ')} exited with ${String(r.status ?? r.signal)}`)
  return r.stdout
}

/** The toolchain commands for `target` on this host: the native ones, or the cross ones. */
function toolchain(target: Target): { env: NodeJS.ProcessEnv; strip: string; objdump: string } {
  if (target.arch === process.arch) return { env: {}, strip: 'strip', objdump: 'objdump' }
  const tool = (name: string): string => `${target.triple}-${name}`
  for (const name of ['gcc', 'g++', 'ar', 'strip', 'objdump']) {
    if (!onPath(tool(name))) {
      throw new PrebuildError(
        `${tool(name)} is not on PATH: the linux-${target.arch} prebuild is cross-compiled with Debian's ` +
          `${target.crossPackage} (apt-get install ${target.crossPackage})`,
      )
    }
  }
  return {
    env: { CC: tool('gcc'), CXX: tool('g++'), LINK: tool('g++'), AR: tool('ar') },
    strip: tool('strip'),
    objdump: tool('objdump'),
  }
}

/** A scratch copy of what node-gyp needs, with the checkout's node_modules linked in. */
function stage(): string {
  const dir = mkdtempSync(join(tmpdir(), 'portanoia-prebuild-'))
  cpSync(join(ROOT, 'binding.gyp'), join(dir, 'binding.gyp'))
  cpSync(join(ROOT, 'package.json'), join(dir, 'package.json'))
  mkdirSync(join(dir, 'native'))
  for (const name of readdirSync(join(ROOT, 'native'))) {
    if (/\.(cc|h)$/.test(name)) cpSync(join(ROOT, 'native', name), join(dir, 'native', name))
  }
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
  return dir
}

function build(target: Target, nodeDir: string): string {
  const tools = toolchain(target)
  const dir = stage()
  try {
    const prebuildify = createRequire(join(ROOT, 'package.json')).resolve('prebuildify/bin.js')
    const args = [prebuildify, dir, '--napi', '--strip', '--strip-bin', tools.strip, '--tag-libc', '--libc', 'glibc']
    args.push('--arch', target.arch, '--target', process.versions.node, '--out', ROOT)
    // npm_config_nodedir is how node-gyp is told where the headers are (prebuildify
    // passes the environment on); JOBS lets it run make -j.
    const env = { ...process.env, ...tools.env, npm_config_nodedir: nodeDir, JOBS: 'max' }
    console.log(`prebuildify: linux-${target.arch} (${target.arch === process.arch ? 'native' : `${target.triple}-g++`})`)
    run(process.execPath, args, { cwd: dir, env })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  const out = join(ROOT, 'prebuilds', `linux-${target.arch}`)
  const files = readdirSync(out).filter((f) => f.endsWith('.node'))
  if (files.length !== 1 || files[0] !== 'portanoia.glibc.node') {
    throw new PrebuildError(`expected ${out}/portanoia.glibc.node alone, found: ${files.join(', ') || 'nothing'}`)
  }
  const file = join(out, files[0])
  const machine = elfMachine(readFileSync(file))
  if (machine !== target.machine) throw new PrebuildError(`${file} is ELF machine ${String(machine)}, expected ${target.machine}`)
  const problems = checkBaseline(run(tools.objdump, ['-T', file], { cwd: ROOT, env: process.env }), BASELINE)
  if (problems.length > 0) {
    throw new PrebuildError(`${file} needs symbol versions newer than the baseline:\n  ${problems.join('\n  ')}`)
  }
  return file
}

function main(): void {
  if (process.platform !== 'linux') throw new PrebuildError('prebuilds are made on Linux')
  const { header } = process.report.getReport() as { header?: { glibcVersionRuntime?: string } }
  if (header?.glibcVersionRuntime === undefined) {
    throw new PrebuildError('prebuilds are made on a glibc host (Debian, Ubuntu): this one has another libc')
  }
  if (!onPath('node-gyp')) throw new PrebuildError('node-gyp is not on PATH: run this as `npm run prebuildify`')
  const nodeDir = localNodeDir()
  // The host's own CPU first: a missing cross compiler then fails after the part
  // that needs nothing extra has shown it builds.
  const ordered = [...TARGETS].sort((a, b) => Number(b.arch === process.arch) - Number(a.arch === process.arch))
  rmSync(join(ROOT, 'prebuilds'), { recursive: true, force: true })
  try {
    for (const target of ordered) {
      const file = build(target, nodeDir)
      console.log(`prebuildify: ${file} (${statSync(file).size} bytes, within glibc ${BASELINE.GLIBC} / GLIBCXX ${BASELINE.GLIBCXX})`)
    }
  } catch (err) {
    rmSync(join(ROOT, 'prebuilds'), { recursive: true, force: true })
    throw err
  }
}

try {
  main()
} catch (err) {
  if (!(err instanceof PrebuildError)) throw err
  console.error(`prebuildify: ${err.message}`)
  process.exitCode = 1
}
