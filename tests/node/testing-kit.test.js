'use strict'
// `stratacache/testing` as a user's tests use it (through the package's
// export map): an isolated cache, Redis unreachable for a block, a factory
// spy, counters since a point. Real Redis.

const test = require('node:test')
const assert = require('node:assert/strict')
const { isolatedCache, redisDown, counting, spy, uniqueNamespace } = require('stratacache/testing')
const { RedisUnavailableError } = require('stratacache')
const { REDIS_URL } = require('./helpers.js')

test('isolated caches do not see each other', async () => {
  const a = isolatedCache({ redis: REDIS_URL })
  const b = isolatedCache({ redis: REDIS_URL })
  assert.notEqual(a.namespace, b.namespace)
  assert.match(uniqueNamespace('x'), /^x-[0-9a-f]{16}$/)
  await a.set('k', 1)
  assert.equal(await b.get('k'), undefined)
  await a.close()
  await b.close()
})

test('spy and counting', async () => {
  const cache = isolatedCache({ redis: REDIS_URL })
  const factory = spy(async () => ({ name: 'Ada' }))
  const seen = counting(cache)
  assert.deepEqual(await cache.getOrSet({ key: 'u:1', factory }), { name: 'Ada' })
  assert.deepEqual(await cache.getOrSet({ key: 'u:1', factory }), { name: 'Ada' })
  assert.equal(factory.calls, 1)
  assert.equal(seen.get('l1_hits'), 1)
  assert.equal(seen.get('loads_completed'), 1)
  assert.equal(seen.all().l2_errors, undefined)
  assert.throws(() => seen.get('no_such_counter'), RangeError)
  factory.reset()
  assert.equal(factory.calls, 0)
  await cache.close()
})

test('Redis down for a block, then back', async () => {
  const strict = isolatedCache({ redis: REDIS_URL, failOpen: false })
  await strict.set('k', 'v')
  const seen = counting(strict)
  await redisDown(strict, async () => {
    // What this process's L1 holds is all that is left, as in a real outage.
    assert.equal(await strict.get('k'), 'v')
    assert.equal(seen.get('l1_outage_hits'), 1)
    await assert.rejects(strict.get('absent'), (e) => e instanceof RedisUnavailableError && /simulated outage/.test(e.message))
  })
  await strict.set('absent', 'now')
  assert.equal(await strict.get('absent'), 'now')
  await strict.close()

  // A write Redis never took is not served once Redis is back.
  const local = isolatedCache({ redis: REDIS_URL })
  local.on('error', () => {})
  await redisDown(local, async () => {
    await local.set('w', 'only here')
    assert.equal(await local.get('w'), 'only here')
  })
  assert.equal(await local.get('w'), undefined)
  await local.close()

  const open = isolatedCache({ redis: REDIS_URL })
  open.on('error', () => {})
  const factory = spy(() => 'fresh')
  const value = await redisDown([open], async () => {
    assert.equal(await open.get('absent'), undefined) // fail-open: a miss
    return open.getOrSet({ key: 'other', factory })
  })
  assert.equal(value, 'fresh')
  assert.equal(factory.calls, 1)
  await open.close()
})

test('ESM entry point', async () => {
  const m = await import('stratacache/testing')
  assert.equal(typeof m.redisDown, 'function')
  assert.equal(typeof m.isolatedCache, 'function')
})
