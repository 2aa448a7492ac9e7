/**
 * The reverse-path validator: could this host answer the source through the interface
 * the packet came in on? A route lookup for the claimed source (from the address it
 * was sent to), compared with the packet's arrival (LinkView.arrivalSet: a bridge
 * port's bridge, a tag's VLAN device). No route back at all (unreachable, blackhole,
 * prohibit) is `rpf:no-route`; a route through another interface is
 * `rpf:other-interface` (strict reverse path, RFC 3704) — both forged; a claim of one
 * of this host's own addresses arriving from a link is `self`, forged. `loose` mode
 * keeps only the first and the last: for hosts whose routing is asymmetric on purpose.
 * Runs on the JS thread, synchronously (one or two netlink round trips).
 */
import { RTN } from '../binding.js'
import { NO_ROUTE_TYPES, type LinkView } from './link-view.js'
import type { ValidationContext, Validator, ValidatorResult } from './types.js'

export type ReversePathMode = 'strict' | 'loose'

const NO_ROUTE: ValidatorResult = Object.freeze({ verdict: 'forged', evidence: Object.freeze(['rpf:no-route']) })
const SELF: ValidatorResult = Object.freeze({ verdict: 'forged', evidence: Object.freeze(['self']) })
const PASS: ValidatorResult = Object.freeze({ evidence: Object.freeze(['rpf:pass']) })

export function reversePathValidator(view: LinkView, mode: ReversePathMode = 'strict'): Validator {
  return {
    name: 'reverse-path',
    validate(ctx: ValidationContext): ValidatorResult | null {
      if (ctx.ifindex === 0) return null
      const route = view.route(ctx.src, ctx.dst)
      if (route === null) return null
      if (route.type === RTN.local) return view.isLoopback(ctx.ifindex) ? null : SELF
      if (NO_ROUTE_TYPES.has(route.type)) return NO_ROUTE
      if (route.type !== RTN.unicast || route.oif === 0) return null
      if (mode === 'strict' && !view.arrivalSet(ctx.ifindex, ctx.vlan).has(route.oif)) {
        return {
          verdict: 'forged',
          evidence: ['rpf:other-interface'],
          detail: { routeInterface: view.link(route.oif)?.name ?? String(route.oif) },
        }
      }
      return PASS
    },
  }
}
