'use strict'
// Redis killed under load and restarted (fail-open, the default): a
// redis-server of the test's own is SIGKILLed while 100 concurrent call
// chains read and write through one cache. No rejection reaches them, no
// wrong value is read, Redis trouble surfaces as 'error' events, and once
// Redis is back on the same port the same cache writes to it again.
const test = require('node:test')
const assert = require('node:assert/strict')
const { Cache } = require('../../node')
const { unique, freePort, startRedis, kill } = require('./helpers')

test('Redis SIGKILLed and restarted under 100 concurrent calls: fail-open, no wrong value, back on Redis', async (t) => {
  const port = await freePort()
  const url = `redis://127.0.0.1:${port}`
  let server = await startRedis(port)
  const namespace = unique('faults')
  const cache = new Cache({ redis: url, namespace, opTimeout: 200, connectTimeout: 200 })
  const errorEvents = []
  cache.on('error', (e) => errorEvents.push(e))
  const rejections = []
  const wrong = []
  const latencies = []
  let ops = 0
  let stop = false

  async function chain(n) {
    let i = 0
    while (!stop) {
      const key = `w${n}:${i % 20}`
      const value = { n, slot: i % 20 } // what this key may ever hold
      const t = performance.now()
      try {
        await cache.set(key, value, '1m')
        const got = await cache.get(key)
        if (got !== undefined && (got.n !== n || got.slot !== i % 20)) wrong.push(got)
        const loaded = await cache.getOrSet({ key: `gs${n % 10}:${i % 5}`, factory: async () => 'loaded', ttl: '1m' })
        if (loaded !== 'loaded') wrong.push(loaded)
      } catch (e) {
        rejections.push(e)
      }
      latencies.push(performance.now() - t)
      ops++
      i++
      // Yield to the event loop so the test's own timers run.
      await new Promise((r) => setImmediate(r))
    }
  }

  const chains = Array.from({ length: 100 }, (_, n) => chain(n))
  const waitOps = async (n) => {
    const target = ops + n
    while (ops < target) await new Promise((r) => setTimeout(r, 5))
  }
  let backAfterMs
  try {
    await waitOps(300) // traffic with Redis up
    await kill(server)
    await waitOps(1000) // traffic with Redis gone
    server = await startRedis(port)
    const answered = performance.now()
    // Back on L2 without a rebuild: a write through the same cache lands in
    // the restarted Redis (seen by a handle without L1).
    const probe = new Cache({ redis: url, namespace, l1: false, failOpen: false })
    const deadline = Date.now() + 10_000
    for (;;) {
      await cache.set('back', 'yes')
      if ((await probe.get('back').catch(() => undefined)) === 'yes') break
      assert.ok(Date.now() < deadline, 'the cache never used the restarted Redis')
      await new Promise((r) => setTimeout(r, 10))
    }
    backAfterMs = performance.now() - answered
    probe.close()
  } finally {
    stop = true
    await Promise.all(chains)
    await kill(server)
    cache.close()
  }
  assert.deepEqual(rejections, [], 'no rejection reaches fail-open callers')
  assert.deepEqual(wrong, [], 'no wrong value is read')
  assert.ok(errorEvents.length > 0, 'Redis trouble is reported as error events')
  assert.ok(errorEvents.every((e) => typeof e.code === 'string' && e.code.startsWith('E_L2')), 'typed')
  assert.ok(cache.stats().breaker_opens >= 1)
  assert.equal(cache.stats().breaker_open, 0, 'closed again once Redis answered')
  latencies.sort((a, b) => a - b)
  const max = latencies[latencies.length - 1]
  // Bounded by the 200 ms operation timeout per Redis call (three calls a
  // chain step), never an unbounded queue while Redis is gone.
  assert.ok(max < 3 * 200 + 1000, `max chain step ${max.toFixed(0)} ms`)
  const p99 = latencies[Math.floor(latencies.length * 0.99)]
  t.diagnostic(`${ops} chain steps, ${errorEvents.length} error events, p99 ${p99.toFixed(1)} ms, max ${max.toFixed(1)} ms, back after ${backAfterMs.toFixed(0)} ms`)
  assert.ok(backAfterMs < 1000, `back on Redis ${backAfterMs.toFixed(0)} ms after it answered`)
})
