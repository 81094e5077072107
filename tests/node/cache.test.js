'use strict'
// The Promise API on L1-only, Redis and Redis Cluster.
const test = require('node:test')
const assert = require('node:assert/strict')
const { Cache, KeyNotFoundError, NotAnIntegerError, InvalidKeyError, CacheClosedError, ConfigError,
  InvalidValueError, ValueTooLargeError, RedisError, StrataCacheError, parseTtl } = require('../../node/index.js')
const { CONFIGS, unique, until } = require('./helpers.js')

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** What `c` keeps for `key` ends with an invalidation of `tag` and with a delete. */
async function keptEnds(c, key, value, tag) {
  await c.invalidateTags([tag])
  assert.equal(await c.get(key), undefined, 'a tag invalidation ends it')
  await c.set(key, value)
  for (let i = 0; i < 4; i++) assert.deepEqual(await c.get(key), value) // kept (text from the third read)
  await c.delete(key)
  assert.equal(await c.get(key), undefined, 'a delete ends it')
}

for (const [name, cfg] of Object.entries(CONFIGS)) {
  const make = (extra = {}) => new Cache({ namespace: unique(`node-${name}`), opTimeout: 5000, ...cfg, ...extra })
  const otherView = (cache) => (name === 'l1' ? cache : new Cache({ namespace: cache.namespace, l1: false, opTimeout: 5000, ...cfg }))

  test(`${name}: values round-trip as copies`, async () => {
    const c = make()
    const v = { name: 'Ada', tags: ['x'], n: 1.5, nested: { ok: true } }
    assert.equal(await c.set('user:1', v), true)
    const got = await c.get('user:1')
    assert.deepEqual(got, v)
    got.tags.push('mutated')
    assert.deepEqual(await c.get('user:1'), v, 'mutating a result never changes the cache')
    assert.deepEqual(await otherView(c).get('user:1'), v)
    assert.equal(await c.get('missing'), undefined)
    await c.set('null', null)
    assert.equal(await c.get('null'), null, 'a stored null is a hit')
    await c.close()
  })

  test(`${name}: clone: false shares one frozen value per entry and follows every change`, async () => {
    const c = make({ clone: false })
    const v = { name: 'Ada', tags: ['x'], nested: { ok: true } }
    await c.set('u', v, '1h', { tags: ['team:1'] })
    const a = await c.get('u')
    assert.deepEqual(a, v)
    assert.equal(await c.get('u'), a, 'every hit hands out the one value')
    assert.equal(await c.getOrSet({ key: 'u', factory: () => 'never' }), a)
    assert.ok(Object.isFrozen(a) && Object.isFrozen(a.tags) && Object.isFrozen(a.nested))
    assert.throws(() => a.tags.push('mutated'), TypeError)
    await c.set('u', { name: 'Bob' }, '1h', { tags: ['team:1'] })
    const b = await c.get('u')
    assert.deepEqual(b, { name: 'Bob' }, 'a write replaces what is shared')
    assert.equal(await c.get('u'), b)
    await keptEnds(c, 'u', v, 'team:1')
    // A Buffer cannot be frozen: such values are copied as usual.
    const raw = make({ clone: false, serializer: 'raw' })
    await raw.set('b', Buffer.from('bytes'))
    const x = await raw.get('b')
    assert.deepEqual(x, Buffer.from('bytes'))
    assert.notEqual(await raw.get('b'), x)
    // Nor can a Map's contents (the v8 serializer): copied, nothing frozen.
    const v8 = make({ clone: false, serializer: 'v8' })
    await v8.set('m', { m: new Map([[1, 2]]) })
    const y = await v8.get('m')
    assert.deepEqual(y, { m: new Map([[1, 2]]) })
    assert.ok(y !== (await v8.get('m')) && !Object.isFrozen(y))
    assert.throws(() => make({ clone: 'no' }), InvalidValueError)
    await c.close()
    await raw.close()
    await v8.close()
  })

  test(`${name}: hits served on the JS side are counted and end with every change, from any handle`, async () => {
    const html = 'x'.repeat(2000)
    for (const extra of [{ clone: false }, {}]) {
      const c = make(extra)
      const twin = make({ ...extra, namespace: c.namespace }) // the same L1
      const v = { id: 1, html }
      await c.set('k', v, '1h', { tags: ['t'] })
      for (let i = 0; i < 3; i++) await c.get('k') // kept from here (text: the third read)
      const before = c.stats()
      for (let i = 0; i < 100; i++) assert.deepEqual(await c.get('k'), v)
      const after = c.stats()
      // Each a hit, counted once (with Redis, the writer's own bus
      // message may take the first copy: then one is from Redis).
      assert.equal(after.l1_hits + after.l2_hits - before.l1_hits - before.l2_hits, 100)
      // Each change through the other handle shows on the very next hit.
      await twin.set('k', { id: 2, html }, '1h', { tags: ['t'] })
      assert.deepEqual(await c.get('k'), { id: 2, html }, 'a write')
      for (let i = 0; i < 3; i++) await c.get('k')
      await twin.invalidateTags(['t'])
      assert.equal(await c.get('k'), undefined, 'a tag invalidation')
      await c.set('k', v)
      for (let i = 0; i < 3; i++) await c.get('k')
      await twin.delete('k')
      assert.equal(await c.get('k'), undefined, 'a delete')
      await c.set('k', v)
      for (let i = 0; i < 3; i++) await c.get('k')
      await twin.clear()
      assert.equal(await c.get('k'), undefined, 'a clear')
      // A deadline ends it without a call: hits never read the clock.
      await c.set('brief', v, '150ms')
      for (let i = 0; i < 3; i++) assert.deepEqual(await c.get('brief'), v)
      await sleep(200)
      assert.equal(await c.get('brief'), undefined, 'an expiry')
      await c.close()
      await twin.close()
    }
  })

  test(`${name}: copied hits keep long text once and still hand out fresh copies that follow every change`, async () => {
    const c = make()
    const html = `<p>${'€'.repeat(400)}</p>` // non-ASCII: charged two bytes per UTF-8 byte
    const long = { id: 1, html, items: Array.from({ length: 20 }, (_, i) => ({ i, name: `item ${i}` })) }
    assert.ok(Buffer.byteLength(JSON.stringify(long)) >= 1024)
    await c.set('long', long, '1h', { tags: ['t:1'] })
    const a = await c.get('long')
    const b = await c.get('long')
    assert.deepEqual(a, long)
    assert.deepEqual(b, long)
    assert.notEqual(a, b, 'each hit is a copy of its own')
    assert.ok(!Object.isFrozen(a))
    // Stamped on the first read and charged its slot; kept from the third,
    // charged then as a two-byte string of the text and the slot.
    assert.equal(c.stats().l1_memo_bytes, 64)
    assert.deepEqual(await c.get('long'), long)
    assert.equal(c.stats().l1_memo_bytes, 2 * Buffer.byteLength(JSON.stringify(long)) + 64 + 64) // the text, its slot, the JS record
    a.items.push('mutated')
    a.html = 'changed'
    assert.deepEqual(await c.get('long'), long, 'mutating a copy never changes what later hits get')
    assert.deepEqual(await c.getOrSet({ key: 'long', factory: () => 'never' }), long)
    await c.set('long', { id: 2, html }, '1h', { tags: ['t:1'] })
    // The first read of the new entry stamps it, the third keeps its text.
    for (let i = 0; i < 4; i++) assert.deepEqual(await c.get('long'), { id: 2, html }, 'a write replaces what is kept')
    await keptEnds(c, 'long', long, 't:1')
    // Another handle on the same L1 writes and reads (stamping the new
    // entry): this handle's kept text is not served for it.
    const twin = make({ namespace: c.namespace })
    await c.set('long', long)
    for (let i = 0; i < 4; i++) assert.deepEqual(await c.get('long'), long)
    await twin.set('long', { id: 4, html })
    for (let i = 0; i < 4; i++) assert.deepEqual(await twin.get('long'), { id: 4, html })
    assert.deepEqual(await c.get('long'), { id: 4, html }, 'a stamp this handle did not keep is fetched')
    assert.deepEqual(await c.get('long'), { id: 4, html })
    // A clone: false handle on the same L1 shares a frozen value of the
    // entry the copying handles kept text for, charged what it needs more.
    const shared = make({ namespace: c.namespace, clone: false })
    const frozen = await shared.get('long')
    assert.deepEqual(frozen, { id: 4, html })
    assert.ok(Object.isFrozen(frozen))
    assert.equal(await shared.get('long'), frozen)
    assert.equal(c.stats().l1_memo_bytes, 4 * Buffer.byteLength(JSON.stringify({ id: 4, html })) + 64)
    const copy = await c.get('long')
    assert.deepEqual(copy, { id: 4, html })
    assert.ok(!Object.isFrozen(copy) && copy !== frozen, 'the copying handle still copies')
    await shared.close()
    await twin.close()
    if (name !== 'l1') {
      // Another process's write reaches this L1 through the bus.
      await c.set('long', long)
      assert.deepEqual(await c.get('long'), long)
      const other = otherView(c)
      await other.set('long', { id: 3, html })
      await until('the other write', async () => (await c.get('long'))?.id === 3)
      assert.deepEqual(await c.get('long'), { id: 3, html })
      await other.close()
    }
    // Long UTF-8 text (the raw serializer's strings) is kept the same way.
    const raw = make({ serializer: 'raw' })
    const text = 'ü'.repeat(2000)
    await raw.set('s', text)
    for (let i = 0; i < 4; i++) assert.equal(await raw.get('s'), text)
    assert.equal(raw.stats().l1_memo_bytes, 2 * Buffer.byteLength(text) + 64 + 64)
    await raw.set('s', `${text}!`)
    for (let i = 0; i < 4; i++) assert.equal(await raw.get('s'), `${text}!`)
    // With no memo budget nothing is kept: hits copy the bytes, same values.
    const none = make({ l1: { memoBytes: 0 } })
    await none.set('long', long)
    assert.deepEqual(await none.get('long'), long)
    assert.deepEqual(await none.get('long'), long)
    assert.equal(none.stats().l1_memo_bytes, 0)
    // A budget with room for one text: the second is refused, not kept,
    // and its hits still copy the right value.
    const size = 2 * Buffer.byteLength(JSON.stringify(long)) + 64 + 64
    const tight = make({ l1: { memoBytes: size + 64 } })
    await tight.set('x', long)
    await tight.set('y', { ...long, id: 2 })
    for (let i = 0; i < 4; i++) {
      assert.deepEqual(await tight.get('x'), long)
      assert.deepEqual(await tight.get('y'), { ...long, id: 2 })
    }
    assert.equal(tight.stats().l1_memo_bytes, size + 64, 'x kept, y stamped only')
    await tight.close()
    // Text under 128 bytes is neither stamped nor kept (its record and
    // stamp would be most of what is kept); an API object's is.
    await c.set('short', { id: 1 })
    const before = c.stats().l1_memo_bytes
    for (let i = 0; i < 4; i++) assert.deepEqual(await c.get('short'), { id: 1 })
    assert.equal(c.stats().l1_memo_bytes, before)
    const user = { id: 7, name: 'User 7', email: 'user7@example.com', tags: ['alpha', 'beta', 'gamma'], created: '2026-01-02T03:04:05Z', plan: 'pro', visits: 1234 }
    await c.set('user', user)
    for (let i = 0; i < 4; i++) assert.deepEqual(await c.get('user'), user)
    assert.equal(c.stats().l1_memo_bytes, before + Buffer.byteLength(JSON.stringify(user)) + 64 + 64, 'ASCII: one byte a character')
    assert.throws(() => make({ l1: { memoBytes: -1 } }), InvalidValueError) // as l1.maxBytes: -1
    assert.throws(() => make({ l1: { memoBytes: 64 << 20 } }), ConfigError)
    await c.close()
    await raw.close()
    await none.close()
  })

  test(`${name}: the whole API`, async () => {
    const c = make()
    assert.equal(await c.add('a', 1), true)
    assert.equal(await c.add('a', 2), false)
    assert.deepEqual(await c.setMany([['b', 'B'], ['c', [3]], ['d', 4]]), [])
    assert.deepEqual(await c.getMany(['a', 'b', 'c', 'd', 'zz']), [1, 'B', [3], 4, undefined])
    assert.equal(await c.incr('d'), 5)
    assert.equal(await c.decr('d', 10), -5)
    assert.equal(await c.has('b'), true)
    assert.equal(await c.has('zz'), false)
    assert.equal(await c.touch('b', '1m'), true)
    assert.equal(await c.touch('zz', '1m'), false)
    assert.equal(await c.delete('b'), true)
    assert.equal(await c.delete('b'), false)
    assert.equal(await c.deleteMany(['c', 'd', 'zz']), 2)
    await c.clear()
    assert.equal(await c.get('a'), undefined)
    assert.ok(c.stats().writes >= 4)
    assert.match(c.metrics(), /stratacache_writes_total\{namespace="/)
    assert.equal(c.stats().breaker_open, 0)
    assert.match(c.metrics(), /# TYPE stratacache_breaker_open gauge/)
    await c.close()
  })

  test(`${name}: TTLs as numbers and strings`, async () => {
    const c = make()
    await c.set('short', 'v', 150)
    await c.set('forever', 'v', null)
    await c.set('zero', 'v', 0)
    assert.equal(await c.get('zero'), undefined, 'ttl 0 means do not cache')
    assert.equal(await c.get('short'), 'v')
    await sleep(250) // past the deadline: cannot flake
    assert.equal(await c.get('short'), undefined)
    assert.equal(await otherView(c).get('short'), undefined)
    assert.equal(await c.get('forever'), 'v')
    await c.close()
  })

  test(`${name}: counters are atomic`, async () => {
    const c = make()
    const o = otherView(c)
    await c.set('n', 0)
    await Promise.all(Array.from({ length: 400 }, (_, i) => (i % 2 ? c : o).incr('n')))
    assert.equal(await c.get('n'), 400)
    await assert.rejects(c.incr('nope'), (e) => e instanceof KeyNotFoundError && e.code === 'E_NOT_FOUND')
    await c.set('s', 'text')
    await assert.rejects(c.incr('s'), NotAnIntegerError)
    // Past 2^53 a counter comes back as an exact BigInt.
    await c.set('big', Number.MAX_SAFE_INTEGER - 1)
    assert.deepEqual([await c.incr('big'), await c.incr('big'), await c.incr('big'), await c.decr('big', 2)], [Number.MAX_SAFE_INTEGER, 2n ** 53n, 2n ** 53n + 1n, Number.MAX_SAFE_INTEGER])
    await c.close()
  })

  test(`${name}: 1,000 concurrent getOrSet on a cold key make exactly one factory call`, async () => {
    const c = make()
    let calls = 0
    const results = await Promise.all(
      Array.from({ length: 1000 }, () =>
        c.getOrSet({
          key: 'cold',
          ttl: '1m',
          factory: async () => {
            calls++
            await sleep(50)
            return { v: 1 }
          },
        }),
      ),
    )
    assert.equal(calls, 1)
    assert.equal(results.length, 1000)
    for (const r of results) assert.deepEqual(r, { v: 1 })
    assert.equal(c.stats().leads, 1)
    await c.close()
  })

  test(`${name}: a throwing or rejecting factory rejects exactly the callers of that key`, async () => {
    const c = make()
    const boom = new TypeError('db down')
    const rejecting = await Promise.allSettled(
      Array.from({ length: 50 }, () =>
        c.getOrSet({ key: 'bad', factory: async () => { await sleep(10); throw boom } }),
      ),
    )
    assert.ok(rejecting.every((r) => r.status === 'rejected' && r.reason === boom), 'the very same error')
    const syncThrow = new RangeError('sync')
    await assert.rejects(c.getOrSet({ key: 'bad2', factory: () => { throw syncThrow } }), (e) => e === syncThrow)
    // Other keys are unaffected, and the key recovers.
    assert.equal(await c.getOrSet({ key: 'good', factory: () => 'ok' }), 'ok')
    assert.equal(await c.getOrSet({ key: 'bad', factory: () => 'recovered' }), 'recovered')
    await c.close()
  })

  test(`${name}: stale-while-revalidate serves stale and refreshes once`, async () => {
    const c = make()
    await c.set('k', 'old', 50, { grace: '1m' })
    await sleep(80)
    assert.equal(await c.get('k'), undefined, 'plain get serves fresh values only')
    let refreshes = 0
    let release
    const gate = new Promise((r) => { release = r })
    let refreshed
    const done = new Promise((r) => { refreshed = r })
    // The refresh is held until every caller has been answered, so none of
    // them can see its result: all 20 must be served the stale value.
    const factory = async () => { refreshes++; await gate; refreshed(); return 'new' }
    const stale = await Promise.all(Array.from({ length: 20 }, () => c.getOrSet({ key: 'k', factory, ttl: '1m', allowStale: true })))
    assert.deepEqual(new Set(stale), new Set(['old']))
    release()
    await done
    for (let i = 0; i < 100 && (await c.get('k')) !== 'new'; i++) await sleep(10)
    assert.equal(await c.get('k'), 'new')
    assert.equal(refreshes, 1)
    await c.close()
  })

  test(`${name}: bad input is a typed error, never a crash`, async () => {
    const c = make()
    await assert.rejects(c.get(''), InvalidKeyError)
    await assert.rejects(c.get(42), InvalidKeyError)
    await assert.rejects(c.set('k', undefined), InvalidValueError)
    await assert.rejects(c.set('k', 1, 'soon'), InvalidValueError)
    const small = make({ maxValueBytes: 100 })
    await assert.rejects(small.set('k', 'x'.repeat(1000)), (e) => e instanceof ValueTooLargeError && e.code === 'E_VALUE_TOO_LARGE')
    assert.throws(() => new Cache({ namespace: 'bad:ns' }), (e) => e instanceof ConfigError && e.code === 'E_CONFIG')
    await c.close()
    await assert.rejects(c.get('k'), (e) => e instanceof CacheClosedError && e.code === 'E_CLOSED')
    await assert.rejects(c.getOrSet({ key: 'k', factory: () => 1 }), CacheClosedError)
    await small.close()
  })

  test(`${name}: serializers`, async () => {
    const ns = unique('ser')
    const v8c = new Cache({ namespace: ns, serializer: 'v8', ...cfg })
    const when = new Date(0)
    await v8c.set('m', new Map([['a', when]]))
    assert.deepEqual(await v8c.get('m'), new Map([['a', when]]))
    const json = new Cache({ namespace: ns, ...cfg })
    assert.equal(await json.get('m'), undefined, 'a JSON cache does not decode v8 entries')
    const raw = new Cache({ namespace: ns, serializer: 'raw', ...cfg })
    await raw.set('b', Buffer.from([0, 1, 2]))
    assert.deepEqual(await raw.get('b'), Buffer.from([0, 1, 2]))
    await Promise.all([v8c.close(), json.close(), raw.close()])
  })
}

test('L1 hits of Buffer values in a loop that never yields hold no memory', async () => {
  // Each hit's Buffer is owned by V8 and collected as any object is. An
  // external Buffer's finalizer (napi-rs's `Buffer`) waits for the event
  // loop to turn, which `await` of a settled promise never does: 4,000
  // hits of 256 KB held ~1 GB until the loop turned.
  const c = new Cache({ namespace: unique('hitmem'), serializer: 'raw' })
  const v = Buffer.alloc(256 << 10, 7)
  await c.set('hot', v)
  const before = process.memoryUsage.rss()
  for (let i = 0; i < 4000; i++) {
    const got = await c.get('hot')
    if (got.length !== v.length) assert.fail(`hit ${i} read ${got.length} bytes`)
  }
  const grown = (process.memoryUsage.rss() - before) / 2 ** 20
  assert.ok(grown < 128, `RSS grew ${grown.toFixed(0)} MB over 4,000 hits (1,000 MB were read)`)
  await c.close()
})

test('signing rejects entries written without the key', async () => {
  const { REDIS_URL } = require('./helpers.js')
  const ns = unique('sign')
  const attacker = new Cache({ redis: REDIS_URL, namespace: ns, l1: false, signingKey: 'guess' })
  const reader = new Cache({ redis: REDIS_URL, namespace: ns, l1: false, signingKey: 'ours' })
  await attacker.set('k', { evil: true })
  assert.equal(await reader.get('k'), undefined)
  assert.equal(reader.stats().decode_errors, 1)
})

test('unreachable Redis: fail-open with an error event, or typed rejections', async () => {
  const net = require('node:net')
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)) })
  })
  const opts = { redis: `redis://127.0.0.1:${port}`, namespace: unique('down'), connectTimeout: 200, opTimeout: 300 }
  const open = new Cache(opts)
  const seen = []
  open.on('error', (e) => seen.push(e))
  const t0 = Date.now()
  assert.equal(await open.get('k'), undefined)
  assert.equal(await open.set('k', 1), false)
  assert.equal(await open.getOrSet({ key: 'k', factory: () => 'from db' }), 'from db')
  assert.ok(seen.length >= 2 && seen.every((e) => e instanceof RedisError && e instanceof StrataCacheError))
  assert.ok(Date.now() - t0 < 5000)
  const strict = new Cache({ ...opts, namespace: unique('down-strict'), failOpen: false })
  await assert.rejects(strict.get('k'), (e) => e.code === 'E_L2_UNAVAILABLE' || e.code === 'E_L2_TIMEOUT')
})

test('parseTtl', () => {
  assert.equal(parseTtl('5m'), 300000)
  assert.equal(parseTtl('1.5s'), 1500)
  assert.equal(parseTtl('250ms'), 250)
  assert.equal(parseTtl(42), 42)
  assert.equal(parseTtl(null), Infinity)
  assert.equal(parseTtl(undefined), undefined)
  assert.throws(() => parseTtl('soon'), InvalidValueError)
})

test('handles on the same location and namespace share one L1', async () => {
  const ns = unique('share')
  const a = new Cache({ namespace: ns })
  const b = new Cache({ namespace: ns })
  await a.set('k', 'v')
  assert.equal(await b.get('k'), 'v')
})

test('a kept hit ends with a background refresh and with a write from another thread', async () => {
  const ns = unique('kept-ends')
  const c = new Cache({ namespace: ns, clone: false })
  const truth = new Cache({ namespace: ns }) // the same L1; copies text this short, asking L1 every hit
  await c.set('hot', { v: 1 }, '1m')
  for (let i = 0; i < 3; i++) assert.deepEqual(await c.get('hot'), { v: 1 }) // held
  // A refresh stores over the fresh copy (this process ignores its own
  // bus messages): the held value ends with it.
  let reloaded
  const done = new Promise((r) => { reloaded = r })
  const factory = async () => { reloaded(); return { v: 2 } }
  assert.deepEqual(await c.getOrSet({ key: 'hot', factory, ttl: '1m', refreshAhead: 1 }), { v: 1 })
  await done
  await until('the refresh is stored', async () => (await truth.get('hot'))?.v === 2)
  // The refresh's store is visible before, under the key's stripe lock,
  // it moves the word: an `add` of the live key (refused, moving nothing)
  // takes that lock, so it returns once the store is done.
  assert.equal(await truth.add('hot', 'never', '1m'), false)
  assert.deepEqual(await c.get('hot'), { v: 2 }, 'the very next hit')
  // A write from a worker thread (its own handle on the same L1).
  for (let i = 0; i < 3; i++) await c.get('hot')
  const { Worker } = require('node:worker_threads')
  const w = new Worker(
    `const { Cache } = require(${JSON.stringify(require.resolve('../../node/index.js'))})
     const { parentPort, workerData } = require('node:worker_threads')
     const c = new Cache({ namespace: workerData })
     c.set('hot', { v: 3 }, '1m').then(() => parentPort.postMessage('written'))`,
    { eval: true, workerData: ns },
  )
  const [msg] = await require('node:events').once(w, 'message')
  assert.equal(msg, 'written')
  assert.deepEqual(await c.get('hot'), { v: 3 }, 'the very next hit after the other thread wrote')
  await w.terminate()
  await c.close()
  await truth.close()
})

test('kept hits follow a seeded walk of writes, deletes, touches, invalidations and clears', async () => {
  // Another handle on the same L1 changes five keys at random; after
  // every step each kept handle answers what the model says, as does
  // `has` (which asks L1 on every call).
  const ns = unique('kept-walk')
  const shared = new Cache({ namespace: ns, clone: false })
  const copied = new Cache({ namespace: ns })
  const writer = new Cache({ namespace: ns })
  let seed = 42
  const rand = (n) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    return Math.floor((seed / 4294967296) * n)
  }
  const keys = ['a', 'b', 'c', 'd', 'e']
  const pad = 'x'.repeat(140) // long enough for the copying handle to keep
  /** key -> { value, tag } */
  const model = new Map()
  const counts = { present: 0, absent: 0 }
  for (let step = 0; step < 3000; step++) {
    const key = keys[rand(keys.length)]
    const op = rand(12)
    if (op === 0) {
      await writer.delete(key)
      model.delete(key)
    } else if (op === 1) {
      const tag = `t${rand(3)}`
      await writer.invalidateTags([tag])
      for (const [k, m] of model) if (m.tag === tag) model.delete(k)
    } else if (op === 2 && rand(8) === 0) {
      await writer.clear()
      model.clear()
    } else if (op === 3 || op === 4) {
      const m = { value: { step, pad }, tag: `t${rand(3)}` }
      await writer.set(key, m.value, '1h', { tags: [m.tag] })
      model.set(key, m)
    } else if (op === 5) {
      await writer.touch(key, '1h')
    }
    const want = model.get(key)?.value
    assert.deepEqual(await shared.get(key), want, `step ${step}: shared hit of ${key}`)
    assert.deepEqual(await copied.get(key), want, `step ${step}: copied hit of ${key}`)
    assert.equal(await copied.has(key), want !== undefined, `step ${step}: has ${key}`)
    counts[want === undefined ? 'absent' : 'present']++
  }
  // The walk went through both states many times.
  assert.ok(counts.present > 1000 && counts.absent > 300, JSON.stringify(counts))
  for (const c of [shared, copied, writer]) await c.close()
})

test('early refresh: callers get the fresh value, one background reload', async () => {
  const c = new Cache({ namespace: unique('early') })
  await c.set('hot', 'v1', '1m')
  let calls = 0
  let release
  const gate = new Promise((r) => { release = r })
  let reloaded
  const done = new Promise((r) => { reloaded = r })
  // The reload is held until all callers were answered: none can see v2.
  const factory = async () => { calls++; await gate; reloaded(); return 'v2' }
  const got = await Promise.all(Array.from({ length: 20 }, () => c.getOrSet({ key: 'hot', factory, ttl: '1m', refreshAhead: 1 })))
  assert.deepEqual(new Set(got), new Set(['v1']))
  release()
  await done
  for (let i = 0; i < 100 && (await c.get('hot')) !== 'v2'; i++) await sleep(10)
  assert.equal(await c.get('hot'), 'v2')
  assert.equal(calls, 1, 'one background reload for 20 callers')
  assert.equal(c.stats().early_refreshes, 1)
  await assert.rejects(c.getOrSet({ key: 'hot', factory, refreshAhead: 2 }), InvalidValueError)
  // Bad tags are rejected on a hit as on a miss.
  for (const tags of ['t', [''], ['\0t'], ['x'.repeat(256)], [1]]) {
    await assert.rejects(c.getOrSet({ key: 'hot', factory, tags }), InvalidValueError, JSON.stringify(tags))
    await assert.rejects(c.getOrSet({ key: `cold-${Math.random()}`, factory, tags }), InvalidValueError, JSON.stringify(tags))
  }
  assert.throws(() => new Cache({ namespace: unique('j'), ttlJitter: 2 }), ConfigError)
  await c.close()
})

test('unknown options are refused with E_CONFIG naming the nearest (Cache and HTTP caching)', () => {
  const { cached } = require('../../node/express.js')
  assert.throws(() => new Cache({ opTimout: 5 }), (e) => e.code === 'E_CONFIG' && /"opTimout" \(did you mean opTimeout\?\)/.test(e.message))
  const cache = new Cache()
  try {
    assert.throws(() => cached({ cache, tll: 5 }), (e) => e.code === 'E_CONFIG' && /did you mean ttl\?/.test(e.message))
    assert.throws(() => cached({ cache, credentialCookies: ['sid'] }), (e) => e.code === 'E_CONFIG' && /sharedCookies/.test(e.message))
    assert.throws(() => cached({ cache, vary: ['*'] }), (e) => e.code === 'E_CONFIG')
  } finally {
    cache.close()
  }
})
