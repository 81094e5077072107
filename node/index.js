'use strict'
// stratacache for Node.js: the public Promise API over the native binding.
// Behaviour (tiers, single-flight, leases, envelopes) lives in the Rust core;
// this file converts values, parses TTLs, maps errors and runs factories.

const { EventEmitter } = require('node:events')
const v8 = require('node:v8')
const { NativeCache } = require('./binding.js')
const errors = require('./errors.js')

const { fromNative, L2_CODES, InvalidValueError, InvalidKeyError, CacheClosedError, ConfigError } = errors

/** Serializer ids shared with the Python package (see docs/architecture.md). */
const Format = Object.freeze({ RAW: 0, PICKLE: 1, JSON: 2, MSGPACK: 3, V8: 4, INT: 5, UTF8: 6 })
const FRESH = 0
const STALE = 1
const LEAD = 2
const I64_MIN = -(2n ** 63n)
const I64_MAX = 2n ** 63n - 1n

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

const serializers = {
  json: {
    name: 'json',
    encode(value) {
      const s = JSON.stringify(value)
      if (s === undefined) throw new InvalidValueError(`cannot store ${typeof value} as JSON`)
      return [Buffer.from(s), Format.JSON]
    },
  },
  v8: {
    name: 'v8',
    encode(value) {
      try {
        return [v8.serialize(value), Format.V8]
      } catch (e) {
        throw new InvalidValueError(`cannot serialize value with v8.serialize: ${e.message}`, { cause: e })
      }
    },
  },
  raw: {
    name: 'raw',
    encode(value) {
      if (Buffer.isBuffer(value) || value instanceof Uint8Array) return [Buffer.from(value), Format.RAW]
      if (typeof value === 'string') return [Buffer.from(value), Format.UTF8]
      throw new InvalidValueError('the raw serializer stores Buffers and strings')
    },
  },
}

function encode(serializer, value) {
  if (value === undefined) throw new InvalidValueError('undefined cannot be cached (it means "missing")')
  // Integers use the counter form: atomic incr/decr in Redis, numbers in Python.
  if (typeof value === 'number' && Number.isSafeInteger(value)) return [Buffer.from(String(value)), Format.INT]
  if (typeof value === 'bigint' && value >= I64_MIN && value <= I64_MAX) return [Buffer.from(String(value)), Format.INT]
  return serializer.encode(value)
}

// Decode by the format recorded in the entry; formats this process does
// not trust or understand (pickle, msgpack) are a miss, never guessed at.
function decode(v, serializerName) {
  if (!v) return undefined
  // `[format, data]` from getLocal (data may be a string), or `{ format, data }`.
  const format = Array.isArray(v) ? v[0] : v.format
  const data = Array.isArray(v) ? v[1] : v.data
  if (typeof data === 'string') {
    if (format === Format.INT) {
      const n = Number(data)
      return Number.isSafeInteger(n) ? n : BigInt(data)
    }
    return format === Format.JSON ? JSON.parse(data) : data
  }
  switch (format) {
    case Format.INT: {
      const n = Number(data.toString())
      return Number.isSafeInteger(n) ? n : BigInt(data.toString())
    }
    case Format.JSON:
      return JSON.parse(data.toString())
    case Format.UTF8:
      return data.toString()
    case Format.RAW:
      return Buffer.from(data)
    case Format.V8:
      return serializerName === 'v8' ? v8.deserialize(data) : undefined
    default:
      return undefined
  }
}

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

function native(err) {
  return fromNative(err, loaderErrors)
}

// Internal API for the web middleware (express.js, fastify.js): raw entries
// and leases. Not part of the public API.
const kInternal = Symbol.for('stratacache.internal')

/**
 * A tiered cache: in-process L1 and, with `redis` or `cluster`, a Redis L2.
 * Handles created with the same Redis location and namespace in one
 * process share one L1.
 */
class Cache extends EventEmitter {
  #n
  #serializer
  #failOpen
  #hasL2
  #closed = false

  constructor(options = {}) {
    super()
    const o = options || {}
    const serializer = o.serializer === undefined ? 'json' : o.serializer
    this.#serializer = typeof serializer === 'string' ? serializers[serializer] : serializer
    if (!this.#serializer || typeof this.#serializer.encode !== 'function') {
      throw new ConfigError(`unknown serializer ${String(serializer)}; use 'json', 'v8' or 'raw'`)
    }
    this.#failOpen = o.failOpen !== false
    const l1 = o.l1 === false ? { enabled: false } : o.l1 || {}
    const ms = (v, name) => (v === undefined ? undefined : parseTtl(v, name))
    try {
      this.#n = new NativeCache({
        namespace: o.namespace,
        redis: o.redis || undefined,
        cluster: o.cluster,
        l1: l1.enabled !== false,
        l1MaxBytes: l1.maxBytes,
        defaultTtlMs: ms(o.ttl, 'ttl'),
        compressThreshold: o.compressThreshold,
        maxValueBytes: o.maxValueBytes,
        signingKey: o.signingKey === undefined ? undefined : Buffer.from(o.signingKey),
        connectTimeoutMs: ms(o.connectTimeout, 'connectTimeout'),
        opTimeoutMs: ms(o.opTimeout, 'opTimeout'),
        waitTimeoutMs: ms(o.waitTimeout, 'waitTimeout'),
        tombstoneTtlMs: ms(o.tombstoneTtl, 'tombstoneTtl'),
        ttlJitter: o.ttlJitter,
      })
    } catch (e) {
      throw native(e)
    }
    this.#hasL2 = this.#n.hasL2
  }

  get namespace() {
    return this.#n.namespace
  }

  #open() {
    if (this.#closed) throw new CacheClosedError('the cache is closed')
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

  /** The fresh value of `key`, or `undefined`. */
  get(key) {
    // Not an async function: an L1 hit (the hot path) resolves without a
    // second trip through the microtask machinery.
    try {
      checkKey(key)
      this.#open()
      const v = this.#n.getLocal(key)
      if (typeof v === 'string') return Promise.resolve(JSON.parse(v))
      if (v || !this.#hasL2) return Promise.resolve(decode(v, this.#serializer.name))
    } catch (e) {
      return Promise.reject(native(e))
    }
    return this.#getL2(key)
  }

  async #getL2(key) {
    let v
    try {
      v = await this.#n.get(key)
    } catch (e) {
      return this.#l2(e, undefined)
    }
    return decode(v, this.#serializer.name)
  }

  /** Values of several keys, in order (`undefined` for misses). */
  async getMany(keys) {
    keys.forEach(checkKey)
    this.#open()
    try {
      const vs = await this.#n.getMany(keys)
      return vs.map((v) => decode(v, this.#serializer.name))
    } catch (e) {
      return this.#l2(
        e,
        keys.map(() => undefined),
      )
    }
  }

  /** Store `value` (write-through: Redis, then L1). Resolves `true` when stored. */
  async set(key, value, ttl, options = {}) {
    checkKey(key)
    this.#open()
    const [data, format] = encode(this.#serializer, value)
    try {
      await this.#n.set(key, data, format, parseTtl(ttl), parseTtl(options.grace, 'grace'), options.tags)
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
      return await this.#n.setMany(items, parseTtl(ttl))
    } catch (e) {
      return this.#l2(
        e,
        items.map(([k]) => k),
      )
    }
  }

  /** Store only if `key` has no live value; resolves `true` when stored. */
  async add(key, value, ttl) {
    checkKey(key)
    this.#open()
    const [data, format] = encode(this.#serializer, value)
    try {
      return await this.#n.add(key, data, format, parseTtl(ttl))
    } catch (e) {
      return this.#l2(e, false)
    }
  }

  /** Remove `key`; resolves `true` if it existed. */
  async delete(key) {
    checkKey(key)
    this.#open()
    try {
      return await this.#n.delete(key)
    } catch (e) {
      return this.#l2(e, false)
    }
  }

  /** Remove several keys; resolves to how many existed. */
  async deleteMany(keys) {
    keys.forEach(checkKey)
    this.#open()
    try {
      return await this.#n.deleteMany(keys)
    } catch (e) {
      return this.#l2(e, 0)
    }
  }

  /** Give a live key a new TTL; resolves `false` if it is missing. */
  async touch(key, ttl) {
    checkKey(key)
    this.#open()
    try {
      return await this.#n.touch(key, parseTtl(ttl))
    } catch (e) {
      return this.#l2(e, false)
    }
  }

  /** Whether `key` has a fresh value. */
  async has(key) {
    checkKey(key)
    this.#open()
    try {
      if (this.#n.getLocal(key)) return true
      return this.#hasL2 ? await this.#n.has(key) : false
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
      s = await this.#n.incr(key, delta)
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
    try {
      await this.#n.clear()
    } catch (e) {
      this.#l2(e, undefined)
    }
  }

  /**
   * The value of `key`, produced by `factory()` when absent. Concurrent
   * calls for one key in this process make exactly one factory call; the
   * others wait for its value, or are rejected with its very error.
   */
  async getOrSet({ key, factory, ttl, grace, allowStale = false, waitTimeout, tags, earlyRefresh, refreshAhead } = {}) {
    checkKey(key)
    this.#open()
    if (typeof factory !== 'function') throw new InvalidValueError('factory must be a function')
    if (earlyRefresh === undefined && refreshAhead === undefined) {
      // No early refresh asked for: an L1 hit is the whole answer.
      const local = this.#n.getLocal(key)
      if (typeof local === 'string') return JSON.parse(local)
      if (local) return decode(local, this.#serializer.name)
    }
    let r
    try {
      r = await this.#n.lookup(
        key,
        allowStale,
        waitTimeout === undefined ? undefined : parseTtl(waitTimeout),
        earlyRefresh,
        refreshAhead,
      )
    } catch (e) {
      const err = native(e)
      if (this.#failOpen && L2_CODES.has(err.code)) {
        if (this.listenerCount('error') > 0) this.emit('error', err)
        return factory()
      }
      throw err
    }
    const write = { ttl: parseTtl(ttl), grace: parseTtl(grace, 'grace'), tags }
    if (r.kind === LEAD) return this.#runFactory(r.lease, factory, write)
    if (r.kind === STALE && r.lease) {
      const lease = r.lease
      setImmediate(() => {
        this.#runFactory(lease, factory, write).catch((e) => {
          if (this.listenerCount('error') > 0) this.emit('error', e)
        })
      })
    }
    return decode(r.value, this.#serializer.name)
  }

  async #runFactory(lease, factory, write) {
    let value
    let data
    let format
    try {
      value = await factory()
      ;[data, format] = encode(this.#serializer, value)
    } catch (e) {
      lease.abandon(registerLoaderError(e), String((e && e.message) || e))
      throw e
    }
    try {
      await lease.complete(data, format, write.ttl, write.grace, write.tags)
    } catch (e) {
      throw native(e)
    }
    return value
  }

  [kInternal]() {
    const n = this.#n
    const cache = this
    return {
      failOpen: this.#failOpen,
      emitError(e) {
        if (cache.listenerCount('error') > 0) cache.emit('error', e)
      },
      async lookup(key, allowStale) {
        cache.#open()
        try {
          const r = await n.lookup(key, allowStale)
          return { kind: r.kind, data: r.value ? r.value.data : undefined, lease: r.lease }
        } catch (e) {
          throw native(e)
        }
      },
      async setRaw(key, data, ttlMs, graceMs) {
        try {
          await n.set(key, data, Format.RAW, ttlMs, graceMs)
        } catch (e) {
          throw native(e)
        }
      },
      async complete(lease, data, ttlMs, graceMs) {
        try {
          await lease.complete(data, Format.RAW, ttlMs, graceMs)
        } catch (e) {
          throw native(e)
        }
      },
      abandon(lease, err) {
        lease.abandon(registerLoaderError(err), String((err && err.message) || err))
      },
    }
  }

  /** Counters (hits, misses, leads, coalesced waits, errors, ...) and L1 size. */
  stats() {
    return this.#n.stats()
  }

  /** Prometheus text exposition of the counters. */
  metrics() {
    return this.#n.metrics()
  }

  /** Close this handle: later calls reject with CacheClosedError. */
  async close() {
    this.#closed = true
    this.#n.close()
  }
}

module.exports = {
  Cache,
  Format,
  parseTtl,
  ...errors,
}
Object.defineProperty(module.exports, 'kInternal', { value: kInternal, enumerable: false })
delete module.exports.fromNative
delete module.exports.L2_CODES
