'use strict'
// Running a factory for a lease the core handed out (getOrSet, warm):
// report what it did to the core, which settles the lease (noneTtl,
// NoCache, fail-safe), and race the core's deadlines. Values cross as the
// serializer encodes them; errors as the binding maps them.

const { fromNative, InvalidValueError } = require('./errors.js')
const { encode, decode } = require('./values.js')
const { tracked } = require('./deps.js')
const { parseTtl } = require('./policy.js')
const { note, STALE } = require('./served.js')

// Errors thrown by factories, kept briefly so every caller coalesced onto a
// failed load is rejected with the very same error object.
const loaderErrors = new Map()
let nextErrorId = 1
function registerLoaderError(err) {
  const id = nextErrorId
  nextErrorId = nextErrorId >= 0x7fffffff ? 1 : nextErrorId + 1
  loaderErrors.set(id, err)
  setTimeout(() => loaderErrors.delete(id), 60_000).unref()
  return id
}

/** A native error as a stratacache error (a factory's own error when it is one). */
function native(err) {
  return fromNative(err, loaderErrors)
}

/**
 * Return `new NoCache(value)` from a factory to hand `value` to every
 * waiting caller without caching it (negative caching's "don't cache").
 */
class NoCache {
  constructor(value) {
    this.value = value
  }
}

/**
 * Return `new Loaded(value, { ttl, grace, tags })` from a factory to choose
 * the entry's lifetime and tags from what was loaded (adaptive caching): a
 * given `ttl` or `grace` (ms or '5m') replaces the caller's (`ttl: 0`:
 * hand the value out, do not store it; `null` or `Infinity`: never
 * expires; left out: the caller's); `tags` are added to the caller's.
 */
class Loaded {
  /**
   * @param {unknown} value
   * @param {{ ttl?: number | string, grace?: number | string, tags?: string[] }} [options]
   */
  constructor(value, { ttl, grace, tags } = {}) {
    if (typeof tags === 'string') throw new TypeError('Loaded: tags is an array of tag names, not one string')
    this.value = value
    const g = parseTtl(grace, 'grace')
    if (g === Infinity) throw new InvalidValueError('Loaded: grace must be a finite duration')
    this.options = { ttl: parseTtl(ttl), grace: g, tags }
  }
}

/** Abandon `lease` with `e` unless it is settled already. */
function abandonQuietly(lease, e) {
  try {
    lease.abandon(registerLoaderError(e), message(e))
  } catch {
    // already settled
  }
}

/** A factory's value without its `Loaded` / `NoCache` wrapper. */
function plain(v) {
  return v instanceof Loaded || v instanceof NoCache ? v.value : v
}

// What a factory did, for the core to settle (NativeLease#settle).
const VALUE = 0
const NOTHING = 1
const UNCACHED = 2

const TIMEOUT = Symbol('timeout')
const kStale = Symbol('stale')

/** `promise`, or TIMEOUT after `ms` (the promise keeps running). */
function within(promise, ms) {
  let timer
  return Promise.race([
    promise,
    new Promise((resolve) => {
      timer = setTimeout(resolve, ms, TIMEOUT)
    }),
  ]).finally(() => clearTimeout(timer))
}

function message(e) {
  return String((e && e.message) || e)
}

/**
 * Run the factory and report what it did to the core, which settles the
 * lease: resolves the value (or `{[kStale]: nativeValue}` when fail-safe
 * served the stale value after the factory failed), or rejects with the
 * factory's error.
 */
async function settle(lease, factory, write, serializer) {
  let value
  let deps
  try {
    if (lease.tracksDependencies) {
      let run
      ;[deps, run] = tracked(factory)
      value = await run
    } else {
      value = await factory()
    }
  } catch (e) {
    let stale
    try {
      stale = await lease.fail(registerLoaderError(e), message(e))
    } catch (err) {
      throw native(err)
    }
    if (stale === null) throw e
    return { [kStale]: stale }
  }
  const uncached = value instanceof NoCache
  const adapt = value instanceof Loaded ? value.options : undefined
  const out = uncached || adapt ? value.value : value
  let data
  let format
  try {
    ;[data, format] = encode(serializer, out)
  } catch (e) {
    lease.abandon(registerLoaderError(e), message(e))
    throw e
  }
  const kind = uncached ? UNCACHED : out == null ? NOTHING : VALUE
  try {
    await lease.settle(kind, data, format, write.ttl, write.grace, write.tags, deps, adapt)
  } catch (e) {
    // Refused before the core took the lease (a bad `Loaded` option): the
    // waiters get the same error instead of waiting out their timeout.
    const err = native(e)
    abandonQuietly(lease, err)
    throw err
  }
  return out
}

// What a lead's caller gets: the loaded value, or a stale one (noted on
// `obs`, a tracing wrapper's: served.js).
function answer(r, serializer, obs) {
  if (r !== null && typeof r === 'object' && kStale in r) return staleAnswer(r[kStale], serializer, obs)
  return r
}

function staleAnswer(data, serializer, obs) {
  const v = decode(data, serializer.name)
  note(obs, STALE)
  return v
}

/**
 * Run the factory for `lease`; the value callers get. With deadlines (the
 * core's: a soft timeout with a stale value to serve, a hard timeout),
 * wait for each in turn and ask the core what it means; the factory goes
 * on and still fills the cache (its failure then goes to `onError`).
 */
async function lead(lease, factory, write, serializer, onError, obs = undefined) {
  if (lease.deadline(0) === null) return answer(await settle(lease, factory, write, serializer), serializer, obs)
  const run = settle(lease, factory, write, serializer)
  run.catch(onError)
  for (let i = 0, d = lease.deadline(0); d !== null; d = lease.deadline(++i)) {
    const r = await within(run, d.leftMs)
    if (r !== TIMEOUT) return answer(r, serializer, obs)
    let stale
    try {
      stale = lease.deadlinePassed(d.hard)
    } catch (e) {
      throw native(e)
    }
    if (stale) return staleAnswer(stale, serializer, obs)
  }
  return answer(await run, serializer, obs)
}

/**
 * Fill warm-up `leases` from `factory(key)` or `loadMany(keys)`; resolves
 * how many were stored. With `tags`, the entries carry them; with a
 * `loaded` Map, each stored key's value is put in it.
 */
async function fill(leases, { factory, loadMany, ttl, grace, tags, loaded }, serializer) {
  let values
  let deps
  try {
    const load = async () => {
      if (loadMany) {
        const got = await loadMany(leases.map((l) => l.key))
        return got instanceof Map ? got : new Map(Object.entries(got || {}))
      }
      return new Map(await Promise.all(leases.map(async (l) => /** @type {[string, unknown]} */ ([l.key, await factory(l.key)]))))
    }
    if (leases[0].tracksDependencies) {
      let run
      ;[deps, run] = tracked(load)
      values = await run
    } else {
      values = await load()
    }
  } catch (e) {
    const id = registerLoaderError(e)
    for (const l of leases) l.abandon(id, message(e))
    throw e
  }
  const done = await Promise.all(
    leases.map(async (l) => {
      if (!values.has(l.key)) {
        l.abandon(registerLoaderError(new Error(`loadMany left out ${l.key}`)), 'not loaded')
        return 0
      }
      // A `Loaded` value brings its own options; a `NoCache` one is not stored.
      const v = values.get(l.key)
      const adapt = v instanceof Loaded ? v.options : undefined
      const uncached = v instanceof NoCache
      const out = adapt || uncached ? v.value : v
      const [data, format] = encode(serializer, out)
      if (loaded) loaded.set(l.key, out)
      let stored
      try {
        stored = await l.settle(uncached ? UNCACHED : VALUE, data, format, ttl, grace, tags, deps, adapt)
      } catch (e) {
        const err = native(e)
        abandonQuietly(l, err)
        throw err
      }
      return stored ? 1 : 0
    }),
  )
  return done.reduce((a, b) => a + b, 0)
}

/**
 * getOrSetMany once the core sorted the keys (`found`, from `lookupMany`:
 * kind 0 fresh, 2 a lease, 3 loaded elsewhere): the fresh values, one
 * `loadMany` call for the leases, then each key loaded elsewhere through
 * `readThrough(key, factory)` (a getOrSet: it waits for that load). Keys
 * `loadMany` leaves out are absent from the Map it resolves.
 */
async function loadManyThrough(found, wanted, { loadMany, ttl, tags }, serializer, decodeLocal, readThrough) {
  const out = new Map()
  const leases = []
  const busy = []
  found.forEach((f, i) => {
    if (f.kind === 0) out.set(wanted[i], decodeLocal(f.value))
    else if (f.kind === 2) leases.push(f.lease)
    else busy.push(wanted[i])
  })
  if (leases.length > 0) {
    await fill(leases, { factory: undefined, loadMany, ttl, grace: undefined, tags, loaded: out }, serializer)
  }
  const leftOut = {}
  for (const key of busy) {
    const factory = async () => {
      const got = await loadMany([key])
      const m = got instanceof Map ? got : new Map(Object.entries(got || {}))
      return m.has(key) ? m.get(key) : new NoCache(leftOut)
    }
    const v = await readThrough(key, factory)
    if (v !== leftOut) out.set(key, v)
  }
  return new Map(wanted.filter((k) => out.has(k)).map((k) => [k, out.get(k)]))
}

module.exports = { Loaded, NoCache, plain, native, registerLoaderError, settle, lead, fill, loadManyThrough }
