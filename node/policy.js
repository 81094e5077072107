'use strict'
// Options of reads and read-throughs as JS takes them (milliseconds or
// strings like '5m'), turned into what the native binding takes. The rules
// themselves (ranges, tag names) are the core's: `validateTags` and the
// native policy's construction apply them.

const { validateTags, fragmentKey } = require('./binding.js')
const { InvalidValueError, InvalidKeyError, fromNative } = require('./errors.js')

const UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/**
 * Milliseconds from a number of ms or a string like '500ms', '5s', '5m',
 * '1h', '1d'. `null`/`Infinity` mean never expire; `undefined` the default.
 */
function parseTtl(ttl, name = 'ttl') {
  if (ttl === undefined) return undefined
  if (ttl === null || ttl === Infinity) return Infinity
  if (typeof ttl === 'number') {
    if (Number.isNaN(ttl)) throw new InvalidValueError(`${name} must not be NaN`)
    return ttl
  }
  if (typeof ttl === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(ttl)
    if (m) return Number(m[1]) * UNITS[m[2] || 'ms']
  }
  throw new InvalidValueError(`${name} must be milliseconds or a string like '5m', got ${String(ttl)}`)
}

function checkKey(key) {
  if (typeof key !== 'string') throw new InvalidKeyError(`keys must be strings, got ${typeof key}`)
  if (key.length === 0) throw new InvalidKeyError('keys must not be empty')
}

const POLICY_KEYS = [
  'allowStale',
  'grace',
  'waitTimeout',
  'onWaitTimeout',
  'earlyRefresh',
  'refreshAhead',
  'failSafe',
  'failSafeThrottle',
  'softTimeout',
  'hardTimeout',
  'noneTtl',
]

/**
 * Check getOrSet's tags by the core's rule before any lookup, so a hit does
 * not accept what a miss rejects.
 */
function checkTags(tags) {
  if (tags === undefined || tags === null) return
  // Every index, holes included (`some` skips them): a sparse array of
  // length 2^32 - 1 would otherwise reach the binding, which sizes its
  // vector by the length.
  if (!Array.isArray(tags)) throw new InvalidValueError('tags must be an array of strings')
  for (let i = 0; i < tags.length; i++) {
    if (typeof tags[i] !== 'string') throw new InvalidValueError('tags must be an array of strings')
  }
  try {
    validateTags(tags)
  } catch (e) {
    throw fromNative(e)
  }
}

/**
 * Validate a policy (the options of getOrSet that are not per value).
 * @returns {Record<string, any>}
 */
function checkPolicy(p) {
  /** @type {Record<string, any>} */
  const out = {}
  for (const k of POLICY_KEYS) if (p[k] !== undefined) out[k] = p[k]
  if (out.onWaitTimeout !== undefined && out.onWaitTimeout !== 'load' && out.onWaitTimeout !== 'fail') {
    throw new InvalidValueError("onWaitTimeout must be 'load' or 'fail'")
  }
  for (const k of ['grace', 'waitTimeout', 'failSafeThrottle', 'softTimeout', 'hardTimeout', 'noneTtl']) {
    if (out[k] !== undefined) {
      const v = parseTtl(out[k], k)
      if (!(v >= 0)) throw new InvalidValueError(`${k} must be >= 0`)
      out[k] = v
    }
  }
  return out
}

function nativePolicy(p, tags) {
  return {
    tags: tags && tags.length ? tags : undefined,
    allowStale: !!p.allowStale,
    waitTimeoutMs: p.waitTimeout,
    waitTimeoutFails: p.onWaitTimeout === 'fail',
    earlyRefresh: p.earlyRefresh,
    refreshAhead: p.refreshAhead,
    failSafe: !!p.failSafe,
    failSafeThrottleMs: p.failSafeThrottle,
    softTimeoutMs: p.softTimeout,
    hardTimeoutMs: p.hardTimeout,
    noneTtlMs: p.noneTtl,
  }
}

/** getOrSetMany's arguments: the keys, each once, in order. */
function checkMany(keys, loadMany, tags) {
  if (!Array.isArray(keys)) throw new InvalidValueError('keys must be an array')
  if (typeof loadMany !== 'function') throw new InvalidValueError('loadMany must be a function')
  const wanted = [...new Set(keys)]
  for (const k of wanted) checkKey(k)
  checkTags(tags)
  return wanted
}

/** cache.fragment's arguments: its key (the core's fragment_key). */
function checkFragment(name, render, varyOn) {
  if (typeof name !== 'string' || name === '') throw new InvalidValueError('fragment name must be a non-empty string')
  if (typeof render !== 'function') throw new InvalidValueError('render must be a function')
  if (!Array.isArray(varyOn)) throw new InvalidValueError('varyOn must be an array')
  // Only values whose string form says what they are: an object would be
  // "[object Object]", one fragment for every user.
  const plain = (v) => ['string', 'number', 'bigint', 'boolean'].includes(typeof v) || v === null
  if (!varyOn.every(plain)) {
    throw new InvalidValueError('varyOn takes strings, numbers, bigints, booleans and null (pass user.id, not user)')
  }
  return fragmentKey(name, varyOn.map(String))
}

module.exports = { parseTtl, checkKey, checkTags, checkPolicy, nativePolicy, checkMany, checkFragment }
