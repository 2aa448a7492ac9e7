/**
 * Dropping root after start-up, where that is safe. Node cannot keep selected
 * capabilities across setuid, so it is all or nothing: the daemon keeps root
 * whenever it still needs it later — a firewall backend (nft/ipset need
 * CAP_NET_ADMIN for every batch), an exec command (the operator's command may need
 * root), `--unused` (new tripwire listeners below 1024 need CAP_NET_BIND_SERVICE and
 * a setns into --netns), or --netns itself (`ip netns exec` to read its socket table).
 * Otherwise (report-only: backend none, webhook or plain output) it switches to
 * nobody once the capture socket, ring and listeners are open: they stay usable, as
 * do the guard watch's rtnetlink and sock_diag sockets, opened before (neither a
 * re-dump nor a socket query needs a privilege), and resolv.conf is world-readable.
 */
import type { DaemonConfig } from '../daemon/config.js'

const NOBODY = 65534

/** Drops to nobody when nothing later needs root; returns what was done, or null. */
export function dropPrivileges(plan: DaemonConfig): string | null {
  if (process.getuid?.() !== 0 || process.setuid === undefined || process.setgid === undefined) return null
  const needsRoot = (plan.backend !== 'none' && !plan.dryRun) || plan.exec !== undefined || plan.unused.length > 0 || plan.netns !== undefined
  if (needsRoot) return null
  try {
    process.setgroups?.([])
    process.setgid(NOBODY)
    process.setuid(NOBODY)
    return 'capture is open: dropped root, now running as uid/gid 65534 (nobody)'
  } catch (e) {
    return `could not drop root (${(e as Error).message}); still running as root`
  }
}
