'use strict'
// stratacache for Node.js: the public Promise API over the native binding.
// Behaviour (tiers, single-flight, leases, envelopes) lives in the Rust core;
// this file converts values, parses TTLs and maps errors; loader.js runs
// factories.

const { EventEmitter } = require('node:events')
const { NativeCache } = require('./binding.js')
const errors = require('./errors.js')
const { Format, serializers, encode, decode } = require('./values.js')
const { parseTtl, checkKey, checkTags, checkPolicy, nativePolicy, checkMany, checkFragment } = require('./policy.js')
const { Loaded, NoCache, plain, native, registerLoaderError, settle, lead, fill, loadManyThrough } = require('./loader.js')

const { L2_CODES, InvalidValueError, CacheClosedError, ConfigError } =
  errors

const LEAD = 2 // the core's lookup kinds: 0 fresh, 1 stale, 2 lead

// Internal API for the web middleware (express.js, fastify.js): raw entries
// and leases. Not part of the public API.
const { kInternal, kNative } = require('./internal.js')
const { CACHE_OPTIONS, checkOptions, nativeConfig } = require('./options.js')
const { KeptValues, MISS } = require('./kept.js')
const { httpInternals } = require('./httpinternal.js')
const { currentDeps } = require('./deps.js')
const { isOff, turnedOff, disabled } = require('./disabled.js')
const { traceCalls } = require('./channels.js')
const { take, note, L1, LOADED } = require('./served.js')
const { metricsText } = require('./metrics.js')

/**
 * A tiered cache: in-process L1 and, with `redis` or `cluster`, a Redis L2.
 * Handles created with the same Redis location and namespace in one
 * process share one L1.
 */
class Cache extends EventEmitter {
  #n
  // L1's fresh entry of a key, or null: `#n.localReader()`, a plain
  // function (no native method's per-call bookkeeping: see
  // crates/node/src/reader.rs), for `has`.
  #getLocal
  // `#n.writer()` and `#off.writer()`: `set` without dependencies as plain
  // functions (crates/node/src/reader.rs), for `set`.
  #write
  #writeOff
  // `#n.l2Reader()`: `get`'s read from Redis as a plain function
  // (crates/node/src/reader.rs), the entry alone unless a tracing wrapper
  // asks how it was served.
  #readL2
  // The same cache with caching off: what a `disabled()` scope's calls go to.
  #off
  #id
  #serializer
  #failOpen
  #hasL2
  #hasL1
  #closed = false
  #policy
  // What L1 hits keep (kept.js): with `clone: false` the values they
  // share, else long text they decode; null without L1.
  #kept = null
  // An entry as `getKept` shapes it -> its value (empty text: decode's
  // `undefined`, not JSON.parse's SyntaxError).
  #decodeLocal = (v) => (typeof v === 'string' && v !== '' ? JSON.parse(v) : decode(v, this.#serializer.name))

  constructor(options = {}) {
    super()
    const o = options || {}
    checkOptions(o, CACHE_OPTIONS, 'Cache')
    this.#policy = checkPolicy(o.policy || {})
    const serializer = o.serializer === undefined ? 'json' : o.serializer
    this.#serializer = typeof serializer === 'string' ? serializers[serializer] : serializer
    if (!this.#serializer || typeof this.#serializer.encode !== 'function') {
      throw new ConfigError(`unknown serializer ${String(serializer)}; use 'json', 'v8' or 'raw'`)
    }
    this.#failOpen = o.failOpen !== false
    if (o.clone !== undefined && typeof o.clone !== 'boolean') throw new InvalidValueError('clone must be true or false')
    try {
      this.#n = new NativeCache(nativeConfig(o, this.#serializer))
    } catch (e) {
      throw native(e)
    }
    this.#getLocal = this.#n.localReader()
    this.#off = this.#n.bypassing()
    this.#write = this.#n.writer()
    this.#writeOff = this.#off.writer()
    this.#readL2 = this.#n.l2Reader()
    this.#id = this.#n.identity
    this.#hasL2 = this.#n.hasL2
    this.#hasL1 = o.l1 !== false && (o.l1 || {}).enabled !== false
    if (this.#hasL1) this.#kept = new KeptValues(this.#n, o.clone === false, this.#decodeLocal)
  }

  get namespace() {
    return this.#n.namespace
  }

  #open() {
    if (this.#closed) throw new CacheClosedError('the cache is closed')
  }

  // Count the L1 hits served on the JS side (kept.js) that the binding has
  // not counted yet.
  #countHits() {
    if (this.#kept !== null) this.#n.noteL1Hits(this.#kept.takeHits())
  }

  // The native handle a call goes to: the one with caching off inside a
  // `disabled()` scope covering this cache.
  #h() {
    return isOff(this.#id) ? this.#off : this.#n
  }

  /**
   * Run `fn` with caching off for this cache (every handle on its data) and
   * what `fn` starts; returns what `fn` returns. Reads find nothing,
   * getOrSet runs its factory every time, writes store nothing; deletes,
   * invalidations, `clear` and counters work as usual. HTTP responses pass
   * through uncached. The module's `disabled(fn)` turns off every cache.
   * @template T
   * @param {() => T} fn
   * @returns {T}
   */
  disabled(fn) {
    return turnedOff([this.#id], fn)
  }

  // Redis trouble: with failOpen (the default) it becomes `fallback` and an
  // 'error' event; other errors (bad input, loader errors) always throw.
  #l2(err, fallback) {
    const e = native(err)
    if (this.#failOpen && e && L2_CODES.has(e.code)) {
      if (this.listenerCount('error') > 0) this.emit('error', e)
      return fallback
    }
    throw e
  }

  /**
   * The fresh value of `key`, or `undefined`. Inside a factory, the key and
   * the value's tags become dependencies of what it builds.
   */
  get(key) {
    // Not an async function: an L1 hit (the hot path) resolves without a
    // second trip through the microtask machinery. `obs`: a tracing
    // wrapper's, told how the call was served (served.js).
    const obs = take()
    try {
      checkKey(key)
      this.#open()
      if (isOff(this.#id)) return this.#getL2(key, this.#off)
      const deps = currentDeps()
      if (deps !== undefined) return this.#getTracked(key, deps)
      if (this.#kept !== null) {
        const v = this.#kept.get(key)
        if (v !== MISS) note(obs, L1)
        if (v !== MISS || !this.#hasL2) return Promise.resolve(v === MISS ? undefined : v)
      } else if (!this.#hasL2) {
        return Promise.resolve(undefined)
      }
    } catch (e) {
      return Promise.reject(native(e))
    }
    return this.#getL2(key, this.#n, obs)
  }

  // An entry shaped as `getLocal` gives it (JSON text, or `[format,
  // data]`), decoded, then noted on `obs` as served (served.js).
  #decoded(v, obs, served) {
    const out = decode(v, this.#serializer.name)
    note(obs, served)
    return out
  }

  async #getTracked(key, deps) {
    let v
    try {
      v = await this.#h().getTracked(key, deps)
    } catch (e) {
      return this.#l2(e, undefined)
    }
    return decode(v, this.#serializer.name)
  }

  /**
   * Inside a factory: the value it builds depends on `tags` too (what the
   * cache cannot see, such as a database read), at their current versions.
   * Outside a factory it does nothing.
   * @param {...string} tags
   */
  async dependsOn(...tags) {
    checkTags(tags)
    this.#open()
    const deps = currentDeps()
    if (deps === undefined) return
    try {
      await this.#h().trackTags(deps, tags)
    } catch (e) {
      throw native(e)
    }
  }

  async #getL2(key, n = this.#n, obs = undefined) {
    let v
    // `[entry, served]` only where a tracing wrapper asks how it was
    // served (and from the bypassing handle's method); else the entry alone.
    const sourced = n !== this.#n || obs !== undefined
    try {
      v = n === this.#n ? await this.#readL2(key, sourced) : await n.get(key)
    } catch (e) {
      return this.#l2(e, undefined)
    }
    if (v === null) return undefined
    return sourced ? this.#decoded(v[0], obs, v[1]) : decode(v, this.#serializer.name)
  }

  /** Values of several keys, in order (`undefined` for misses). */
  async getMany(keys) {
    keys.forEach(checkKey)
    this.#open()
    try {
      let vs
      const deps = currentDeps()
      if (isOff(this.#id)) vs = await this.#off.getMany(keys)
      else if (deps !== undefined) vs = await this.#n.getManyTracked(keys, deps)
      else vs = await this.#n.getMany(keys)
      return vs.map((v) => decode(v, this.#serializer.name))
    } catch (e) {
      return this.#l2(e, keys.map(() => undefined))
    }
  }

  /** Store `value` (write-through: Redis, then L1). Resolves `true` when stored. */
  async set(key, value, ttl, options = {}) {
    checkKey(key)
    this.#open()
    checkTags(options.tags)
    const [data, format] = encode(this.#serializer, value)
    try {
      const write = isOff(this.#id) ? this.#writeOff : this.#write
      await write(key, data, format, parseTtl(ttl), parseTtl(options.grace, 'grace'), options.tags)
      return true
    } catch (e) {
      return this.#l2(e, false)
    }
  }

  /** Store several `[key, value]` pairs; resolves to the keys that failed. */
  async setMany(entries, ttl) {
    this.#open()
    const items = entries.map(([k, v]) => {
      checkKey(k)
      return [k, ...encode(this.#serializer, v)]
    })
    try {
      return await this.#h().setMany(items, parseTtl(ttl))
    } catch (e) {
      return this.#l2(e, items.map(([k]) => k))
    }
  }

  /** Store only if `key` has no live value; resolves `true` when stored. */
  async add(key, value, ttl) {
    checkKey(key)
    this.#open()
    const [data, format] = encode(this.#serializer, value)
    try {
      return await this.#h().add(key, data, format, parseTtl(ttl))
    } catch (e) {
      return this.#l2(e, false)
    }
  }

  /** Remove `key`; resolves `true` if it existed. */
  async delete(key) {
    checkKey(key)
    this.#open()
    if (this.#kept !== null) this.#kept.forget(key)
    try {
      return await this.#h().delete(key)
    } catch (e) {
      return this.#l2(e, false)
    }
  }

  /** Remove several keys; resolves to how many existed. */
  async deleteMany(keys) {
    keys.forEach(checkKey)
    this.#open()
    try {
      return await this.#h().deleteMany(keys)
    } catch (e) {
      return this.#l2(e, 0)
    }
  }

  /** Give a live key a new TTL; resolves `false` if it is missing. */
  async touch(key, ttl) {
    checkKey(key)
    this.#open()
    try {
      return await this.#h().touch(key, parseTtl(ttl))
    } catch (e) {
      return this.#l2(e, false)
    }
  }

  /** Whether `key` has a fresh value. */
  async has(key) {
    checkKey(key)
    this.#open()
    try {
      if (isOff(this.#id)) return await this.#off.has(key)
      const deps = currentDeps()
      if (deps !== undefined) return (await this.#n.getTracked(key, deps)) !== null
      if (this.#getLocal(key)) return true
      if (!this.#hasL2) return false
      return await this.#n.has(key)
    } catch (e) {
      return this.#l2(e, false)
    }
  }

  /**
   * Atomically add `delta` (across processes with Redis). Rejects with
   * KeyNotFoundError for a missing key, NotAnIntegerError otherwise.
   */
  async incr(key, delta = 1) {
    checkKey(key)
    this.#open()
    if (!Number.isSafeInteger(delta)) throw new InvalidValueError('delta must be a safe integer')
    let s
    try {
      s = await this.#h().incr(key, delta)
    } catch (e) {
      throw native(e)
    }
    const n = Number(s)
    return Number.isSafeInteger(n) ? n : BigInt(s)
  }

  async decr(key, delta = 1) {
    return this.incr(key, -delta)
  }

  /** Remove every entry of this namespace (never anything else). */
  async clear() {
    this.#open()
    if (this.#kept !== null) this.#kept.clear()
    try {
      await this.#h().clear()
    } catch (e) {
      this.#l2(e, undefined)
    }
  }

  /**
   * A rendered fragment (an HTML piece, a serialized block) through the
   * read-through: rendered once per key across the fleet while other
   * callers wait, tagged, and dependent on what `render` reads through the
   * cache. The key is the core's injective encoding of `name` and
   * `varyOn` (`fragmentKey`). Resolves the string.
   * @param {{ name: string, render: () => unknown, varyOn?: unknown[], [option: string]: unknown }} options
   */
  async fragment({ name, render, varyOn = [], ...rest }) {
    const key = checkFragment(name, render, varyOn)
    return this.getOrSet({ ...rest, key, factory: async () => String(await render()) })
  }

  /**
   * The value of `key`, produced by `factory()` when absent. Concurrent
   * calls for one key make exactly one factory call in this process and,
   * with Redis, in the whole fleet (a lease in Redis; the other processes
   * wait for its fill, woken by pub/sub); the others get its value, or are
   * rejected with its very error. Policy options (defaults from the
   * constructor's `policy`): allowStale + grace (stale-while-revalidate),
   * earlyRefresh / refreshAhead, failSafe (+ failSafeThrottle, softTimeout),
   * hardTimeout, waitTimeout + onWaitTimeout, noneTtl (TTL of a null
   * result; 0 = not cached). A factory may return `new NoCache(v)`.
   */
  async getOrSet(options = {}) {
    const obs = take()
    const { key, factory, ttl, tags } = options
    checkKey(key)
    this.#open()
    if (typeof factory !== 'function') throw new InvalidValueError('factory must be a function')
    checkTags(tags)
    const p = { ...this.#policy, ...checkPolicy(options) }
    // Without early refresh, a fresh L1 value is the whole answer, taken
    // on this thread.
    const parent = currentDeps()
    const n = this.#h()
    if (n === this.#n && parent === undefined && p.earlyRefresh === undefined && p.refreshAhead === undefined) {
      let v = MISS
      try {
        if (this.#kept !== null) v = this.#kept.get(key)
      } catch (e) {
        throw native(e)
      }
      if (v !== MISS) {
        note(obs, L1)
        return v
      }
    }
    let r
    try {
      if (parent !== undefined) r = await n.lookupTracked(key, nativePolicy(p, tags), parent)
      else r = await n.lookup(key, nativePolicy(p, tags))
    } catch (e) {
      const err = native(e)
      if (this.#failOpen && L2_CODES.has(err.code)) {
        if (this.listenerCount('error') > 0) this.emit('error', err)
        note(obs, LOADED)
        return plain(await factory())
      }
      throw err
    }
    const write = { ttl: parseTtl(ttl), grace: p.grace, tags }
    const onError = (e) => {
      if (this.listenerCount('error') > 0) this.emit('error', e)
    }
    if (r.kind === LEAD) {
      note(obs, r.served)
      return lead(r.lease, factory, write, this.#serializer, onError, obs)
    }
    if (r.lease) {
      // A stale value, or a fresh one due for an early refresh.
      const lease = r.lease
      setImmediate(() => settle(lease, factory, write, this.#serializer).catch(onError))
    }
    const out = decode(r.value, this.#serializer.name)
    note(obs, r.served)
    return out
  }

  /**
   * The values of `keys` (a Map): the fresh ones from the cache, the rest
   * loaded by one `loadMany(missing)` call through the same fleet leases as
   * getOrSet (a key another process is loading is waited for, not loaded
   * twice), stored with `ttl` and `tags`. Keys `loadMany` leaves out are
   * not cached and not in the result.
   * @param {{ keys: string[], loadMany: (keys: string[]) => unknown, ttl?: unknown, tags?: string[] }} options
   */
  async getOrSetMany({ keys, loadMany, ttl, tags }) {
    this.#open()
    const wanted = checkMany(keys, loadMany, tags)
    const found = await this.#h().lookupMany(wanted).catch((e) => Promise.reject(native(e)))
    const readThrough = (key, factory) => this.getOrSet({ key, factory, ttl, tags })
    return loadManyThrough(found, wanted, { loadMany, ttl: parseTtl(ttl), tags }, this.#serializer, this.#decodeLocal, readThrough)
  }

  /**
   * Load `keys` ahead of traffic; resolves how many were stored. Keys that
   * are fresh (unless `force`) or being loaded right now, here or elsewhere
   * in the fleet, are skipped: warm-up takes the same leases as getOrSet.
   * Give `factory(key)` or `loadMany(keys)` (one call for every key that
   * needs loading; resolves an object or Map of key to value).
   * @param {Iterable<string>} keys
   * @param {{ factory?: (key: string) => unknown, loadMany?: (keys: string[]) => unknown, ttl?: unknown, grace?: unknown, force?: boolean }} [options]
   */
  async warm(keys, { factory, loadMany, ttl, grace, force = false } = {}) {
    this.#open()
    if ((typeof factory === 'function') === (typeof loadMany === 'function')) {
      throw new InvalidValueError('give exactly one of factory (per key) or loadMany (all keys at once)')
    }
    for (const k of keys) checkKey(k)
    let leases
    try {
      leases = await this.#h().tryLeases([...keys], !!force)
    } catch (e) {
      throw native(e)
    }
    if (leases.length === 0) return 0
    const options = { factory, loadMany, ttl: parseTtl(ttl), grace: parseTtl(grace, 'grace'), tags: undefined, loaded: undefined }
    return fill(leases, options, this.#serializer)
  }

  [kNative]() {
    this.#open()
    return this.#h()
  }

  [kInternal]() {
    const n = this.#h()
    return httpInternals(this, n !== this.#n, this.#closed, () => ({
      n,
      failOpen: this.#failOpen,
      closed: this.#closed,
      hasL2: this.#hasL2,
      open: () => this.#open(),
      native,
      registerLoaderError,
    }))
  }

  /** Counters (hits, misses, leads, coalesced waits, errors, ...) and L1 size. */
  stats() {
    this.#countHits()
    return this.#n.stats()
  }

  /** Prometheus text exposition of the counters. */
  metrics() {
    this.#countHits()
    return this.#n.metrics()
  }

  /**
   * Resolves `true` once the purges queued for the edges (`edgePurge`) are
   * sent or given up, `false` after `timeout` (default 10 s). For scripts
   * that invalidate and exit; a server never needs it.
   */
  flushEdgePurges(timeout = 10_000) {
    return this.#n.flushEdgePurges(parseTtl(timeout, 'timeout'))
  }

  /**
   * Make every entry carrying any of `tags` stale, in every process (one
   * Redis write per tag, however many entries carry it). Stale entries are
   * still served by `allowStale`/`failSafe` callers within their grace;
   * everyone else gets a reload.
   */
  async invalidateTags(tags) {
    this.#open()
    if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string')) {
      throw new InvalidValueError('tags must be an array of strings')
    }
    try {
      await this.#h().invalidateTags(tags)
    } catch (e) {
      return this.#l2(e, undefined)
    }
  }

  /** Close this handle: later calls reject with CacheClosedError. */
  async close() {
    this.#closed = true
    this.#countHits()
    if (this.#kept !== null) this.#kept.clear()
    this.#n.close()
  }
}

traceCalls(Cache.prototype) // diagnostics_channel: `stratacache:<operation>`

module.exports = {
  Cache,
  disabled,
  Loaded,
  NoCache,
  metricsText,
  Format,
  parseTtl,
  ...errors,
}
delete module.exports.fromNative
delete module.exports.L2_CODES
