'use strict'
// Keyv storage adapter: `new Keyv({ store: new KeyvStratacache({ redis, ... }) })`,
// and through Keyv, cache-manager 7 and cacheable.
//
// Keyv prefixes keys with its namespace and stores `{ value, expires }`
// itself; the adapter keeps every Keyv namespace in a stratacache namespace
// of its own (`<base>.<keyv namespace>`), so Keyv's `clear()` clears exactly
// that namespace and nothing else, in O(its keys), on Redis and Cluster.

const { EventEmitter } = require('node:events')
const crypto = require('node:crypto')
const { Cache } = require('./index.js')
const { keyIsHashed } = require('./binding.js')
const { kNative } = require('./internal.js')
const { decode } = require('./values.js')
const { native } = require('./loader.js')

// A key the core stores under its hash (long, or with braces) cannot be
// read back from a listing: its value is stored as `[key, value]`, so
// `iterator()` finds the key in it. Whether a key is wrapped depends only on
// the key, so `get` knows when to unwrap.
const wrap = (key, value) => (keyIsHashed(key) ? [key, value] : value)
const unwrap = (key, v) => (v !== undefined && keyIsHashed(key) && Array.isArray(v) && v[0] === key ? v[1] : v)

function subNamespace(base, keyvNamespace) {
  if (keyvNamespace === undefined || keyvNamespace === null || keyvNamespace === '') return base
  const ns = String(keyvNamespace)
  // Namespaces are [A-Za-z0-9_.-]{1,64}; anything else (or a name that could
  // collide with an encoded one) is hashed, which keeps the mapping injective.
  const plain = /^[A-Za-z0-9_-]{1,30}$/.test(ns) && !ns.startsWith('h-')
  return `${base}.${plain ? ns : `h-${crypto.createHash('sha256').update(ns).digest('hex').slice(0, 24)}`}`
}

class KeyvStratacache extends EventEmitter {
  /**
   * @param {import('./index').CacheOptions} [options] options of the
   *   underlying caches (`namespace` is the base namespace, default 'keyv').
   */
  constructor(options = {}) {
    super()
    // `dialect` tells Keyv the store can list its entries (iterator()).
    this.opts = { ...options, namespace: options.namespace || 'keyv', dialect: 'redis' }
    this.namespace = undefined
    this._caches = new Map()
    // Fail fast on a bad configuration, before Keyv uses the store.
    this._cache()
  }

  _cache(keyvNamespace = this.namespace) {
    const ns = subNamespace(this.opts.namespace, keyvNamespace)
    let c = this._caches.get(ns)
    if (!c) {
      const options = { ...this.opts, namespace: ns }
      delete options.dialect
      c = new Cache(options)
      c.on('error', (e) => this.emit('error', e))
      this._caches.set(ns, c)
    }
    return c
  }

  async get(key) {
    return unwrap(key, await this._cache().get(key))
  }

  async getMany(keys) {
    const vs = await this._cache().getMany(keys)
    return vs.map((v, i) => unwrap(keys[i], v))
  }

  async set(key, value, ttl) {
    // Keyv passes no TTL for entries that never expire.
    return this._cache().set(key, wrap(key, value), typeof ttl === 'number' && ttl > 0 ? ttl : null)
  }

  /**
   * Every live `[key, value]` of a Keyv namespace (Keyv's `iterator()`),
   * a page of a Redis `SCAN` at a time (L1 alone: this process's entries).
   * @param {string} [namespace]
   */
  async *iterator(namespace) {
    const cache = this._cache(namespace)
    const serializer = this.opts.serializer
    const name = typeof serializer === 'string' ? serializer : serializer ? serializer.name : 'json'
    let cursor = ''
    do {
      let page
      try {
        page = await cache[kNative]().scanPage(cursor)
      } catch (e) {
        throw native(e)
      }
      for (let i = 0; i < page.keys.length; i++) {
        const v = decode(page.values[i], name)
        const key = page.keys[i]
        if (key !== null) yield [key, unwrap(key, v)]
        else if (Array.isArray(v) && typeof v[0] === 'string') yield [v[0], v[1]]
      }
      cursor = page.cursor
    } while (cursor !== '')
  }

  async delete(key) {
    return this._cache().delete(key)
  }

  async deleteMany(keys) {
    return (await this._cache().deleteMany(keys)) > 0
  }

  async has(key) {
    return this._cache().has(key)
  }

  async clear() {
    await this._cache().clear()
  }

  async disconnect() {
    await Promise.all([...this._caches.values()].map((c) => c.close()))
    this._caches.clear()
  }
}

module.exports = { KeyvStratacache, default: KeyvStratacache }
