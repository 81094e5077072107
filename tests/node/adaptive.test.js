'use strict'
// Adaptive caching: a factory returns `new Loaded(value, { ttl, grace, tags })`
// to choose the entry's lifetime and tags from what it loaded. Real Redis;
// the entry's lifetime is read back from Redis (PTTL).

const test = require('node:test')
const assert = require('node:assert/strict')
const Redis = require('ioredis')
const { Cache, Loaded, NoCache, InvalidValueError } = require('../../node/index.js')
const { REDIS_URL, unique } = require('./helpers.js')

async function withCache(fn) {
  const namespace = unique('adaptive')
  const cache = new Cache({ namespace, redis: REDIS_URL, ttl: '10m', opTimeout: '5s' })
  const raw = new Redis(REDIS_URL)
  try {
    await fn(cache, (key) => raw.pttl(`sc:${namespace}:{${key}}`))
  } finally {
    raw.disconnect()
    await cache.close()
  }
}

test('ttl and grace replace the caller’s', () =>
  withCache(async (cache, pttl) => {
    assert.deepEqual(await cache.getOrSet({ key: 'short', factory: () => new Loaded({ n: 1 }, { ttl: '30s' }), ttl: '10m' }), { n: 1 })
    const short = await pttl('short')
    assert.ok(short > 25_000 && short <= 30_000, String(short))
    await cache.getOrSet({ key: 'graced', factory: () => new Loaded(1, { ttl: 30_000, grace: '100s' }), ttl: '10m', allowStale: true, grace: '5s' })
    const graced = await pttl('graced')
    assert.ok(graced > 125_000 && graced <= 130_000, String(graced))
    await cache.getOrSet({ key: 'plain', factory: () => 1, ttl: '10m' })
    const plain = await pttl('plain')
    assert.ok(plain > 595_000 && plain <= 600_000, String(plain))
  }))

test('tags are added to the caller’s', () =>
  withCache(async (cache) => {
    let calls = 0
    const factory = () => new Loaded(`v${++calls}`, { tags: ['product:7'] })
    const opts = { key: 'p7', factory, tags: ['catalog'] }
    assert.equal(await cache.getOrSet(opts), 'v1')
    assert.equal(await cache.getOrSet(opts), 'v1')
    await cache.invalidateTags(['product:7'])
    assert.equal(await cache.getOrSet(opts), 'v2')
    await cache.invalidateTags(['catalog'])
    assert.equal(await cache.getOrSet(opts), 'v3')
    assert.equal(calls, 3)
  }))

test('ttl 0 hands the value out without storing it', () =>
  withCache(async (cache) => {
    let calls = 0
    const factory = () => {
      calls++
      return new Loaded({ status: 'pending' }, { ttl: 0 })
    }
    assert.deepEqual(await cache.getOrSet({ key: 'order', factory }), { status: 'pending' })
    assert.equal(await cache.get('order'), undefined)
    await cache.getOrSet({ key: 'order', factory })
    assert.equal(calls, 2)
    assert.equal(cache.stats().not_cached, 2)
  }))

test('bad options are typed errors', () =>
  withCache(async (cache) => {
    await assert.rejects(
      cache.getOrSet({ key: 'bad', factory: () => new Loaded(1, { tags: [''] }) }),
      (e) => e instanceof InvalidValueError && e.code === 'E_INVALID_VALUE' && /tag names/.test(e.message),
    )
    assert.throws(() => new Loaded(1, { tags: /** @type {any} */ ('product:7') }), TypeError)
    assert.throws(() => new Loaded(1, { ttl: 'soon' }), InvalidValueError)
    assert.equal(await cache.get('bad'), undefined)
  }))

test('getOrSetMany and warm values choose their own options', () =>
  withCache(async (cache, pttl) => {
    const loadMany = async () => ({ a: new Loaded('A', { tags: ['t:a'] }), b: new Loaded('B', { ttl: 0 }), c: new NoCache('C'), d: 'D' })
    const got = await cache.getOrSetMany({ keys: ['a', 'b', 'c', 'd'], loadMany, ttl: '10m' })
    assert.deepEqual([...got], [['a', 'A'], ['b', 'B'], ['c', 'C'], ['d', 'D']])
    assert.deepEqual(await Promise.all(['a', 'b', 'c', 'd'].map((k) => cache.get(k))), ['A', undefined, undefined, 'D'])
    await cache.invalidateTags(['t:a'])
    assert.equal(await cache.get('a'), undefined)
    assert.equal(await cache.get('d'), 'D')
    assert.equal(await cache.warm(['x', 'y'], { loadMany: async () => ({ x: new Loaded(1, { ttl: '30s' }), y: new NoCache(2) }) }), 1)
    const x = await pttl('x')
    assert.ok(x > 25_000 && x <= 30_000, String(x))
    assert.equal(await cache.get('y'), undefined)
  }))

test('fail-open answers the factory’s value, not the wrapper', async () => {
  const { redisDown } = require('../../node/testing.js')
  const cache = new Cache({ namespace: unique('adaptive-fo'), redis: REDIS_URL })
  cache.on('error', () => {})
  await redisDown(cache, async () => {
    assert.equal(await cache.getOrSet({ key: 'k', factory: () => new Loaded(5, { ttl: 1000 }) }), 5)
    assert.equal(await cache.getOrSet({ key: 'n', factory: async () => new NoCache(6) }), 6)
  })
  await cache.close()
})

test('a bad Loaded option fails the waiters too, at once', () =>
  withCache(async (cache) => {
    let release
    const gate = new Promise((r) => (release = r))
    const factory = async () => {
      await gate
      return new Loaded(1, { tags: [''] })
    }
    const leader = cache.getOrSet({ key: 'bad', factory, waitTimeout: '60s' })
    const waiter = cache.getOrSet({ key: 'bad', factory, waitTimeout: '60s' })
    release()
    const isBad = (e) => e instanceof InvalidValueError
    await assert.rejects(leader, isBad)
    await assert.rejects(waiter, isBad)
    assert.throws(() => new Loaded(1, { grace: null }), InvalidValueError)
  }))
