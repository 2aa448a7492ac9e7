/**
 * The event schema version, alone in its module: lib/daemon/events.ts (the stream's
 * schema) includes the fleet events of lib/fleet/events.ts, and both need this
 * constant while their schemas are built at load time, so it cannot live in
 * either without an import cycle that would read it before it is initialised.
 */

/** The schema version every event carries as `v`. */
export const EVENT_SCHEMA_VERSION = 1
