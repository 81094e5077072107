'use strict'
// Prometheus: one exposition of several caches (the core's), and the
// endpoint's answer the Express and Fastify handlers send.

const crypto = require('node:crypto')
const { metricsText: nativeMetricsText } = require('./binding.js')
const { ConfigError, InvalidValueError } = require('./errors.js')

const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

/**
 * One Prometheus exposition (text format 0.0.4) of several caches: each
 * metric family once, a sample per namespace. What `metricsHandler` (in
 * `stratacache/express` and `stratacache/fastify`) serves.
 */
function metricsText(...caches) {
  for (const c of caches) {
    if (c === null || typeof c !== 'object' || typeof c.stats !== 'function' || typeof c.namespace !== 'string') {
      throw new InvalidValueError('metricsText takes stratacache caches')
    }
  }
  return nativeMetricsText(
    caches.map((c) => c.namespace),
    caches.map((c) => c.stats()),
  )
}

/**
 * `caches` (one or an array) and `{ token }`: what to answer a request
 * whose Authorization header is `auth`, as `{ status, type, body }`.
 */
function metricsAnswer(caches, options = {}) {
  const list = Array.isArray(caches) ? caches : [caches]
  if (list.length === 0) throw new ConfigError('metricsHandler needs at least one cache')
  const token = options.token
  const want = token ? Buffer.from(`Bearer ${token}`) : null
  return (auth) => {
    if (want !== null) {
      const got = Buffer.from(String(auth || ''))
      if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) {
        return { status: 401, type: 'text/plain', body: 'unauthorized\n' }
      }
    }
    return { status: 200, type: CONTENT_TYPE, body: metricsText(...list) }
  }
}

module.exports = { metricsText, metricsAnswer }
