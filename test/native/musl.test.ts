/**
 * On musl (Alpine) no prebuild fits, so `npm install` compiles the addon from the
 * shipped sources: they must compile against musl's libc, which lacks glibc's
 * extensions (strerrorname_np, …). This compiles every source binding.gyp lists with
 * clang++ for the x86_64-linux-musl target against Debian's musl headers (musl-dev),
 * LLVM's libc++ headers configured for musl (libc++-14-dev; glibc's libstdc++ headers
 * are configured for glibc and cannot be pointed elsewhere), the kernel's headers and
 * the running Node's headers. Syntax and semantics only (-fsyntax-only): linking and
 * loading on musl are not proven here, since no musl Node exists on this machine.
 * Needs clang++, libc++-14-dev and musl-dev (.ci/run installs them), not root.
 */
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, test } from 'vitest'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const gnuArch = process.arch === 'arm64' ? 'aarch64' : 'x86_64'

function run(cmd: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolvePromise) => {
    execFile(cmd, args, { cwd: root, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const failure = err as (Error & { code?: unknown }) | null
      const code = failure === null ? 0 : typeof failure.code === 'number' ? failure.code : null
      resolvePromise({ code, output: `${stdout}${stderr}` })
    })
  })
}

const sources = [...readFileSync(join(root, 'binding.gyp'), 'utf8').matchAll(/"(native\/[a-z_]+\.cc)"/g)].map((m) => m[1] as string)

describe('the native sources compile against musl libc', () => {
  const shim = mkdtempSync(join(tmpdir(), 'portanoia-musl-'))
  afterAll(() => rmSync(shim, { recursive: true, force: true }))

  test('binding.gyp lists the sources this checks', () => {
    expect(sources).toContain('native/capture.cc')
    expect(sources).toContain('native/capture_wrap.cc')
    expect(sources.length).toBeGreaterThanOrEqual(7)
  })

  test('every source compiles for x86_64-linux-musl / aarch64-linux-musl', async () => {
    const resource = await run('clang++', ['-print-resource-dir'])
    expect(resource.code, `clang++ is missing (apt-get install clang): ${resource.output}`).toBe(0)
    const resourceDir = resource.output.trim()
    const libcxx = resolve(resourceDir, '../../../include/c++/v1')
    const musl = `/usr/include/${gnuArch}-linux-musl`
    expect(existsSync(join(libcxx, 'vector')), `libc++ headers missing at ${libcxx} (apt-get install libc++-14-dev)`).toBe(true)
    expect(existsSync(join(musl, 'stdlib.h')), `musl headers missing at ${musl} (apt-get install musl-dev)`).toBe(true)
    // Only the kernel's headers from /usr/include: glibc's own must not leak in.
    symlinkSync('/usr/include/linux', join(shim, 'linux'))
    symlinkSync('/usr/include/asm-generic', join(shim, 'asm-generic'))
    symlinkSync(`/usr/include/${gnuArch}-linux-gnu/asm`, join(shim, 'asm'))
    const nodeHeaders = resolve(dirname(process.execPath), '../include/node')
    const addonApi = dirname(join(root, 'node_modules/node-addon-api/package.json'))
    const flags = [
      '-std=c++17', '-fsyntax-only', '-nostdinc', `--target=${gnuArch}-linux-musl`,
      '-D_LIBCPP_HAS_MUSL_LIBC', '-DNAPI_VERSION=8', '-DNAPI_CPP_EXCEPTIONS',
      '-isystem', libcxx, '-isystem', join(resourceDir, 'include'), '-isystem', musl, '-isystem', shim,
      '-isystem', nodeHeaders, '-isystem', addonApi,
    ]
    const results = await Promise.all(sources.map(async (source) => ({ source, ...(await run('clang++', [...flags, source])) })))
    for (const r of results) expect(r.code, `${r.source} on musl:\n${r.output}`).toBe(0)
  }, 180_000)
})
