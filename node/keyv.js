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
    this.opts = { ...options, namespace: options.namespace || 'keyv' }
    this.namespace = undefined
    this._caches = new Map()
    // Fail fast on a bad configuration, before Keyv uses the store.
    this._cache()
  }

  _cache() {
    const ns = subNamespace(this.opts.namespace, this.namespace)
    let c = this._caches.get(ns)
    if (!c) {
      c = new Cache({ ...this.opts, namespace: ns })
      c.on('error', (e) => this.emit('error', e))
      this._caches.set(ns, c)
    }
    return c
  }

  async get(key) {
    return this._cache().get(key)
  }

  async getMany(keys) {
    return this._cache().getMany(keys)
  }

  async set(key, value, ttl) {
    // Keyv passes no TTL for entries that never expire.
    return this._cache().set(key, value, typeof ttl === 'number' && ttl > 0 ? ttl : null)
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
