'use strict'
// The cache's internal API for the HTTP middleware (http.js drives it for
// express.js and fastify.js): raw entries and leases, through the Cache's
// own reads (`p` carries what of the Cache's private state it needs).
// Not part of the public API.

const { Format, entryBytes } = require('./values.js')
const { nativePolicy } = require('./policy.js')

// The core's lookup kinds (as in http.js).
const FRESH = 0

// Made once per cache and handle (the cache's own, and the bypassing one a
// `disabled()` scope uses), and again once the cache is closed: not per
// request. cache -> [own, bypassing].
const made = new WeakMap()

/**
 * The internal API of `cache` (`off`: its bypassing handle's), made by
 * `parts()` (what of the Cache's private state it needs) when not made
 * yet for this `closed` state.
 */
function httpInternals(cache, off, closed, parts) {
  let both = made.get(cache)
  if (both === undefined) made.set(cache, (both = [null, null]))
  const i = off ? 1 : 0
  const it = both[i]
  if (it !== null && it.closed === closed) return it
  return (both[i] = makeInternals(cache, parts()))
}

function makeInternals(cache, p) {
  const n = p.n
  // `n.getLocal`, bound once (crates/node/src/reader.rs).
  const getLocal = n.localReader()
  return {
    failOpen: p.failOpen,
    /** Handlers run in a collecting scope (`trackDependencies`). */
    tracksDependencies: n.tracksDependencies,
    /** Closed: requests go through uncached (nothing read, stored or invalidated). */
    closed: p.closed,
    emitError(e) {
      if (cache.listenerCount('error') > 0) cache.emit('error', e)
    },
    /** `route.begin` on this cache: an L1 answer (packed Buffer) or the exchange. */
    begin(route, method, path, query, headers) {
      // A closed cache answers nothing from L1; what follows decides
      // (a pass or an unsafe request goes through as before).
      if (p.closed) return route.exchange(method, path, query, headers)
      return route.begin(n, method, path, query, headers, Date.now() / 1000)
    },
    // The HTTP middleware's read-through (no early refresh): a fresh
    // entry from L1 on this thread, else the core's lookup (`tagsOf()`
    // gives its tags: only then are they needed).
    async lookup(key, policy, tagsOf) {
      p.open()
      try {
        const local = getLocal(key)
        if (local) return { kind: FRESH, data: entryBytes(local) }
        const r = await n.lookup(key, nativePolicy(policy, await tagsOf()))
        return { kind: r.kind, data: r.value ? r.value.data : undefined, lease: r.lease }
      } catch (e) {
        throw p.native(e)
      }
    },
    /** Delete `keys` (fleet-wide, fencing loads in flight). */
    async delete(keys) {
      try {
        await n.deleteMany(keys)
      } catch (e) {
        throw p.native(e)
      }
    },
    /** The fresh entry bytes of `key`, or null, without leading a flight (a HEAD). */
    async peek(key) {
      p.open()
      try {
        const local = getLocal(key)
        if (local) return entryBytes(local)
        if (!p.hasL2) return null
        const v = await n.get(key)
        return v ? entryBytes(v[0]) : null
      } catch (e) {
        throw p.native(e)
      }
    },
    /** A forced lease on `key` (refresh over a fresh entry), or null when it is being loaded already. */
    async tryLease(key) {
      try {
        const [lease] = await n.tryLeases([key], true)
        return lease || null
      } catch (e) {
        throw p.native(e)
      }
    },
    async setRaw(key, data, ttlMs, graceMs, tags, deps) {
      try {
        await n.set(key, data, Format.RAW, ttlMs, graceMs, tags, deps)
      } catch (e) {
        throw p.native(e)
      }
    },
    async complete(lease, data, ttlMs, graceMs, tags, deps) {
      try {
        await lease.complete(data, Format.RAW, ttlMs, graceMs, tags, deps)
      } catch (e) {
        throw p.native(e)
      }
    },
    abandon(lease, err) {
      lease.abandon(p.registerLoaderError(err), String((err && err.message) || err))
    },
    /** Fail-safe: the stale entry bytes to serve instead of a failure, or null. */
    async failSafe(lease, err) {
      if (lease.fallback() === null) return null
      try {
        const v = await lease.fail(p.registerLoaderError(err), String((err && err.message) || err))
        return v ? v.data : null
      } catch (e) {
        throw p.native(e)
      }
    },
  }
}

module.exports = { httpInternals }
