'use strict'
// Refusing unknown options with a hint, for the Cache and the HTTP cache.

const { ConfigError } = require('./errors.js')
const { nearestName } = require('./binding.js')

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

module.exports = { CACHE_OPTIONS, checkOptions, edgePurgeJson }
