/**
 * The link-layer validator, for sources on a link of this host (the route back has no
 * gateway): did the frame come from the station that holds the address? A confirmed
 * neighbour entry (REACHABLE, PERMANENT, NOARP) answers at once — the same MAC is
 * `link:match`, another is `link:mismatch` (forged). Anything less (no entry, STALE,
 * INCOMPLETE, FAILED), and every claim of a guarded address (`ask`: a gateway, a
 * resolver, an admin), is settled by asking the link afresh (LinkView.ask: an ARP
 * probe, a neighbour solicitation): the frame's MAC alone answering is `link:match`;
 * another MAC answering is `link:mismatch`; nobody answering is `link:no-answer`
 * (forged: an address on the link that does not answer did not send the packet);
 * several MACs, the frame's among them, is `link:conflict` (no verdict). The
 * neighbour table alone is not enough: a forger's own ARP request for this host,
 * sent with the forged address as its sender, overwrites the entry (link_probe.h).
 * Off-link sources, frames without a link-layer source (loopback, tun) and packets
 * that came in on another interface than the route back (the reverse-path
 * validator's finding) get no answer here. Runs on the JS thread; the question is a
 * promise that settles within LinkView's window.
 */
import { NUD, RTN } from '../binding.js'
import type { LinkView } from './link-view.js'
import type { ValidationContext, Validator, ValidatorResult } from './types.js'

export interface LinkLayerOptions {
  /** Sources whose claim is always checked by asking the link, even against a confirmed entry (guarded addresses). */
  ask?: (src: string) => boolean
}

const CONFIRMED = NUD.reachable | NUD.permanent | NUD.noarp
const MATCH: ValidatorResult = Object.freeze({ verdict: 'plausible', evidence: Object.freeze(['link:match']) })
const NO_ANSWER: ValidatorResult = Object.freeze({ verdict: 'forged', evidence: Object.freeze(['link:no-answer']) })
const UNCHECKED: ValidatorResult = Object.freeze({ evidence: Object.freeze(['unchecked']) })

export function linkLayerValidator(view: LinkView, options: LinkLayerOptions = {}): Validator {
  const always = options.ask ?? (() => false)
  return {
    name: 'link-layer',
    validate(ctx: ValidationContext): ValidatorResult | null | Promise<ValidatorResult | null> {
      const mac = ctx.srcMac
      if (ctx.ifindex === 0 || mac === undefined) return null
      const route = view.route(ctx.src, ctx.dst)
      if (route === null || route.type !== RTN.unicast || route.gateway !== undefined || route.oif === 0) return null
      if (!view.arrivalSet(ctx.ifindex, ctx.vlan).has(route.oif)) return null
      const entry = view.neighbour(ctx.src, route.oif)
      // A static entry is the operator's word: it is never re-asked.
      const permanent = entry?.mac !== undefined && (entry.state & (NUD.permanent | NUD.noarp)) !== 0
      if (entry?.mac !== undefined && (entry.state & CONFIRMED) !== 0 && (permanent || !always(ctx.src))) {
        return entry.mac === mac ? MATCH : { verdict: 'forged', evidence: ['link:mismatch'], detail: { holder: entry.mac, frameMac: mac } }
      }
      return view.ask(ctx.src, route.oif).then((macs): ValidatorResult => {
        if (macs === null) return UNCHECKED
        if (macs.length === 0) return NO_ANSWER
        if (!macs.includes(mac)) return { verdict: 'forged', evidence: ['link:mismatch'], detail: { holder: macs.join(' '), frameMac: mac } }
        if (macs.length === 1) return MATCH
        return { evidence: ['link:conflict'], detail: { holder: macs.join(' '), frameMac: mac } }
      })
    },
  }
}
