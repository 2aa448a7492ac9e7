/**
 * The one interface every responder implements, and the values that cross it.
 * Firewall responders (nftables, ipset) apply blocks; notifier responders (exec,
 * webhook, jsonl) are told about decisions. A responder never throws into the
 * pipeline: every call resolves to a result that says what failed, per action.
 * Commands are run through an injected `run(cmd, args, input?)` so tests pass a
 * fake that records calls instead of mocking modules.
 */
import type { Decision } from '../policy/decision.js'

/**
 * Where a block comes from. Firewall responders keep each origin apart (a set of
 * its own), so no origin can shorten or lift another's block: a local block from a
 * completed handshake, a local block from forgeable evidence, a fleet ban.
 */
export const EVIDENCE = ['verified', 'spoofable', 'fleet'] as const
export type Evidence = (typeof EVIDENCE)[number]

/** A fleet ban's origin, kept with its element in the kernel so a restart still knows it. */
export interface FleetTag {
  /** LAPI's decision id: a deletion of this decision lifts the ban. */
  id?: number
  /** The decision's origin in LAPI ('crowdsec', 'cscli', 'CAPI', 'portanoia', …). */
  origin: string
  scenario: string
}

/** One address to block. `address` is canonical and validated before it gets here. */
export interface BlockRequest {
  address: string
  family: 4 | 6
  ttlMs: number
  /** Which origin's block this is. Default 'verified'. */
  evidence?: Evidence
  /** With evidence 'fleet': the ban's tag, stored with the element. */
  fleet?: FleetTag
  /**
   * A verified block replacing a spoofable one. Informational: origins live apart,
   * so the verified block is simply added beside the spoofable one.
   */
  upgrade?: boolean
}

/** Where a packet goes through the host: to it (input) or through it (forward). */
export type BlockPath = 'input' | 'forward'

/** A whole network to block (a prefix ban): canonical CIDR text, validated again by the firewall. */
export interface PrefixRequest {
  prefix: string
  family: 4 | 6
  ttlMs: number
}

/** A block as the kernel holds it. */
export interface ActiveBlockEntry {
  address: string
  family: 4 | 6
  /** Time left, ms; undefined for a block without expiry. */
  expiresInMs?: number
  /** The timeout it was added with, ms. */
  timeoutMs?: number
  /** Which origin's set holds it; absent for sets of earlier versions (ipset's, or a not yet migrated table). */
  evidence?: Evidence
  /** Fleet bans: the tag stored with the element. */
  fleet?: FleetTag
}

/** unblock() options. */
export interface UnblockOptions {
  /** Only this origin's block (a fleet deletion lifts the fleet ban, never a local block). Default: every origin. */
  evidence?: Evidence
}

/** A deletion the firewall reported (nft monitor): what it means for portanoia's state. */
export type FirewallChange =
  /** A table, set, chain or rule of portanoia's was deleted. */
  | { kind: 'structure'; detail: string }
  /** Elements of one origin's set were deleted. */
  | { kind: 'elements'; evidence: Evidence; addresses: string[] }
  /** The monitor lost track (a set flushed, an unreadable line): only a full look can tell. */
  | { kind: 'unknown'; detail: string }

/** A firewall's change notifications, while they run. */
export interface FirewallWatch {
  stop(): Promise<void>
  /** Resolves with the monitor's exit code when it ends. */
  exited: Promise<number>
}

export interface ResponderResult {
  responder: string
  ok: boolean
  /** Addresses (or decision sources) the call applied to. */
  applied: string[]
  /** Addresses that failed, with the error. */
  failed: Array<{ address: string; error: string }>
  /** unblock(): addresses that were not blocked, so there was nothing to remove (not a failure). */
  absent?: string[]
  /** Notifiers: decisions refused because the queue was full (also counted in stats().dropped). */
  dropped?: number
  /** The exact script or argv that was (or, in dry-run, would be) executed. */
  script?: string
  /** True when nothing was executed because the responder runs in dry-run mode. */
  dryRun?: boolean
  /** block(): addresses the kernel already held at least as long; nothing was written for them (they are in `applied`). */
  kept?: string[]
  /** block(): addresses whose shorter block was made longer (they are in `applied`). */
  extended?: string[]
  /** block(): the table's shape was gone and was put back first (what was missing); other blocks may need restoring. */
  repaired?: string[]
}

export interface RunResult {
  /** Exit code; 127 when the program could not be started, 124 when it was killed on timeout. */
  code: number
  stdout: string
  stderr: string
  /** Set when the run was killed because it exceeded its timeout. */
  timedOut?: boolean
}

/** Runs argv without a shell; `input` goes to stdin. Never rejects on a non-zero exit. */
export type RunFn = (cmd: string, args: readonly string[], input?: string) => Promise<RunResult>

export interface Responder {
  readonly name: string
  /**
   * Firewall responders: the longest block they can hold, ms. The daemon refuses a
   * policy TTL above it before anything starts, and fleet bans are clamped to it.
   */
  readonly maxTtlMs?: number
  /**
   * Prepares state (creates or adopts the firewall table); returns blocks found in the kernel.
   * The one call that rejects (with a PortanoiaError carrying a hint): it runs before the
   * pipeline, and a firewall that cannot be set up must stop the daemon from starting.
   */
  start(): Promise<ActiveBlockEntry[]>
  /**
   * Firewall responders, after start(): true when none of the responder's sets
   * existed (a reboot, or a table removed while the daemon was down): the kernel
   * lost every block, and the daemon may restore them from its state file.
   */
  readonly fresh?: boolean
  /**
   * Firewall responders: the paths their drop rules cover — 'input' (traffic to this
   * host) and 'forward' (traffic it routes: containers, routed hosts). A hit from a
   * blocked source on a path not listed got past the block (`block-bypassed`).
   */
  readonly paths?: readonly BlockPath[]
  /**
   * Firewall responders that hold networks (nftables with `prefixes`): block each
   * prefix for its TTL. Absent: no prefix bans.
   */
  blockPrefixes?(requests: readonly PrefixRequest[]): Promise<ResponderResult>
  /** Firewall responders: add blocks, in one batch. Notifiers: resolve ok with nothing applied. */
  block(requests: readonly BlockRequest[]): Promise<ResponderResult>
  unblock(addresses: readonly string[], options?: UnblockOptions): Promise<ResponderResult>
  /**
   * Blocks currently in the kernel (firewall responders); [] for notifiers. A read-only
   * query for `portanoia list`: rejects with a PortanoiaError when the kernel cannot be read
   * (an absent table is not an error: it lists nothing).
   */
  list(): Promise<ActiveBlockEntry[]>
  /**
   * Notifiers act on decision events (which actions is their option); firewall responders
   * ignore this. Resolves when this call's deliveries have finished or been given up, so a
   * capture loop should dispatch it without awaiting; the queue behind it is bounded.
   */
  notify(decisions: readonly Decision[]): Promise<ResponderResult>
  /** Firewall responders: removes everything the responder created, and nothing else. */
  uninstall?(): Promise<ResponderResult>
  /**
   * Firewall responders: puts back whatever of the firewall's shape is missing (the
   * table, a set, a chain, a rule) and returns what was ([] when nothing), together
   * with what block() repaired on its own since the last call. Recreated sets come
   * back empty: the caller restores what it knows should be there.
   * Rejects with a PortanoiaError when the firewall cannot be read or changed.
   */
  repair?(): Promise<string[]>
  /**
   * Firewall responders that enforce from a second copy of their sets (nftables'
   * netdev ingress table): brings that copy in step with the record and returns the
   * elements it changed. Rejects with a PortanoiaError when nft fails.
   */
  mirror?(): Promise<string[]>
  /** Firewall responders: follows deletions in the kernel while running; null when it cannot. */
  watch?(onChange: (change: FirewallChange) => void): FirewallWatch | null
  /** Counters for the `stats` event (applied, failed, queued, dropped, …). */
  stats?(): Record<string, number>
  /** Stops accepting work, drops what is still queued (counted), waits for what is in flight. Idempotent. */
  close(): Promise<void>
}
