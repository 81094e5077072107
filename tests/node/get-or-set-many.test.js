'use strict'
// getOrSetMany: the fresh values from the cache, one loadMany call for the
// rest through the fleet leases, and a key another process is loading
// waited for, not loaded twice.

const test = require('node:test')
const assert = require('node:assert/strict')
const { Cache } = require('../../node/index.js')
const { CONFIGS, REDIS_URL, unique } = require('./helpers.js')

for (const [name, config] of Object.entries(CONFIGS)) {
  test(`${name}: one call for the missing keys`, async () => {
    const cache = new Cache({ namespace: unique(`many-${name}`), opTimeout: '5s', ...config })
    await cache.set('u:1', { id: 1 })
    const calls = []
    const loadMany = async (keys) => {
      calls.push(keys)
      return Object.fromEntries(keys.filter((k) => k !== 'u:404').map((k) => [k, { id: Number(k.slice(2)) }]))
    }
    const got = await cache.getOrSetMany({ keys: ['u:1', 'u:2', 'u:3', 'u:2', 'u:404'], loadMany, ttl: '1m', tags: ['users'] })
    assert.deepEqual([...got], [['u:1', { id: 1 }], ['u:2', { id: 2 }], ['u:3', { id: 3 }]])
    assert.deepEqual(calls, [['u:2', 'u:3', 'u:404']])
    const again = await cache.getOrSetMany({ keys: ['u:2', 'u:3'], loadMany, ttl: '1m' })
    assert.deepEqual([...again.keys()], ['u:2', 'u:3'])
    assert.equal(calls.length, 1)
    await cache.invalidateTags(['users'])
    await cache.getOrSetMany({ keys: ['u:2'], loadMany, ttl: '1m' })
    assert.deepEqual(calls.at(-1), ['u:2'])
    await cache.close()
  })
}

test('a key another process is loading is waited for', async () => {
  const namespace = unique('many-fleet')
  const a = new Cache({ namespace, redis: REDIS_URL, l1: { maxBytes: 1 << 20 } })
  const b = new Cache({ namespace, redis: REDIS_URL, l1: { maxBytes: 2 << 20 } }) // another state: another process
  let release
  const released = new Promise((resolve) => (release = resolve))
  let leading
  const led = new Promise((resolve) => (leading = resolve))
  const fromA = a.getOrSet({ key: 'k', ttl: '1m', factory: async () => { leading(); await released; return 'from a' } })
  await led
  const calls = []
  const got = await b.getOrSetMany({
    keys: ['j', 'k'],
    ttl: '1m',
    loadMany: async (keys) => {
      calls.push(keys)
      assert.ok(!keys.includes('k'), 'k was being loaded by a')
      release()
      return Object.fromEntries(keys.map((k) => [k, `from b ${k}`]))
    },
  })
  assert.equal(await fromA, 'from a')
  assert.deepEqual([...got], [['j', 'from b j'], ['k', 'from a']])
  assert.deepEqual(calls, [['j']])
  await a.close()
  await b.close()
})
