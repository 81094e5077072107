'use strict'
// Node's single Redis commands go over a connection of the JS thread,
// watched by libuv (docs/architecture.md, "L2"), not only over the
// multiplexed connection the runtime drives. On a Redis of the test's own,
// the clients that ran `get` are counted: the first read goes over the
// multiplexed connection while the thread's own opens, the later ones
// over the thread's own, so two connections have run `get`. If the binding
// never carried a command on the loop (libuv not found, the loop never
// given to the core), one would have.
const test = require('node:test')
const assert = require('node:assert/strict')
const Redis = require('ioredis')
const { Cache } = require('../../node')
const { unique, freePort, startRedis, kill } = require('./helpers')

/** Clients of `raw`'s server whose last command was `cmd`, the caller aside. */
async function ran(raw, cmd) {
  const list = await raw.client('LIST')
  return list
    .split('\n')
    .filter((l) => l.includes(` cmd=${cmd} `)).length
}

test("single commands go over the JS thread's own connection", async () => {
  const port = await freePort()
  const server = await startRedis(port)
  const url = `redis://127.0.0.1:${port}`
  const raw = new Redis({ port, host: '127.0.0.1', lazyConnect: true })
  const cache = new Cache({ redis: url, namespace: unique('evloop'), l1: false })
  try {
    await raw.connect()
    // Reads only: until the thread's connection is open they take the
    // multiplexed one (the first one always does), then the thread's.
    let connections = 0
    for (let i = 0; i < 200 && connections < 2; i++) {
      assert.equal(await cache.get('absent'), undefined)
      await new Promise((r) => setImmediate(r))
      connections = await ran(raw, 'get')
    }
    assert.equal(connections, 2, 'the multiplexed connection and the thread\'s own ran reads')
    // Many reads in flight at once, all answered with their own values.
    await cache.setMany(
      Array.from({ length: 100 }, (_, i) => [`m${i}`, { i }]),
      '1m',
    )
    const got = await Promise.all(Array.from({ length: 100 }, (_, i) => cache.get(`m${i}`)))
    assert.deepEqual(got, Array.from({ length: 100 }, (_, i) => ({ i })))
  } finally {
    cache.close()
    raw.disconnect()
    await kill(server)
  }
})
