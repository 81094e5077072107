'use strict'
// Blocks of code with caching off (`cache.disabled(fn)`, `disabled(fn)`):
// which caches are off in the current async context. What each call does
// with caching off is the core's rule (`Cache::bypassing`); a cache this
// covers sends its calls to its native handle with caching off.

const { AsyncLocalStorage } = require('node:async_hooks')
const { InvalidValueError } = require('./errors.js')

const storage = new AsyncLocalStorage()

// The caches off, by identity (the core's `Cache::identity`: Redis
// location and namespace, so every handle on the same data is covered);
// null for every cache.
class Off {
  /** @param {Set<string> | null} caches */
  constructor(caches) {
    this.caches = caches
  }

  /** @param {string} identity */
  covers(identity) {
    return this.caches === null || this.caches.has(identity)
  }
}

/** Whether caching is off here for the cache of `identity`. @param {string} identity */
function isOff(identity) {
  const off = storage.getStore()
  return off !== undefined && off.covers(identity)
}

/**
 * Run `fn` with `caches` (null: every cache) off, on top of what an
 * enclosing scope turned off; returns what `fn` returns. Promises and
 * callbacks started inside inherit the scope.
 * @template T
 * @param {string[] | null} caches identities
 * @param {() => T} fn
 * @returns {T}
 */
function turnedOff(caches, fn) {
  if (typeof fn !== 'function') throw new InvalidValueError('disabled() takes the function to run with caching off')
  const outer = storage.getStore()
  const all = caches === null || (outer !== undefined && outer.caches === null)
  const scope = all ? new Off(null) : new Off(new Set([...(outer && outer.caches ? outer.caches : []), ...(caches || [])]))
  return storage.run(scope, fn)
}

/**
 * Run `fn` with caching off for every cache (see `Cache#disabled`);
 * returns what `fn` returns.
 * @template T
 * @param {() => T} fn
 * @returns {T}
 */
function disabled(fn) {
  return turnedOff(null, fn)
}

module.exports = { isOff, turnedOff, disabled }
