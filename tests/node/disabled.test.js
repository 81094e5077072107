'use strict'
// Caching off for a block (`cache.disabled(fn)`, `disabled(fn)`): the
// shared table (tests/vectors/disabled.json, also run by
// tests/python/test_disabled.py) on every kind of cache (L1 alone, Redis,
// shared values), then what the scope covers.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { Cache, disabled, InvalidValueError } = require('../../node/index.js')
const { REDIS_URL, unique } = require('./helpers.js')

const { cases } = require(path.join(__dirname, '..', 'vectors', 'disabled.json'))

const KINDS = {
  l1: () => ({}),
  redis: () => ({ redis: REDIS_URL }),
  'shared values': () => ({ redis: REDIS_URL, clone: false }),
}

function loader(value) {
  const l = { calls: 0 }
  l.one = async () => {
    l.calls++
    return value
  }
  l.many = async (keys) => {
    l.calls++
    return new Map(keys.map((k) => [k, value]))
  }
  return l
}

async function call(c, k, l) {
  switch (k.call) {
    case 'get':
      return (await c.get(k.key)) ?? null
    case 'has':
      return c.has(k.key)
    case 'get_many': {
      const vs = await c.getMany(k.keys)
      return Object.fromEntries(k.keys.map((key, i) => [key, vs[i]]).filter(([, v]) => v !== undefined))
    }
    case 'set':
      return c.set(k.key, k.value, '1m')
    case 'add':
      return c.add(k.key, k.value, '1m')
    case 'touch':
      return c.touch(k.key, '1m')
    case 'get_or_set':
      return c.getOrSet({ key: k.key, factory: l.one, ttl: '1m' })
    case 'get_or_set_many':
      return Object.fromEntries(await c.getOrSetMany({ keys: k.keys, loadMany: l.many, ttl: '1m' }))
    case 'warm':
      return c.warm(k.keys, { factory: l.one, ttl: '1m' })
    case 'delete':
      return c.delete(k.key)
    case 'incr':
      return c.incr(k.key)
    case 'invalidate_tags':
      return c.invalidateTags(k.tags)
    case 'clear':
      return c.clear()
    default:
      throw new Error(`unknown call ${k.call}`)
  }
}

for (const [kind, options] of Object.entries(KINDS)) {
  test(`the table, ${kind}`, async () => {
    for (const k of cases) {
      const c = new Cache({ namespace: unique('off'), opTimeout: '5s', ...options() })
      try {
        await c.set('k', 'old', '1m', { tags: ['t'] })
        await c.set('tagged', 'x', '1m', { tags: ['t'] })
        await c.set('n', 1, '1m')
        const l = loader(k.value)
        const where = `${kind}: ${k.call} ${k.key || k.keys || ''}`
        const got = await c.disabled(() => call(c, k, l))
        if ('returns' in k) assert.deepEqual(got, k.returns, where)
        assert.equal(l.calls, k.loads || 0, `${where}: loader calls`)
        for (const [key, want] of Object.entries(k.after)) {
          assert.deepEqual((await c.get(key)) ?? null, want, `${where}: ${key} afterwards`)
        }
      } finally {
        await c.close()
      }
    }
  })
}

test('what the scope covers: this cache, every handle on its data, nesting, the global switch', async () => {
  const ns = unique('off-scope')
  const a = new Cache({ namespace: ns, redis: REDIS_URL })
  const same = new Cache({ namespace: ns, redis: REDIS_URL, l1: { maxBytes: 3 << 20 } })
  const other = new Cache({ namespace: unique('off-other'), redis: REDIS_URL })
  try {
    await a.set('k', 'old', '1m')
    await other.set('k', 'old', '1m')
    await a.disabled(async () => {
      assert.equal(await a.get('k'), undefined)
      assert.equal(await same.get('k'), undefined, 'another handle on the same data is covered')
      assert.equal(await other.get('k'), 'old', 'another cache is not')
      await other.disabled(async () => {
        assert.equal(await other.get('k'), undefined)
        assert.equal(await a.get('k'), undefined, 'nested: the outer cache stays off')
      })
      assert.equal(await other.get('k'), 'old')
      await disabled(async () => assert.equal(await other.get('k'), undefined))
      // Callbacks started inside inherit the scope.
      assert.equal(await new Promise((resolve) => setTimeout(() => resolve(a.get('k')), 1)), undefined)
    })
    assert.equal(await a.get('k'), 'old', 'back on after the block')
    assert.equal(await other.get('k'), 'old')
    assert.equal(a.disabled(() => 7), 7, 'returns what fn returns')
    assert.throws(() => a.disabled('nope'), InvalidValueError)
  } finally {
    await Promise.all([a.close(), same.close(), other.close()])
  }
})

test('every caller runs its factory; nothing is coalesced or stored', async () => {
  const c = new Cache({ namespace: unique('off-flight'), redis: REDIS_URL })
  try {
    let calls = 0
    let release
    const gate = new Promise((resolve) => (release = resolve))
    const factory = async () => {
      calls++
      if (calls === 3) release()
      await gate // all three are in their factories at once
      return 'v'
    }
    const got = await c.disabled(() => Promise.all([1, 2, 3].map(() => c.getOrSet({ key: 'hot', factory, ttl: '1m' }))))
    assert.deepEqual(got, ['v', 'v', 'v'])
    assert.equal(calls, 3)
    assert.equal(await c.get('hot'), undefined)
    assert.equal(await c.getOrSet({ key: 'hot', factory: async () => 'cached', ttl: '1m' }), 'cached')
    assert.equal(await c.get('hot'), 'cached', 'stored once caching is back on')
  } finally {
    await c.close()
  }
})
