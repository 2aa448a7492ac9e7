/**
 * attachAttributor(sensor, options): the one way to give a sensor's hits their
 * `attribution` and `evidence`. Builds the built-in validators for the sensor's
 * network namespace — reverse path, link layer (with its ARP/NS questions), hop count —
 * then the caller's own after them, into one Attributor whose answers the sensor's
 * hits read on access. The daemon calls it with the config's choices; an embedding
 * service that uses open() directly calls it itself. Runs on the JS thread. close() on
 * the returned attributor detaches it and closes the kernel handles it opened.
 */

import { loadBinding, type NativeBinding, type NativeLinkFacts } from '../binding.js'
import { ATTRIBUTE_HITS } from '../decode.js'
import type { Sensor } from '../sensor.js'
import { Attributor } from './attributor.js'
import { hopCountValidator } from './hop-count.js'
import { linkLayerValidator } from './link-layer.js'
import { LinkView } from './link-view.js'
import { type ReversePathMode, reversePathValidator } from './reverse-path.js'
import type { Validator } from './types.js'

export interface AttachOptions {
  /** Path of the network namespace the sensor captures in (`/run/netns/NAME`); default this process's. */
  netns?: string
  /** Validators of your own, run after the built-ins (an inventory lookup, say). */
  validators?: readonly Validator[]
  /** Strict reverse path (default), loose (only "no route back" counts), or off. */
  reversePath?: ReversePathMode | 'off'
  /**
   * Ask the link who holds an on-link source (an ARP probe, a neighbour solicitation)
   * when the neighbour table cannot answer for sure. Default true; without it such
   * sources are `unchecked` by the link-layer validator.
   */
  linkProbe?: boolean
  /** Sources always asked about on the link, even against a confirmed entry (guarded addresses). */
  ask?: (src: string) => boolean
  /** A validator or a kernel question failed (said once per kind). */
  onError?: (what: string, error: unknown) => void
  /** @internal A loaded addon (tests pass a fake), or the link facts themselves. */
  binding?: NativeBinding
  /** @internal */
  linkFacts?: NativeLinkFacts
  /** @internal Milliseconds; default Date.now. */
  now?: () => number
}

/** What attachAttributor made besides the attributor: the view of the links, for the daemon's forgery alerts. */
export interface Attached {
  attributor: Attributor
  links: LinkView
}

/** Builds the built-ins for a namespace and attaches them (and `validators`) to `sensor`. */
export function attachAttributor(sensor: Sensor, options: AttachOptions = {}): Attributor {
  return attach(sensor, options).attributor
}

/** attachAttributor, also handing back the link view. @internal */
export function attach(sensor: Sensor, options: AttachOptions = {}): Attached {
  const onError = options.onError ?? ((): void => {})
  const native = options.linkFacts ?? new (options.binding ?? loadBinding()).LinkFacts(options.netns === undefined ? {} : { netns: options.netns })
  const links = new LinkView({
    native,
    ...(options.now !== undefined && { now: options.now }),
    ...(options.linkProbe === false && { asksPerSecond: 0 }),
    onError,
  })
  const validators: Validator[] = []
  const mode = options.reversePath ?? 'strict'
  if (mode !== 'off') validators.push(reversePathValidator(links, mode))
  validators.push({ ...linkLayerValidator(links, options.ask === undefined ? {} : { ask: options.ask }), close: () => links.close() })
  validators.push(hopCountValidator(options.now === undefined ? {} : { now: options.now }))
  validators.push(...(options.validators ?? []))
  const attributor = new Attributor({
    validators,
    ...(options.now !== undefined && { now: options.now }),
    onError: (validator, err) => onError(`validator ${validator}`, err),
    // Weakly: the attributor is reachable from every hit the sensor decoded (through the
    // hook), and a kept hit must not keep an unclosed sensor alive (test/lifecycle).
    onClose: () => ref.deref()?.[ATTRIBUTE_HITS](null),
  })
  const ref = new WeakRef(sensor)
  sensor[ATTRIBUTE_HITS]((hit) => attributor.attribute(hit))
  return { attributor, links }
}
