/**
 * What a built addon needs from the system, read from its ELF file: the machine it was
 * built for (the ELF header) and the symbol versions it binds to (`objdump -T`
 * output), checked against a baseline of the oldest glibc / libstdc++ / libgcc it must
 * load with. Pure functions; used by scripts/prebuildify.ts on the packing machine.
 */

/** The highest version of each versioned library a binary may bind to. */
export interface SymbolBaseline {
  GLIBC: string
  GLIBCXX: string
  CXXABI: string
  GCC: string
}

/** e_machine of a 64-bit little-endian ELF (62 x86-64, 183 AArch64), else undefined. */
export function elfMachine(file: Buffer): number | undefined {
  const isElf = file.length >= 20 && file.readUInt32BE(0) === 0x7f454c46
  if (!isElf || file[4] !== 2 || file[5] !== 1) return undefined
  return file.readUInt16LE(18)
}

function compareVersions(a: string, b: string): number {
  const x = a.split('.').map(Number)
  const y = b.split('.').map(Number)
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0)
    if (d !== 0) return d
  }
  return 0
}

/**
 * Every symbol in `objdumpT` (the output of `objdump -T`) whose version is above the
 * baseline or not a numbered one (GLIBC_PRIVATE), as "symbol@VERSION"; empty when the
 * binary loads wherever the baseline's libraries are.
 */
export function checkBaseline(objdumpT: string, baseline: SymbolBaseline): string[] {
  const problems: string[] = []
  for (const line of objdumpT.split('\n')) {
    const m = /\(?\b(GLIBC|GLIBCXX|CXXABI|GCC)_([0-9A-Z_.]+)\)?\s+(\S+)\s*$/.exec(line)
    if (m === null) continue
    const [, lib, version, symbol] = m as unknown as [string, keyof SymbolBaseline, string, string]
    if (!/^[0-9]+(\.[0-9]+)*$/.test(version) || compareVersions(version, baseline[lib]) > 0) {
      problems.push(`${symbol}@${lib}_${version} (baseline ${lib}_${baseline[lib]})`)
    }
  }
  return problems
}
