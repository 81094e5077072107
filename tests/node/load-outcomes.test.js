'use strict'
// The shared table of load outcomes (tests/vectors/load_outcomes.json), run
// through getOrSet on L1 alone and on Redis: the same table Rust and Python
// run, so a load settles the same way in every language (the core decides).
const { test } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const fs = require('node:fs')
const { Cache, NoCache } = require('../../node/index.js')
const { REDIS_URL, unique } = require('./helpers.js')

const TABLE = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'vectors', 'load_outcomes.json'), 'utf8')).cases
const KEY = 'k'

function options(c) {
  const p = c.policy || {}
  const out = { ttl: 60_000, grace: 60_000 }
  if (p.fail_safe) out.failSafe = true
  if (p.none_ttl_ms !== undefined) out.noneTtl = p.none_ttl_ms
  if (p.soft_timeout_ms !== undefined) out.softTimeout = p.soft_timeout_ms
  if (p.hard_timeout_ms !== undefined) out.hardTimeout = p.hard_timeout_ms
  return out
}

for (const where of ['l1', 'redis']) {
  for (const c of TABLE) {
    test(`${where}: ${c.name}`, async () => {
      const cache = new Cache({ namespace: unique('outcomes'), ...(where === 'redis' ? { redis: REDIS_URL, opTimeout: 5000 } : {}) })
      if (c.prior !== undefined) {
        await cache.set(KEY, c.prior, 60_000, { grace: 60_000, tags: ['prior'] })
        await cache.invalidateTags(['prior'])
      }
      const spec = c.loader
      let release
      const gate = new Promise((resolve) => {
        release = resolve
      })
      let timer
      if (spec.release_ms !== undefined) timer = setTimeout(release, spec.release_ms)
      const factory = async () => {
        if (spec.value !== undefined) return spec.value
        if (spec.nothing) return null
        if (spec.uncached !== undefined) return new NoCache(spec.uncached)
        if (spec.error !== undefined) throw new Error(spec.error)
        await gate
        return spec.slow
      }
      let outcome
      let error
      try {
        outcome = await cache.getOrSet({ key: KEY, factory, ...options(c) })
      } catch (e) {
        error = e
      }
      const want = c.expect
      if (want.timeout) {
        assert.equal(error && error.code, 'E_LOADER_TIMEOUT', String(error))
      } else if (want.error !== undefined) {
        assert.ok(error instanceof Error && error.message === want.error, String(error))
      } else {
        assert.equal(error, undefined)
        assert.deepEqual(outcome, want.answer)
      }
      release()
      clearTimeout(timer)
      assert.deepEqual(await cache.getOrSet({ key: KEY, factory: async () => 'again', ttl: 60_000 }), want.then)
      await cache.close()
    })
  }
}
