'use strict'
// Hostile input through the Node surface, one test each: oversized values,
// oversized and non-string keys, values the serializer cannot encode. Each
// is a typed error with a stable `code`, and nothing is stored. (Bytes in
// Redis written by someone else are decoded by the same core as Python's,
// covered in tests/python/test_hostile.py and crates/core/tests/tiered.rs.)
const test = require('node:test')
const assert = require('node:assert/strict')
const { Cache } = require('../../node')
const { CONFIGS, unique } = require('./helpers')

for (const [name, cfg] of Object.entries(CONFIGS)) {
  test(`${name}: an oversized value is E_VALUE_TOO_LARGE and stores nothing`, async () => {
    const cache = new Cache({ ...cfg, namespace: unique('big'), maxValueBytes: 1000, failOpen: false })
    try {
      await cache.set('k', 'small')
      await assert.rejects(cache.set('k', 'x'.repeat(2000)), { code: 'E_VALUE_TOO_LARGE' })
      assert.equal(await cache.get('k'), 'small')
      let calls = 0
      const factory = async () => { calls++; return Buffer.alloc(2000).toString('hex') }
      await assert.rejects(cache.getOrSet({ key: 'loaded', factory }), { code: 'E_VALUE_TOO_LARGE' })
      await assert.rejects(cache.getOrSet({ key: 'loaded', factory }), { code: 'E_VALUE_TOO_LARGE' })
      assert.equal(calls, 2, 'nothing was cached')
      assert.equal(await cache.get('loaded'), undefined)
    } finally {
      cache.close()
    }
  })

  test(`${name}: long keys work without colliding; non-string and empty keys are E_INVALID_KEY`, async () => {
    const ns = unique('keys')
    const cache = new Cache({ ...cfg, namespace: ns, failOpen: false })
    try {
      const a = 'a'.repeat(1_000_000)
      const b = 'a'.repeat(999_999) + 'b'
      await cache.set(a, 'A')
      await cache.set(b, 'B')
      assert.deepEqual([await cache.get(a), await cache.get(b)], ['A', 'B'])
      // Around the 251 bytes an L1 read takes in one call (reader.rs), with
      // a 2- or 4-byte character where V8's cut at 255 bytes falls short of
      // it (a 4-byte one after 252 bytes: V8 writes 252, the longest cut
      // that still means the key did not fit).
      for (const [n, ch] of [247, 248, 249, 250, 251, 252, 253, 254].map((n) => [n, 'é']).concat(
        [249, 250, 251, 252, 253].map((n) => [n, '\u{1F600}']))) {
        const long = 'k'.repeat(n) + ch
        await cache.set(long + 'x', n)
        await cache.set(long + 'y', -n)
        assert.deepEqual([await cache.get(long + 'x'), await cache.get(long + 'y')], [n, -n], `${n} + ${ch.length} units`)
      }
      if (cfg.redis || cfg.cluster) {
        const fresh = new Cache({ ...cfg, namespace: ns, l1: false, failOpen: false })
        assert.deepEqual([await fresh.get(a), await fresh.get(b)], ['A', 'B'], 'from Redis')
        fresh.close()
      }
      for (const bad of [42, null, undefined, {}, Buffer.from('k'), '']) {
        await assert.rejects(cache.set(bad, 'x'), { code: 'E_INVALID_KEY' }, String(bad))
        await assert.rejects(cache.get(bad), { code: 'E_INVALID_KEY' }, String(bad))
      }
      // Tags: a typed error before anything reaches the binding, a huge
      // sparse array included (the binding would size a vector by it).
      for (const tags of ['t', [1], ['t', undefined], new Array(2 ** 32 - 1), [''], ['\0t']]) {
        await assert.rejects(cache.set('tagged', 'x', 60, { tags }), { code: 'E_INVALID_VALUE' }, String(tags.length))
      }
      assert.equal(await cache.get('tagged'), undefined)
    } finally {
      cache.close()
    }
  })

  test(`${name}: a value the serializer cannot encode is E_INVALID_VALUE and stores nothing`, async () => {
    const cache = new Cache({ ...cfg, namespace: unique('unser'), failOpen: false })
    try {
      await cache.set('k', 'old')
      const circular = {}
      circular.self = circular
      for (const bad of [2n ** 70n, circular, () => 1, Symbol('s')]) {
        await assert.rejects(cache.set('k', bad), { code: 'E_INVALID_VALUE' }, String(typeof bad))
      }
      assert.equal(await cache.get('k'), 'old')
      await assert.rejects(cache.getOrSet({ key: 'loaded', factory: async () => 2n ** 70n }), { code: 'E_INVALID_VALUE' })
      assert.equal(await cache.get('loaded'), undefined)
    } finally {
      cache.close()
    }
  })
}

// The L1 reads `Cache#get` makes are plain native functions bound to their
// cache (crates/node/src/reader.rs), not methods: bad input to them is a
// typed error like any method's, never a crash, and they answer for their
// own cache only.
test('the bound L1 readers and writer: typed errors for bad input, their own cache only', async () => {
  const { NativeCache } = require('../../node/binding.js')
  const { native } = require('../../node/loader.js')
  const ns = unique('reader')
  const cache = new Cache({ namespace: ns })
  const other = new Cache({ namespace: unique('reader-other') })
  const n = new NativeCache({ namespace: ns })
  try {
    await cache.set('k', { a: 1 })
    await other.set('k', { a: 2 })
    const getLocal = n.localReader()
    const [getKept] = n.keptReader(false)
    assert.equal(getLocal('k'), '{"a":1}')
    assert.equal(getLocal('absent'), null)
    assert.equal(getKept('absent'), null)
    for (const read of [getLocal, getKept, n.keptReader(true)[0]]) {
      for (const bad of [42, undefined, null, {}, Symbol('k')]) {
        assert.throws(() => read(bad), (e) => native(e).code === 'E_INVALID_KEY', String(bad))
      }
      assert.throws(() => read(), (e) => native(e).code === 'E_INVALID_KEY')
    }
    // `Cache#set`'s write, bound the same way: answered here on an L1-only
    // cache, typed errors for bad arguments, this cache only.
    const write = n.writer()
    assert.equal(write('k', '{"a":3}', 2, 60_000), undefined)
    assert.equal(getLocal('k'), '{"a":3}')
    assert.equal(write('b', Buffer.from([1, 2]), 0, null, null, ['t']), undefined)
    assert.deepEqual(n.localReader()('b'), [0, Buffer.from([1, 2])])
    assert.throws(() => write(42, '1', 2), (e) => native(e).code === 'E_INVALID_KEY')
    assert.throws(() => write('k', '1', 2, -1, 'x'), /rust type `f64`/) // parseTtl checks it first in Cache#set
    assert.throws(() => write('k', '1', 2, 1000, 0, ['']), (e) => native(e).code === 'E_INVALID_VALUE' && /tag/.test(e.message))
    assert.throws(() => write('k', '1', 256), (e) => native(e).code === 'E_INVALID_VALUE')
    assert.equal(getLocal('k'), '{"a":3}', 'a refused write stores nothing')
    assert.deepEqual(await cache.get('k'), { a: 3 }, 'the same L1 as the Cache on its namespace')
    assert.deepEqual(await other.get('k'), { a: 2 })
  } finally {
    n.close()
    await cache.close()
    await other.close()
  }
})
