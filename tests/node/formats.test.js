'use strict'
// An entry the serializer cannot read (another serializer wrote it, e.g. v8
// before a deploy switched to json) is a counted miss for every read,
// getOrSet included: one factory run overwrites it.
const test = require('node:test')
const assert = require('node:assert/strict')
const { Cache } = require('../../node/index.js')
const { REDIS_URL, unique } = require('./helpers.js')

test('getOrSet loads over an unreadable entry, once for concurrent callers', async () => {
  const namespace = unique('formats')
  const old = new Cache({ namespace, redis: REDIS_URL, serializer: 'v8' })
  const fresh = new Cache({ namespace, redis: REDIS_URL, serializer: 'json' })
  try {
    await old.set('k', new Map([['a', 1]]), '1m')
    assert.equal(await fresh.get('k'), undefined)
    // Refused twice: the copy in the (shared) L1, then the one in Redis.
    assert.equal(fresh.stats().format_refusals, 2)
    assert.deepEqual(await fresh.getMany(['k']), [undefined])
    let calls = 0
    const factory = async () => {
      calls++
      await new Promise((r) => setImmediate(r))
      return { a: 1 }
    }
    const got = await Promise.all(Array.from({ length: 8 }, () => fresh.getOrSet({ key: 'k', factory, ttl: '1m' })))
    assert.deepEqual(got, Array(8).fill({ a: 1 }))
    assert.equal(calls, 1, 'one factory run overwrote the entry')
    assert.deepEqual(await fresh.get('k'), { a: 1 })
  } finally {
    old.close()
    fresh.close()
  }
})
