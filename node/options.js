'use strict'
// Refusing unknown options with a hint, for the Cache and the HTTP cache.

const { ConfigError } = require('./errors.js')
const { nearestName } = require('./binding.js')
const { parseTtl } = require('./policy.js')
const { JSON_FORMATS, V8_FORMATS } = require('./values.js')

// The Cache constructor's options.
const CACHE_OPTIONS = [
  'redis',
  'cluster',
  'namespace',
  'l1',
  'ttl',
  'serializer',
  'compressThreshold',
  'maxValueBytes',
  'signingKey',
  'connectTimeout',
  'opTimeout',
  'waitTimeout',
  'tombstoneTtl',
  'ttlJitter',
  'failOpen',
  'fleetLease',
  'trackDependencies',
  'leaseTtl',
  'jsReads',
  'breaker',
  'policy',
  'clone',
  'edgePurge',
]

/** Refuse an unknown option with ConfigError (E_CONFIG) naming it and the nearest known one. */
function checkOptions(o, known, what) {
  for (const k of Object.keys(o)) {
    if (known.includes(k)) continue
    const near = nearestName(k, known)
    throw new ConfigError(`unknown ${what} option ${JSON.stringify(k)}${near ? ` (did you mean ${near}?)` : ''}`)
  }
}

/**
 * `edgePurge` (an array of objects, one per edge, each with a `kind`) as the
 * JSON the core parses and checks: field names in camelCase become the
 * core's snake_case (`serviceId` -> `service_id`); a `headers` object is
 * sent as it is.
 */
function edgePurgeJson(edges) {
  if (edges === undefined || edges === null) return undefined
  if (typeof edges === 'object' && !Array.isArray(edges)) edges = [edges]
  if (!Array.isArray(edges)) throw new ConfigError('edgePurge must be an array of objects, one per edge')
  const snake = (k) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
  return JSON.stringify(
    edges.map((e) => {
      if (e === null || typeof e !== 'object' || Array.isArray(e)) {
        throw new ConfigError('edgePurge: each edge must be an object with a kind')
      }
      return Object.fromEntries(Object.entries(e).map(([k, v]) => [snake(k), v]))
    }),
  )
}

/**
 * The native cache's configuration from a Cache's options `o` (checked
 * against CACHE_OPTIONS first): durations parsed ('5m' or ms), the L1
 * switch and bound, and the formats `serializer` reads (other
 * serializers' entries are misses in the core, counted, so read-throughs
 * load and overwrite them).
 * @param {Record<string, any>} o
 * @param {{ name: string, formats?: number[] }} serializer
 */
function nativeConfig(o, serializer) {
  const l1 = o.l1 === false ? { enabled: false } : o.l1 || {}
  const ms = (/** @type {unknown} */ v, /** @type {string} */ name) => (v === undefined ? undefined : parseTtl(v, name))
  return {
    namespace: o.namespace,
    redis: o.redis || undefined,
    cluster: o.cluster,
    l1: l1.enabled !== false,
    l1MaxBytes: l1.maxBytes,
    l1MemoBytes: l1.memoBytes,
    defaultTtlMs: ms(o.ttl, 'ttl'),
    compressThreshold: o.compressThreshold,
    maxValueBytes: o.maxValueBytes,
    signingKey: o.signingKey === undefined ? undefined : Buffer.from(o.signingKey),
    connectTimeoutMs: ms(o.connectTimeout, 'connectTimeout'),
    opTimeoutMs: ms(o.opTimeout, 'opTimeout'),
    waitTimeoutMs: ms(o.waitTimeout, 'waitTimeout'),
    tombstoneTtlMs: ms(o.tombstoneTtl, 'tombstoneTtl'),
    ttlJitter: o.ttlJitter,
    fleetLease: o.fleetLease,
    trackDependencies: o.trackDependencies,
    leaseTtlMs: ms(o.leaseTtl, 'leaseTtl'),
    breakerThreshold: o.breaker ? o.breaker.threshold : undefined,
    breakerCooldownMs: o.breaker ? ms(o.breaker.cooldown, 'breaker.cooldown') : undefined,
    acceptedFormats: [...(serializer.formats || (serializer.name === 'v8' ? V8_FORMATS : JSON_FORMATS))],
    edgePurge: edgePurgeJson(o.edgePurge),
  }
}

module.exports = { CACHE_OPTIONS, checkOptions, edgePurgeJson, nativeConfig }
