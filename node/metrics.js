'use strict'
// The Prometheus endpoint's answer, for the Express and Fastify handlers.

const crypto = require('node:crypto')
const { metricsText } = require('./index.js')
const { ConfigError } = require('./errors.js')

const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

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

module.exports = { metricsAnswer }
