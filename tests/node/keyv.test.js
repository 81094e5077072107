'use strict'
// The Keyv adapter against Keyv's own published adapter test suite
// (@keyv/test-suite: API, values, namespaces), on L1-only, Redis and
// Cluster; and cache-manager 7 using it through Keyv.
const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { KeyvStratacache } = require('../../node/keyv.js')
const { CONFIGS, unique } = require('./helpers.js')

const suiteDir = path.join(__dirname, 'keyv-suite', 'node_modules')
const { keyvApiTests, keyvValueTests, keyvNamespaceTest: keyvNamespaceTests, keyvIteratorTests } = require(path.join(suiteDir, '@keyv/test-suite'))
const { Keyv } = require(path.join(suiteDir, 'keyv'))

// The suite is written against vitest's API; this maps the part it uses
// (it/beforeEach/afterEach, expect(...).toBe/toEqual/..., expect.assertions)
// onto node:test and node:assert.
function vitestShim(prefix) {
  const before = []
  const after = []
  function expectFor(counter) {
    const make = (actual, negate) => {
      const check = (ok, msg) => {
        counter.n++
        assert.ok(negate ? !ok : ok, msg)
      }
      const deepEq = (a, b) => {
        try {
          assert.deepEqual(a, b)
          return true
        } catch {
          return false
        }
      }
      const m = {
        toBe: (e) => check(Object.is(actual, e), `expected ${String(actual)} ${negate ? 'not ' : ''}to be ${String(e)}`),
        toEqual: (e) => check(deepEq(actual, e), `expected ${JSON.stringify(actual)} ${negate ? 'not ' : ''}to equal ${JSON.stringify(e)}`),
        toBeTruthy: () => check(Boolean(actual), `expected ${String(actual)} ${negate ? 'not ' : ''}to be truthy`),
        toBeUndefined: () => check(actual === undefined, `expected ${String(actual)} ${negate ? 'not ' : ''}to be undefined`),
        toBeDefined: () => check(actual !== undefined, `expected a value ${negate ? 'not ' : ''}to be defined`),
        toBeFalsy: () => check(!actual, `expected ${String(actual)} ${negate ? 'not ' : ''}to be falsy`),
        toBeNull: () => check(actual === null, `expected ${String(actual)} ${negate ? 'not ' : ''}to be null`),
      }
      return m
    }
    const expect = (actual) => Object.assign(make(actual, false), { not: make(actual, true) })
    expect.assertions = (n) => {
      counter.expected = n
    }
    return expect
  }
  return {
    beforeEach: (fn) => before.push(fn),
    afterEach: (fn) => after.push(fn),
    it: (name, fn) =>
      test(`${prefix}: ${name}`, async () => {
        for (const h of before) await h()
        const counter = { n: 0, expected: undefined }
        try {
          await fn({ expect: expectFor(counter) })
        } finally {
          for (const h of after) await h()
        }
        if (counter.expected !== undefined) assert.equal(counter.n, counter.expected, 'expect.assertions')
      }),
  }
}

for (const [name, cfg] of Object.entries(CONFIGS)) {
  const base = unique(`keyv-${name}`)
  const store = () => new KeyvStratacache({ namespace: base, opTimeout: 5000, ...cfg })
  keyvApiTests(vitestShim(`keyv suite (${name}) api`), Keyv, store)
  keyvValueTests(vitestShim(`keyv suite (${name}) values`), Keyv, store)
  keyvNamespaceTests(vitestShim(`keyv suite (${name}) namespaces`), Keyv, store)
  keyvIteratorTests(vitestShim(`keyv suite (${name}) iterator`), Keyv, store)

  test(`keyv iterator (${name}): keys stored under their hash come back, values unchanged`, async () => {
    const keyv = new Keyv({ store: new KeyvStratacache({ namespace: unique(`keyv-it-${name}`), opTimeout: 5000, ...cfg }), namespace: 'it' })
    const long = 'k'.repeat(300)
    const want = new Map([
      [long, 'long'],
      ['{braced}', { a: [1, 2] }],
      ['#hash', 'h'],
      ['plain', ['an', 'array']],
    ])
    for (const [k, v] of want) await keyv.set(k, v)
    assert.deepEqual(await keyv.get(long), 'long')
    assert.deepEqual(await keyv.get('{braced}'), { a: [1, 2] })
    assert.deepEqual(await keyv.get('plain'), ['an', 'array'])
    const seen = new Map()
    for await (const [k, v] of keyv.iterator()) seen.set(k, v)
    assert.deepEqual(seen, want)
    await keyv.delete('{braced}')
    const after = []
    for await (const [k] of keyv.iterator()) after.push(k)
    assert.deepEqual(after.sort(), ['#hash', long, 'plain'].sort())
    await keyv.disconnect()
  })
}

test('clear() of one Keyv namespace leaves the others alone, on Redis', async () => {
  const { REDIS_URL } = require('./helpers.js')
  const base = unique('keyv-ns')
  const a = new Keyv({ store: new KeyvStratacache({ redis: REDIS_URL, namespace: base }), namespace: 'a' })
  const b = new Keyv({ store: new KeyvStratacache({ redis: REDIS_URL, namespace: base }), namespace: 'b' })
  await a.set('k', 'in a')
  await b.set('k', 'in b')
  await a.clear()
  assert.equal(await a.get('k'), undefined)
  assert.equal(await b.get('k'), 'in b')
})

test('cache-manager 7 uses the store through Keyv, with its own TTLs', async () => {
  const { createCache } = require(path.join(suiteDir, 'cache-manager'))
  const { REDIS_URL } = require('./helpers.js')
  const cache = createCache({ stores: [new Keyv({ store: new KeyvStratacache({ redis: REDIS_URL, namespace: unique('cm') }) })] })
  await cache.set('user:1', { name: 'Ada' }, 60_000)
  assert.deepEqual(await cache.get('user:1'), { name: 'Ada' })
  let calls = 0
  const wrapped = await Promise.all(
    Array.from({ length: 5 }, () => cache.wrap('w', async () => { calls++; return 42 }, 60_000)),
  )
  assert.deepEqual(wrapped, [42, 42, 42, 42, 42])
  assert.equal(calls, 1, 'cache-manager coalesces the five wraps into one call')
  await cache.del('user:1')
  assert.equal(await cache.get('user:1'), undefined)
  await cache.disconnect()
})
