'use strict'
// `stratacache/testing`: helpers for testing code that uses stratacache,
// for any runner (node:test, Jest, Vitest): an isolated cache, a switch
// that makes Redis unreachable for a block, a loader spy, counters since a
// point. The outage itself is the core's (`Cache::simulate_outage`).

const crypto = require('node:crypto')
const { Cache } = require('./index.js')
const { kNative } = require('./internal.js')

/** A namespace no other test uses. */
function uniqueNamespace(prefix = 'test') {
  return `${prefix}-${crypto.randomBytes(8).toString('hex')}`
}

/**
 * A cache in a namespace of its own: on `options.redis`, or in-process.
 * @param {import('./index').CacheOptions} [options]
 */
function isolatedCache(options = {}) {
  return new Cache({ ...options, namespace: options.namespace || uniqueNamespace() })
}

/**
 * Run `fn` with every Redis command of `caches` failing as if Redis were
 * unreachable (and L1 not trusted), as in a real outage; Redis is back
 * when `fn` settles.
 * @template T
 * @param {Cache | Cache[]} caches
 * @param {() => T | Promise<T>} fn
 * @returns {Promise<T>}
 */
async function redisDown(caches, fn) {
  const natives = (Array.isArray(caches) ? caches : [caches]).map((c) => c[kNative]())
  for (const n of natives) n.simulateOutage(true)
  try {
    return await fn()
  } finally {
    for (const n of natives) n.simulateOutage(false)
  }
}

/**
 * Counters of `cache` from now on: `seen.get('l1_hits')`, `seen.all()`
 * (the counters that moved).
 * @param {Cache} cache
 */
function counting(cache) {
  const start = cache.stats()
  return {
    /** @param {string} name */
    get(name) {
      const now = cache.stats()
      if (!(name in now)) throw new RangeError(`no counter ${name}`)
      return now[name] - (start[name] || 0)
    },
    all() {
      const now = cache.stats()
      return Object.fromEntries(Object.entries(now).filter(([k, v]) => v !== (start[k] || 0)).map(([k, v]) => [k, v - (start[k] || 0)]))
    },
  }
}

/**
 * Wrap a factory and count its calls: `spy.calls`, `spy.reset()`.
 * @template T
 * @param {(...args: any[]) => T} fn
 */
function spy(fn) {
  /** @type {((...args: any[]) => T) & { calls: number, reset: () => void }} */
  const wrapped = Object.assign((/** @type {any[]} */ ...args) => {
    wrapped.calls++
    return fn(...args)
  }, { calls: 0, reset: () => (wrapped.calls = 0) })
  return wrapped
}

module.exports = { uniqueNamespace, isolatedCache, redisDown, counting, spy }
