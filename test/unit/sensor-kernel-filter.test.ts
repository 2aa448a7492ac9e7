/**
 * SensorOptions.kernelFilter (benchmarks only): the default attaches the compiled
 * tripwire program; false attaches a single `ret #512` that accepts every frame; a
 * non-boolean is refused before any socket exists. Checked on the program the fake
 * addon receives, so no privileges are needed.
 */
import { describe, expect, it } from 'vitest'
import { compileFilter, DEFAULT_SNAP_LEN } from '../../lib/bpf/filter.js'
import { open } from '../../lib/sensor.js'
import { fakeBinding } from '../helpers/fake-binding.js'

describe('SensorOptions.kernelFilter', () => {
  it('attaches the tripwire program by default', async () => {
    const binding = fakeBinding()
    const sensor = await open({ ports: ['2222/tcp'], listen: false, binding })
    expect(binding.captures[0]!.options.filter.equals(compileFilter([{ proto: 'tcp', from: 2222, to: 2222 }]).program)).toBe(true)
    await sensor.close()
  })

  it('false attaches one accept-all instruction', async () => {
    const binding = fakeBinding()
    const sensor = await open({ ports: ['2222/tcp'], listen: false, kernelFilter: false, binding })
    const program = binding.captures[0]!.options.filter
    expect(program.length).toBe(8)
    expect(program.readUInt16LE(0)).toBe(0x06) // BPF_RET | BPF_K
    expect(program.readUInt32LE(4)).toBe(DEFAULT_SNAP_LEN)
    await sensor.close()
  })

  it('refuses a non-boolean', async () => {
    const binding = fakeBinding()
    await expect(open({ ports: ['2222/tcp'], listen: false, kernelFilter: 'no' as unknown as boolean, binding })).rejects.toMatchObject({ code: 'PORTANOIA_BAD_OPTION' })
    expect(binding.captures).toHaveLength(0)
  })
})
