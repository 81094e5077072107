'use strict'
// cache.fragment: a rendered string through the read-through, on every
// configuration (L1 only, Redis, Cluster): one render per key while the
// other callers wait, tags, what the render reads as dependencies, and the
// core's injective fragment keys.

const test = require('node:test')
const assert = require('node:assert/strict')
const { Cache, InvalidValueError } = require('../../node/index.js')
const { fragmentKey } = require('../../node/binding.js')
const { CONFIGS, unique } = require('./helpers.js')

for (const [name, config] of Object.entries(CONFIGS)) {
  test(`${name}: rendered once per key while the others wait, then served, tagged and dependent`, async () => {
    const cache = new Cache({ namespace: unique(`frag-${name}`), opTimeout: '5s', ...config })
    let renders = 0
    let release
    const gate = new Promise((resolve) => (release = resolve))
    const render = async () => {
      renders += 1
      await gate
      return `<p>${renders}</p>`
    }
    const all = Array.from({ length: 8 }, () => cache.fragment({ name: 'side', varyOn: [7], render, ttl: '1m', tags: ['catalog'] }))
    release()
    assert.deepEqual(await Promise.all(all), Array(8).fill('<p>1</p>'))
    assert.equal(renders, 1)
    assert.equal(await cache.fragment({ name: 'side', varyOn: [7], render, ttl: '1m' }), '<p>1</p>')
    assert.equal(await cache.fragment({ name: 'side', varyOn: [8], render, ttl: '1m' }), '<p>2</p>')
    await cache.invalidateTags(['catalog'])
    assert.equal(await cache.fragment({ name: 'side', varyOn: [7], render, ttl: '1m' }), '<p>3</p>')

    // What the render reads through the cache is a dependency of it.
    await cache.set('price', 10, '1m')
    const box = () => cache.fragment({ name: 'box', ttl: '1m', render: async () => `${await cache.get('price')}/${++renders}` })
    assert.equal(await box(), '10/4')
    assert.equal(await box(), '10/4')
    await cache.set('price', 12, '1m')
    assert.equal(await box(), '12/5')
    await cache.close()
  })
}

test('fragment keys are injective; bad arguments are typed errors', async () => {
  assert.notEqual(fragmentKey('a', ['b:c']), fragmentKey('a', ['b', 'c']))
  assert.notEqual(fragmentKey('a:b', ['c']), fragmentKey('a', ['b:c']))
  const cache = new Cache({ namespace: unique('frag-args') })
  await assert.rejects(cache.fragment({ name: '', render: () => 'x' }), InvalidValueError)
  await assert.rejects(cache.fragment({ name: 'n' }), InvalidValueError)
  await assert.rejects(cache.fragment({ name: 'n', render: () => 'x', varyOn: 'x' }), InvalidValueError)
  await assert.rejects(cache.fragment({ name: 'n', render: () => 'x', varyOn: [{ id: 1 }] }), InvalidValueError)
  await cache.close()
})
