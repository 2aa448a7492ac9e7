/**
 * One fleet host for the privileged CrowdSec test: a small Node program that the
 * test starts inside a peer namespace (`ip netns exec NS node fleet-host.js CFG`),
 * so its LAPI traffic really crosses the veth and its nftables table lives in that
 * namespace. It wires the fleet link the way the daemon does — resolveFleetConfig,
 * startFleet with the real nftables responder and Guards — and stands in for the
 * detection pipeline: a `block` command on stdin is a local block decision (applied
 * locally, then offered to FleetPush); `delete` deletes a decision in LAPI. Every fleet event, and the answer to each
 * command, is one JSON line on stdout. Ends on stdin EOF or SIGTERM.
 */
import { createInterface } from 'node:readline'
import { fleetConfigSchema, resolveFleetConfig, startFleet } from '../../lib/fleet/index.js'
import type { Decision } from '../../lib/policy/decision.js'
import { Guards, type GuardSnapshot } from '../../lib/policy/guards.js'
import { NftablesResponder } from '../../lib/responders/nftables.js'

interface HostConfig {
  crowdsec: Record<string, unknown>
  guards: GuardSnapshot
}

interface Command {
  op: 'block' | 'stats' | 'list' | 'delete'
  id?: number
  src?: string
  ttlMs?: number
  verified?: boolean
}

function out(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`)
}

function localDecision(src: string, ttlMs: number, verified: boolean): Decision {
  const now = Date.now()
  return {
    action: 'block',
    reason: 'blocked',
    src,
    family: src.includes(':') ? 6 : 4,
    verified,
    attribution: verified ? 'verified' : 'plausible',
    evidence: [],
    ttlMs,
    expiresAt: now + ttlMs,
    ports: ['22/tcp', '445/tcp'],
    portsTruncated: false,
    kinds: verified ? ['connect'] : ['syn'],
    count: 2,
    verifiedCount: verified ? 1 : 0,
    firstSeen: now - 100,
    lastSeen: now,
    windowStart: now - 100,
    windowMs: 60_000,
    time: now,
    final: false,
    trigger: { dst: '198.18.0.2', dstPort: 22, srcPort: 40000, proto: 'tcp', kind: verified ? 'connect' : 'syn', interface: 'pnp0' },
  }
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2] ?? '{}') as HostConfig
  const resolved = await resolveFleetConfig(fleetConfigSchema.parse({ crowdsec: cfg.crowdsec }))
  if (resolved === null) throw new Error('no crowdsec config')
  const responder = new NftablesResponder()
  await responder.start()
  const guards = new Guards(cfg.guards)
  const local = new Map<string, number>()
  const fleet = startFleet(resolved, {
    responder,
    guards,
    isLocalBlock: (a) => (local.get(a) ?? 0) > Date.now(),
    onEvent: (e) => out(e),
  })
  let ending = false
  const end = async (): Promise<void> => {
    if (ending) return
    ending = true
    await fleet.close()
    process.exit(0)
  }
  process.on('SIGTERM', () => void end())
  out({ type: 'ready' })
  const rl = createInterface({ input: process.stdin })
  rl.on('close', () => void end())
  for await (const line of rl) {
    const cmd = JSON.parse(line) as Command
    if (cmd.op === 'block' && cmd.src !== undefined) {
      const d = localDecision(cmd.src, cmd.ttlMs ?? 3_600_000, cmd.verified ?? true)
      // As the daemon does: the local block first, then the fleet (a synchronous enqueue).
      const r = await responder.block([{ address: d.src, family: d.family, ttlMs: d.ttlMs ?? 0 }])
      local.set(d.src, Date.now() + (d.ttlMs ?? 0))
      fleet.offer(d)
      out({ type: 'reply', id: cmd.id, ok: r.ok })
    } else if (cmd.op === 'delete' && cmd.src !== undefined) {
      // An operator's `cscli decisions delete`, through our client's watcher JWT.
      const n = await fleet.client.deleteDecisions(cmd.src).catch((e: unknown) => (e instanceof Error ? e.message : String(e)))
      out({ type: 'reply', id: cmd.id, deleted: n })
    } else if (cmd.op === 'stats') {
      out({ type: 'reply', id: cmd.id, stats: fleet.stats() })
    } else if (cmd.op === 'list') {
      const blocks = await responder.list()
      out({ type: 'reply', id: cmd.id, blocks: blocks.map((b) => b.address) })
    }
  }
}

main().catch((e: unknown) => {
  out({ type: 'fatal', message: e instanceof Error ? e.message : String(e) })
  process.exit(1)
})
