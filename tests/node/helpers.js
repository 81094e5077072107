'use strict'
// Shared helpers: Redis locations come from scripts/with-redis.sh (`make test`).
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const net = require('node:net')
const { spawn } = require('node:child_process')
const { once } = require('node:events')

const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379'
const CLUSTER = process.env.STRATACACHE_CLUSTER
if (!CLUSTER) throw new Error('STRATACACHE_CLUSTER is not set: run the tests with `make test`')

const CONFIGS = {
  l1: {},
  redis: { redis: REDIS_URL },
  cluster: { cluster: CLUSTER.split(',') },
}

function unique(prefix) {
  return `${prefix}-${crypto.randomBytes(6).toString('hex')}`
}

/** A free loopback port (for a redis-server of a test's own). */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

/** A redis-server of the test's own on `port`, once it accepts connections. */
async function startRedis(port) {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  })
  const deadline = Date.now() + 10_000
  for (;;) {
    const up = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1')
      c.once('connect', () => {
        c.destroy()
        resolve(true)
      })
      c.once('error', () => resolve(false))
    })
    if (up) return child
    assert.ok(Date.now() < deadline, 'redis-server did not start')
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** SIGKILL a server started by `startRedis` and wait for it to exit. */
async function kill(child) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGKILL')
  await exited
}

/** Resolve once `fn()` is true; reject naming `what` after `ms`. */
async function until(what, fn, ms = 10_000) {
  const deadline = Date.now() + ms
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

module.exports = { REDIS_URL, CLUSTER, CONFIGS, unique, freePort, startRedis, kill, until }
