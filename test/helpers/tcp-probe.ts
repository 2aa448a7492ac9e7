/**
 * A real TCP service in a test namespace and a connect probe from another, for the
 * firewall tests: the service (a node net server that accepts and closes, dual-stack
 * on '::') is started with the namespace's spawn and ended by PID via stop(); the
 * probe reports whether a handshake completes within 1 s. No shell anywhere.
 */
import type { ChildProcess } from 'node:child_process'
import type { Host, TestNet } from './netns.js'

export const PROBE_PORT = 8080
const SERVER = `require('net').createServer((s) => s.end()).listen(${PROBE_PORT}, '::', () => console.log('ready'))`
const CONNECT = `const s = require('net').connect({ host: process.argv[1], port: +process.argv[2], timeout: 1000 });
s.on('connect', () => process.exit(0)); s.on('timeout', () => process.exit(2)); s.on('error', () => process.exit(3))`

/** Starts the service in the sensor namespace and resolves once it listens. */
export async function startService(net: TestNet): Promise<ChildProcess> {
  const child = net.sensorSpawn('node', ['-e', SERVER])
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (c: Buffer) => {
      if (c.toString().includes('ready')) resolve()
    })
    child.once('exit', (code) => reject(new Error(`service exited with ${String(code)}`)))
  })
  return child
}

/** True when `peer` completes a TCP handshake with `address` within 1 s. */
export async function canConnect(peer: Host, address: string): Promise<boolean> {
  return (await peer.exec('node', ['-e', CONNECT, address, String(PROBE_PORT)], { timeoutMs: 10_000 })).code === 0
}
