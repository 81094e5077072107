'use strict'
// Dependencies tracked while a factory runs (the core's `deps`), from
// Node: reads inside getOrSet / warm factories and Express / Fastify
// cached handlers become dependencies of what they build (through
// AsyncLocalStorage); an input change invalidates the output; a load
// whose input changed meanwhile is not stored.

const test = require('node:test')
const assert = require('node:assert/strict')
const express = require('express')
const Fastify = require('fastify')
const { Cache } = require('../../node/index.js')
const { cached } = require('../../node/express.js')
const stratacacheFastify = require('../../node/fastify.js')
const { CONFIGS, unique } = require('./helpers.js')

for (const [name, config] of Object.entries(CONFIGS)) {
  const make = () => new Cache({ namespace: unique(`deps-${name}`), opTimeout: '5s', ...config })

  const CHANGES = {
    tag: (c) => c.invalidateTags(['product:1']),
    set: (c) => c.set('product', { name: 'new' }, '1m', { tags: ['product:1'] }),
    delete: (c) => c.delete('product'),
    'add of a key read as missing': (c) => c.add('absent', 1, '1m'),
  }
  for (const [change, apply] of Object.entries(CHANGES)) {
    test(`${name}: ${change} of an input invalidates the output`, async () => {
      const c = make()
      let calls = 0
      await c.set('product', { name: 'old' }, '1m', { tags: ['product:1'] })
      const factory = async () => {
        calls++
        return { product: (await c.get('product')) ?? null, missing: (await c.get('absent')) ?? null }
      }
      assert.deepEqual(await c.getOrSet({ key: 'page', factory, ttl: '1m' }), { product: { name: 'old' }, missing: null })
      await c.getOrSet({ key: 'page', factory, ttl: '1m' })
      assert.equal(calls, 1)
      await apply(c)
      const page = await c.getOrSet({ key: 'page', factory, ttl: '1m' })
      assert.equal(calls, 2)
      assert.deepEqual(page, {
        // An invalidated tag makes the product itself stale (not served by get).
        product: change === 'delete' || change === 'tag' ? null : { name: change === 'set' ? 'new' : 'old' },
        missing: change.startsWith('add') ? 1 : null,
      })
      c.close()
    })
  }

  test(`${name}: has() inside a factory is a dependency`, async () => {
    const c = make()
    let calls = 0
    const factory = async () => {
      calls++
      return await c.has('flag')
    }
    assert.equal(await c.getOrSet({ key: 'page', factory, ttl: '1m' }), false)
    await c.set('flag', 1, '1m')
    assert.equal(await c.getOrSet({ key: 'page', factory, ttl: '1m' }), true)
    assert.equal(calls, 2)
    c.close()
  })

  test(`${name}: nesting is transitive, dependsOn names tags, getMany and promises started inside count`, async () => {
    const c = make()
    const calls = { page: 0, section: 0 }
    await c.set('product', 'p1', '1m', { tags: ['product:1'] })
    await c.set('other', 'o1', '1m')
    const section = async () => {
      calls.section++
      await c.dependsOn('prices')
      const [p, many] = await Promise.all([c.get('product'), c.getMany(['other'])])
      return `section(${p},${many[0]})`
    }
    const page = async () => {
      calls.page++
      return `page(${await c.getOrSet({ key: 'section', factory: section, ttl: '1m' })})`
    }
    const get = () => c.getOrSet({ key: 'page', factory: page, ttl: '1m' })
    assert.equal(await get(), 'page(section(p1,o1))')
    await c.invalidateTags(['prices'])
    assert.equal(await get(), 'page(section(p1,o1))')
    assert.deepEqual(calls, { page: 2, section: 2 })
    await c.set('other', 'o2', '1m')
    assert.equal(await get(), 'page(section(p1,o2))')
    assert.deepEqual(calls, { page: 3, section: 3 })
    // A stored section read by a new page load still carries its inputs.
    await c.delete('page')
    assert.equal(await get(), 'page(section(p1,o2))')
    assert.deepEqual(calls, { page: 4, section: 3 })
    await c.set('product', 'p2', '1m')
    assert.equal(await get(), 'page(section(p2,o2))')
    assert.deepEqual(calls, { page: 5, section: 4 })
    await c.dependsOn('outside-a-factory') // does nothing
    c.close()
  })

  test(`${name}: a load whose input changes meanwhile is served, not stored; warm tracks loadMany`, async () => {
    const c = make()
    await c.set('product', 'p1', '1m')
    const refused = c.stats().deps_refused
    const factory = async () => {
      const seen = await c.get('product')
      await c.set('product', 'p2', '1m')
      return `built from ${seen}`
    }
    assert.equal(await c.getOrSet({ key: 'page', factory, ttl: '1m' }), 'built from p1')
    assert.equal(c.stats().deps_refused, refused + 1)
    assert.equal(await c.get('page'), undefined)

    await c.set('source', 's1', '1m')
    const n = await c.warm(['x', 'y'], { loadMany: async (keys) => Object.fromEntries(await Promise.all(keys.map(async (k) => [k, `${k}:${await c.get('source')}`]))) })
    assert.equal(n, 2)
    assert.equal(await c.get('x'), 'x:s1')
    await c.set('source', 's2', '1m')
    assert.equal(await c.get('x'), undefined)
    assert.equal(await c.get('y'), undefined)
    c.close()
  })
}

async function checkHttp(port, cache, calls) {
  const get = async () => {
    const r = await fetch(`http://127.0.0.1:${port}/product`)
    return { cache: r.headers.get('x-cache'), tags: r.headers.get('cache-tag'), body: await r.json() }
  }
  const first = await get()
  assert.deepEqual(first.body, { product: 'p1' })
  // The tags of what the handler read go to the edge with the response.
  assert.ok(first.tags.split(',').includes('product:1'), first.tags)
  assert.equal((await get()).cache, 'HIT')
  await cache.invalidateTags(['product:1'])
  const after = await get()
  assert.notEqual(after.cache, 'HIT')
  assert.deepEqual(after.body, { product: null }) // the product itself is stale now
  await cache.set('product', 'p2', '1m')
  assert.deepEqual((await get()).body, { product: 'p2' })
  assert.equal(calls.n, 3)
}

test('express and fastify cached handlers: their reads are dependencies of the response', async () => {
  for (const kind of ['express', 'fastify']) {
    const cache = new Cache({ namespace: unique(`deps-${kind}`), opTimeout: '5s', ...CONFIGS.redis })
    await cache.set('product', 'p1', '1m', { tags: ['product:1'] })
    const calls = { n: 0 }
    const handler = async () => {
      calls.n++
      await new Promise((r) => setImmediate(r)) // reads after a turn of the event loop still count
      return { product: (await cache.get('product')) ?? null }
    }
    let close
    let port
    if (kind === 'express') {
      const app = express()
      app.get('/product', cached({ cache, ttl: '1m', edgeTagHeader: 'Cache-Tag' }), async (req, res) => res.json(await handler()))
      const server = await new Promise((resolve) => {
        const s = app.listen(0, '127.0.0.1', () => resolve(s))
      })
      port = server.address().port
      close = () => new Promise((r) => server.close(r))
    } else {
      const app = Fastify()
      await app.register(stratacacheFastify, { cache })
      app.get('/product', { config: { cache: { ttl: '1m', edgeTagHeader: 'Cache-Tag' } } }, handler)
      await app.listen({ port: 0, host: '127.0.0.1' })
      port = app.server.address().port
      close = () => app.close()
    }
    try {
      await checkHttp(port, cache, calls)
    } finally {
      await close()
      cache.close()
    }
  }
})

test('trackDependencies: false leaves only explicit tags', async () => {
  const c = new Cache({ namespace: unique('deps-off'), trackDependencies: false })
  await c.set('product', 'p1', '1m')
  let calls = 0
  const factory = async () => {
    calls++
    return `page(${await c.get('product')})`
  }
  const get = () => c.getOrSet({ key: 'page', factory, ttl: '1m', tags: ['pages'] })
  assert.equal(await get(), 'page(p1)')
  await c.set('product', 'p2', '1m')
  assert.equal(await get(), 'page(p1)') // not a dependency
  await c.invalidateTags(['pages'])
  assert.equal(await get(), 'page(p2)')
  assert.equal(calls, 2)
  c.close()
})
