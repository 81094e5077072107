'use strict'
// Fail-safe, soft and hard timeouts, negative caching and warm-up through
// the Promise API, in-process and tiered (Redis and Cluster). Factories
// block on promises the test resolves, never on timing.
const test = require('node:test')
const assert = require('node:assert/strict')
const { Cache, NoCache, LoaderTimeoutError, InvalidValueError } = require('../../node/index.js')
const { CONFIGS, unique } = require('./helpers.js')

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

function gate() {
  let open
  const promise = new Promise((r) => {
    open = r
  })
  return { promise, open }
}

async function makeStale(cache, key, value) {
  await cache.set(key, value, 1, { grace: '1m' })
  await sleep(5) // past the 1 ms TTL, well within the grace
  assert.equal(await cache.get(key), undefined)
}

async function until(pred, what) {
  const deadline = Date.now() + 10_000
  while (!(await pred())) {
    assert.ok(Date.now() < deadline, what)
    await sleep(5)
  }
}

for (const [name, cfg] of Object.entries(CONFIGS)) {
  test(`${name}: fail-safe serves the stale value when the factory throws`, async () => {
    const cache = new Cache({ namespace: unique('failsafe'), opTimeout: 5000, ...cfg })
    await makeStale(cache, 'k', { v: 'old' })
    let calls = 0
    const failing = async () => {
      calls++
      throw new Error('origin down')
    }
    assert.deepEqual(await cache.getOrSet({ key: 'k', factory: failing, ttl: '1m', failSafe: true }), { v: 'old' })
    // Throttled: served as fresh, the failing origin is left alone.
    assert.deepEqual(await cache.getOrSet({ key: 'k', factory: failing, ttl: '1m', failSafe: true }), { v: 'old' })
    assert.equal(calls, 1)
    assert.equal(cache.stats().fail_safe_served, 1)
    const err = new Error('no fallback')
    await assert.rejects(
      cache.getOrSet({ key: 'cold', factory: () => Promise.reject(err), failSafe: true }),
      (e) => e === err,
    )
    await cache.close()
  })

  test(`${name}: soft timeout serves stale while the factory finishes in the background`, async () => {
    const cache = new Cache({ namespace: unique('soft'), opTimeout: 5000, ...cfg })
    await makeStale(cache, 'k', 'old')
    const g = gate()
    const v = await cache.getOrSet({
      key: 'k',
      factory: async () => {
        await g.promise
        return 'new'
      },
      ttl: '1m',
      failSafe: true,
      softTimeout: 20,
    })
    assert.equal(v, 'old')
    g.open()
    await until(async () => (await cache.get('k')) === 'new', 'the slow factory filled the cache')
    assert.equal(cache.stats().soft_timeouts, 1)
    await cache.close()
  })

  test(`${name}: hard timeout without a stale value rejects with LoaderTimeoutError`, async () => {
    const cache = new Cache({ namespace: unique('hard'), opTimeout: 5000, ...cfg })
    const g = gate()
    const factory = async () => {
      await g.promise
      return 'late'
    }
    await assert.rejects(
      cache.getOrSet({ key: 'k', factory, ttl: '1m', hardTimeout: 20 }),
      (e) => e instanceof LoaderTimeoutError && e.code === 'E_LOADER_TIMEOUT',
    )
    g.open()
    await until(async () => (await cache.get('k')) === 'late', 'the load landed after all')
    await cache.close()
  })

  test(`${name}: negative caching`, async () => {
    const cache = new Cache({ namespace: unique('neg'), opTimeout: 5000, ...cfg })
    let calls = 0
    const nothing = async () => {
      calls++
      return null
    }
    assert.equal(await cache.getOrSet({ key: 't', factory: () => new NoCache('tmp') }), 'tmp')
    assert.equal(await cache.get('t'), undefined, 'NoCache: handed out, never stored')
    assert.equal(await cache.getOrSet({ key: 'n', factory: nothing, noneTtl: 0 }), null)
    assert.equal(await cache.getOrSet({ key: 'n', factory: nothing, noneTtl: 0 }), null)
    assert.equal(calls, 2, 'noneTtl 0: null is not cached')
    assert.equal(await cache.getOrSet({ key: 'm', factory: nothing }), null)
    assert.equal(await cache.getOrSet({ key: 'm', factory: nothing }), null)
    assert.equal(calls, 3, 'by default null is cached like any value')
    assert.equal(cache.stats().not_cached, 3)
    await cache.close()
  })

  test(`${name}: warm loads what needs it, in one loadMany call`, async () => {
    const cache = new Cache({ namespace: unique('warm'), opTimeout: 5000, ...cfg })
    await cache.set('have', 'kept')
    const batches = []
    const loadMany = async (keys) => {
      batches.push([...keys].sort())
      return Object.fromEntries(keys.filter((k) => k !== 'gone').map((k) => [k, `v-${k}`]))
    }
    assert.equal(await cache.warm(['have', 'a', 'b', 'gone'], { loadMany, ttl: '1m' }), 2)
    assert.deepEqual(batches, [['a', 'b', 'gone']])
    assert.equal(await cache.get('a'), 'v-a')
    assert.equal(await cache.get('have'), 'kept')
    assert.equal(await cache.warm(['have', 'a', 'b'], { loadMany }), 0, 'all fresh')
    assert.equal(await cache.warm(['a'], { factory: (k) => k.toUpperCase(), force: true }), 1)
    assert.equal(await cache.get('a'), 'A')
    assert.equal(cache.stats().warmed, 3)
    await assert.rejects(cache.warm(['x'], {}), InvalidValueError)
    await cache.close()
  })
}

test('constructor policy is every call default; bad policies are typed errors', async () => {
  const cache = new Cache({ namespace: unique('policy'), policy: { failSafe: true, grace: '1m' } })
  await makeStale(cache, 'k', 'old')
  assert.equal(
    await cache.getOrSet({
      key: 'k',
      factory: () => {
        throw new Error('down')
      },
    }),
    'old',
  )
  assert.throws(() => new Cache({ policy: { onWaitTimeout: 'retry' } }), InvalidValueError)
  await assert.rejects(cache.getOrSet({ key: 'x', factory: () => 1, hardTimeout: -1 }), InvalidValueError)
  await assert.rejects(cache.getOrSet({ key: 'x', factory: () => 1, refreshAhead: 2 }), (e) => e.code === 'E_INVALID_VALUE')
  await cache.close()
})

for (const [name, cfg] of Object.entries(CONFIGS)) {
  test(`${name}: tags invalidate entries set and loaded with them`, async () => {
    const ns = unique('tags')
    const cache = new Cache({ namespace: ns, opTimeout: 5000, ...cfg })
    await cache.set('p1', 'one', '1m', { tags: ['product:1'], grace: '1m' })
    await cache.set('p2', 'two', '1m', { tags: ['product:2'] })
    let calls = 0
    const factory = async () => {
      calls++
      return 'loaded'
    }
    assert.equal(await cache.getOrSet({ key: 'g', factory, ttl: '1m', tags: ['product:1'] }), 'loaded')
    await cache.invalidateTags(['product:1'])
    assert.equal(await cache.get('p1'), undefined)
    assert.equal(await cache.get('p2'), 'two')
    assert.equal(await cache.getOrSet({ key: 'g', factory, ttl: '1m', tags: ['product:1'] }), 'loaded')
    assert.equal(calls, 2, 'the tagged entry was reloaded')
    assert.equal(cache.stats().tag_invalidations, 1)
    await assert.rejects(cache.invalidateTags('nope'), InvalidValueError)
    await assert.rejects(cache.invalidateTags(['']), (e) => e.code === 'E_INVALID_VALUE')
    await cache.close()
  })
}

test('noneTtl: null (or Infinity) caches a null result forever', async () => {
  const cache = new Cache({ namespace: unique('nonettl') })
  let calls = 0
  const factory = async () => {
    calls++
    return null
  }
  for (const noneTtl of [null, Infinity]) {
    assert.equal(await cache.getOrSet({ key: `n-${noneTtl}`, factory, ttl: 1, noneTtl }), null)
    assert.equal(await cache.getOrSet({ key: `n-${noneTtl}`, factory, ttl: 1, noneTtl }), null)
  }
  assert.equal(calls, 2, 'one factory call per key')
  await cache.close()
})
