/**
 * The command line grammar (commander 14): `watch`, `list`, `unblock`, `uninstall`,
 * `selftest`, and the original portanoia's `-p PORT -c CMD` form. Parsing only: it
 * turns argv into a ParsedCommand and never starts anything, so the grammar is unit
 * tested without root. Usage mistakes become UsageError (exit 2); help and version
 * are returned as text to print.
 */
import { Command, CommanderError, Option } from 'commander'
import { type CrowdsecConfig, FLEET_FLAGS } from '../fleet/config.js'
import { type Backend, type ConfigInput as WatchInput, didYouMean } from '../daemon/config.js'
import { VERSION } from '../version.js'
import { UsageError } from './options.js'

/**
 * Which daemon (and, without one, which table) a management command talks to:
 * `control` names the socket; otherwise the config file's `control`, else the
 * default one of the namespace (`netns`, or the config's). `backend` (default: the
 * config's, else nftables) is for the table when no daemon answers.
 */
export interface Target {
  backend?: Backend
  netns?: string
  control?: string
  config?: string
}

export type ParsedCommand =
  | { command: 'watch'; input: WatchInput; config?: string; legacy: boolean }
  | ({ command: 'list'; json?: boolean } & Target)
  | ({ command: 'unblock'; addresses: string[] } & Target)
  | ({ command: 'block'; addresses: string[]; ttl?: string } & Target)
  | ({ command: 'status'; json?: boolean } & Target)
  | ({ command: 'reload' } & Target)
  | { command: 'uninstall'; backend: Backend; netns?: string }
  | { command: 'selftest'; json?: boolean; keep: boolean }
  | { command: 'help'; text: string; exitCode: number }

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value]

export { VERSION }


function backendOption(): Option {
  return new Option('--backend <backend>', 'firewall backend').choices(['nftables', 'ipset']).default('nftables')
}

/** The options every management command shares (see Target). */
function targetOptions(cmd: Command, withBackend: boolean): Command {
  if (withBackend) cmd.addOption(new Option('--backend <backend>', "firewall backend when no daemon answers (default: the config's, else nftables)").choices(['nftables', 'ipset']))
  return cmd
    .option('--control <path>', "the daemon's control socket (default: the config's, else /run/portanoia/portanoia[-NETNS].sock)")
    .option('--config <file>', 'read control, netns, backend and allow from this config file (default /etc/portanoia/portanoia.json when it exists)')
    .addOption(netnsOption())
}

function target(o: Raw): Target {
  const t: Target = {}
  const backend = str(o, 'backend')
  if (backend !== undefined) t.backend = backend as Backend
  for (const k of ['netns', 'control', 'config'] as const) {
    const v = str(o, k)
    if (v !== undefined) t[k] = v
  }
  return t
}

function netnsOption(): Option {
  // Hidden: operators watching a container's namespace, and the privileged tests.
  return new Option('--netns <name>', 'act in this network namespace (ip netns list)').hideHelp()
}

type Raw = Record<string, unknown>

function str(o: Raw, k: string): string | undefined {
  const v = o[k]
  return typeof v === 'string' ? v : undefined
}

function list(o: Raw, k: string): string[] | undefined {
  const v = o[k]
  return Array.isArray(v) ? v.map(String) : undefined
}

function watchInput(o: Raw): WatchInput {
  const input: WatchInput = {}
  for (const k of ['tcp', 'udp', 'sctp', 'ipProto', 'unused', 'allow'] as const) {
    const v = list(o, k)
    if (v !== undefined) input[k] = v
  }
  for (const k of [
    'interface', 'netns', 'block', 'blockTtl', 'forgetAfter', 'aggregate', 'aggregatePrefix4', 'aggregatePrefix6', 'allowFile', 'spoofableTtl', 'maxBlocksPerMinute', 'maxActiveBlocks',
    'maxReportsPerMinute', 'threshold', 'window', 'backend', 'exec', 'webhook', 'statsInterval', 'reversePath', 'enforce',
    'ringRecords',
  ] as const) {
    const v = str(o, k)
    if (v !== undefined) input[k] = v
  }
  for (const k of ['json', 'dryRun', 'hits', 'forward'] as const) if (o[k] === true) input[k] = true
  if (o.linkProbe === false) input.linkProbe = false
  if (o.attribution === false) input.attribution = false
  if (o.scans === false) input.scans = false
  const metrics = str(o, 'metrics')
  if (metrics !== undefined) input.metrics = metrics
  // --control PATH, or --no-control (commander: control === false).
  if (o.control === false) input.control = false
  else if (typeof o.control === 'string') input.control = o.control
  if (o.state === false) input.state = false
  else if (typeof o.state === 'string') input.state = o.state
  // The fleet's flags, named by its own table (commander camel-cases them: --crowdsec-url → crowdsecUrl).
  const crowdsec: Partial<CrowdsecConfig> = {}
  for (const [flag, key] of Object.entries(FLEET_FLAGS)) {
    const v = str(o, attributeName(flag))
    if (v !== undefined) crowdsec[key] = v
  }
  if (o.crowdsecPushSpoofable === true) crowdsec.pushSpoofable = true
  if (Object.keys(crowdsec).length > 0) input.crowdsec = crowdsec
  return input
}

/** '--crowdsec-url <url>' → 'crowdsecUrl', as commander names the option's value. */
function attributeName(flag: string): string {
  return (flag.split(' ')[0] as string).replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())
}

const FLEET_HELP: Record<keyof typeof FLEET_FLAGS, string> = {
  '--crowdsec-url <url>': "fleet mode: CrowdSec Local API URL, e.g. http://10.0.0.5:8080 (see docs/fleet.md)",
  '--crowdsec-machine <name>': 'push local blocks to LAPI as this machine (cscli machines add)',
  '--crowdsec-password-file <file>': 'file holding the machine password (else $PORTANOIA_CROWDSEC_PASSWORD)',
  '--crowdsec-bouncer-key-file <file>': "apply the fleet's bans: file holding this host's bouncer key (else $PORTANOIA_CROWDSEC_BOUNCER_KEY)",
}

function unknownCommand(word: string, names: readonly string[]): UsageError {
  const near = didYouMean(word, names)
  return new UsageError(
    `unknown command ${JSON.stringify(word)}${near === undefined ? '' : ` (did you mean ${near}?)`}`,
    `commands: ${names.join(', ')}; run portanoia --help for usage`,
  )
}

export function buildProgram(out: (s: string) => void, err: (s: string) => void, onParsed: (p: ParsedCommand) => void): Command {
  const program = new Command('portanoia')
    .description('Tripwire ports for Linux: detect port scans in the kernel, block verified scanners with nftables')
    .version(VERSION)
    .configureOutput({ writeOut: out, writeErr: err })
    .exitOverride()
    // Root options (the legacy -p/-c/--json) only before a subcommand, so `list --json` is list's.
    .enablePositionalOptions()
    .showHelpAfterError('(run portanoia --help for usage)')
    .addHelpText(
      'after',
      `
Original portanoia form:
  portanoia -p 1337 -c "iptables -A INPUT -s [SRC_IP] -j DROP"
  tokens [SRC_IP] [DEST_IP] [DEST_PORT] [SRC_PORT] [LISTEN_PORT] are replaced by
  validated address and port literals only
`,
    )
    .option('-p, --port <ports>', 'legacy: tripwire TCP port(s), e.g. 1337 or 1337,2222', collect)
    .option('-c, --command <cmd>', 'legacy: command to run for each verified scanner')
    .option('--json', 'legacy: JSON lines output')
    // Words after the root are ours to judge: 'help watch', or a mistyped command.
    .allowExcessArguments(true)
    // …and so are unknown options after a mistyped command ('wach --tcp 2222').
    .allowUnknownOption(true)
    .action((o: Raw, cmd: Command) => {
      const words = cmd.args
      if (words.length > 0) {
        const names = program.commands.map((c) => c.name())
        const first = words[0] as string
        if (first.startsWith('-')) throw new UsageError(`unknown option ${JSON.stringify(first)}`, 'run portanoia --help for usage')
        if (words[0] === 'help') {
          const sub = words[1] === undefined ? undefined : program.commands.find((c) => c.name() === words[1])
          if (words[1] !== undefined && sub === undefined) throw unknownCommand(words[1], names)
          onParsed({ command: 'help', text: (sub ?? program).helpInformation(), exitCode: 0 })
          return
        }
        throw unknownCommand(first, names)
      }
      const ports = list(o, 'port')
      const command = str(o, 'command')
      if (ports === undefined) {
        if (command !== undefined) throw new UsageError('-c needs -p: which port should trigger it?', 'e.g. portanoia -p 1337 -c "logger [SRC_IP]"')
        onParsed({ command: 'help', text: program.helpInformation(), exitCode: 2 })
        return
      }
      const input: WatchInput = { tcp: ports }
      if (command !== undefined) {
        input.command = command
        // The command is the response, as in the original tool: no firewall table.
        input.backend = 'none'
      }
      if (o.json === true) input.json = true
      onParsed({ command: 'watch', input, legacy: true })
    })

  const watchCmd = program
    .command('watch')
    .description('watch tripwire ports and respond')
    .option('--tcp <ports>', 'TCP tripwires, e.g. 2222,2323 or 9000-9010 (repeatable)', collect)
    .option('--udp <ports>', 'UDP tripwires (repeatable)', collect)
    .option('--sctp <ports>', 'SCTP tripwires (repeatable)', collect)
    .option('--ip-proto <protocols>', 'IP protocol tripwires: any packet of the protocol is a hit, e.g. 47,50 (repeatable)', collect)
    .option('--unused <ranges>', 'every port of the range no local socket uses, kept in sync: 1-1023, 1-1023/udp (repeatable)', collect)
    .option('-i, --interface <if>', "capture interface (default: 'any')")
    .option('--config <file>', 'config file: JSON, comments allowed; flags override its fields (default /etc/portanoia/portanoia.json when it exists)')
    .addOption(new Option('--block <mode>', 'block verified sources, all (incl. spoofable, capped), or off (default verified)'))
    .option('--block-ttl <duration>', 'block lifetime for verified sources, or a ladder for repeat offenders: 1h,1d,7d (default 1h)')
    .option('--forget-after <duration>', 'a repeat offender starts the ladder again after this long without a block (default 30d)')
    .option('--aggregate <n>', 'n verified blocks in one prefix block the whole prefix (nftables); off by default')
    .option('--aggregate-prefix4 <len>', 'IPv4 prefix length of a prefix ban (default 24)')
    .option('--aggregate-prefix6 <len>', 'IPv6 prefix length of a prefix ban (default 64)')
    .option('--spoofable-ttl <duration>', 'block lifetime for spoofable sources (default 5m)')
    .option('--max-blocks-per-minute <n>', 'new spoofable blocks per minute before report-only (default 60)')
    .option('--max-active-blocks <n>', 'spoofable blocks active at once (default 1000)')
    .option('--max-reports-per-minute <n>', 'per-source decisions about spoofable sources a minute; beyond, counted in a summary (default 600)')
    .option('--allow <cidr>', 'never block this network (repeatable)', collect)
    .option('--allow-file <file>', 'never block the networks in this file: one address or CIDR a line, # comments')
    .option('--threshold <n>', 'completed handshakes per window before a block (default 1)')
    .option('--window <duration>', 'aggregation window per source (default 60s)')
    .option('--backend <backend>', 'nftables, ipset or none (default nftables)')
    .option('--exec <cmd>', "run a command per block, argv without a shell: 'logger blocked {src}'")
    .option('--webhook <url>', 'POST each block/report decision as JSON')
    .option('--json', 'JSON lines (default when stdout is not a terminal)')
    .option('--dry-run', 'print the exact nft script instead of applying it; change nothing')
    .option('--hits', 'also emit one event per packet')
    .option('--forward', 'also drop blocked sources on the forward hook (published container ports)')
    .addOption(new Option('--enforce <where>', 'where blocks drop: input (inet input hook, default), ingress (netdev chain on --interface, before routing and conntrack) or both').choices(['input', 'ingress', 'both']))
    .option('--stats-interval <duration>', 'stats event period (default 60s)')
    .option('--ring-records <n>', 'hits the ring between capture and the daemon holds, 96 bytes each (default 262144: 24 MiB)')
    .option('--metrics <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics, e.g. 127.0.0.1:9464 (:9464 = loopback)')
    .option('--control <path>', 'control socket for status, list, block, unblock, reload (default /run/portanoia/portanoia[-NETNS].sock)')
    .option('--no-control', 'no control socket')
    .option('--state <file>', 'state file: the ladder\'s history and blocks to restore after a reboot (default /var/lib/portanoia/state[-NETNS].json)')
    .option('--no-state', 'no state file')
    .addOption(new Option('--reverse-path <mode>', 'attribution: strict (default), loose (only "no route back" is evidence of forgery), or off').choices(['strict', 'loose', 'off']))
    .option('--no-link-probe', 'attribution: never send an ARP/NS question about an on-link source (the neighbour table only)')
    .option('--no-attribution', 'no attribution checks: hits say unchecked, and --block all acts on every spoofable source')
    .option('--no-scans', 'no scan tracking: no scan or decoy events (saves its per-hit cost under a flood)')
  for (const flag of Object.keys(FLEET_FLAGS) as Array<keyof typeof FLEET_FLAGS>) watchCmd.option(flag, FLEET_HELP[flag])
  watchCmd.option('--crowdsec-push-spoofable', 'also push blocks from spoofable evidence (--block all); off by default: a forged packet must not become a fleet-wide ban')
  watchCmd
    .addOption(netnsOption())
    .action((o: Raw) => {
      const config = str(o, 'config')
      const p: ParsedCommand = { command: 'watch', input: watchInput(o), legacy: false }
      if (config !== undefined) p.config = config
      onParsed(p)
    })

  targetOptions(
    program
      .command('list')
      .description('active blocks with time left, origin and reason: from the running daemon, else read from the kernel')
      .option('--json', 'a JSON array of the blocks ([] when there are none)'),
    true,
  ).action((o: Raw) => {
    const p: ParsedCommand = { command: 'list', ...target(o) }
    if (o.json === true) p.json = true
    onParsed(p)
  })

  targetOptions(
    program
      .command('unblock')
      .description('remove blocks, through the running daemon (else straight from the kernel table)')
      .argument('<address...>', 'IPv4 or IPv6 addresses'),
    true,
  ).action((addresses: string[], o: Raw) => {
    onParsed({ command: 'unblock', addresses, ...target(o) })
  })

  targetOptions(
    program
      .command('block')
      .description("block addresses (guards apply; a longer block is kept), through the running daemon, else in the kernel table")
      .argument('<address...>', 'IPv4 or IPv6 addresses')
      .option('--ttl <duration>', "block lifetime (default: the config's block TTL, 1h)"),
    true,
  ).action((addresses: string[], o: Raw) => {
    const p: ParsedCommand = { command: 'block', addresses, ...target(o) }
    const ttl = str(o, 'ttl')
    if (ttl !== undefined) p.ttl = ttl
    onParsed(p)
  })

  targetOptions(
    program
      .command('status')
      .description('what the running daemon is doing: tripwires, counters, blocks by origin, breaker, guards, fleet, reloads')
      .option('--json', 'one JSON document'),
    false,
  ).action((o: Raw) => {
    const p: ParsedCommand = { command: 'status', ...target(o) }
    if (o.json === true) p.json = true
    onParsed(p)
  })

  targetOptions(
    program.command('reload').description('make the running daemon re-read its config and apply it live (as SIGHUP does)'),
    false,
  ).action((o: Raw) => {
    onParsed({ command: 'reload', ...target(o) })
  })

  program
    .command('uninstall')
    .description("remove portanoia's firewall table (or ipset sets and rules) and nothing else")
    .addOption(backendOption())
    .addOption(netnsOption())
    .action((o: Raw) => {
      const p: ParsedCommand = { command: 'uninstall', backend: str(o, 'backend') as Backend }
      const ns = str(o, 'netns')
      if (ns !== undefined) p.netns = ns
      onParsed(p)
    })

  program
    .command('selftest')
    .description('prove detection and response on this machine, in namespaces of its own')
    .option('--json', 'JSON result instead of a table')
    .addOption(new Option('--keep', 'leave the namespaces for inspection (debugging)').hideHelp())
    .action((o: Raw) => {
      const p: ParsedCommand = { command: 'selftest', keep: o.keep === true }
      if (o.json === true) p.json = true
      onParsed(p)
    })

  return program
}

/** Parses argv (without node and script). Throws UsageError on mistakes. */
export function parseCommandLine(argv: readonly string[]): ParsedCommand {
  let parsed: ParsedCommand | undefined
  let output = ''
  const program = buildProgram(
    (s) => {
      output += s
    },
    (s) => {
      output += s
    },
    (p) => {
      parsed = p
    },
  )
  try {
    program.parse([...argv], { from: 'user' })
  } catch (e) {
    if (e instanceof UsageError) throw e
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return { command: 'help', text: output, exitCode: 0 }
      throw new UsageError(e.message.replace(/^error: /, ''), 'run portanoia --help for usage')
    }
    throw e
  }
  return parsed ?? { command: 'help', text: program.helpInformation(), exitCode: 2 }
}
