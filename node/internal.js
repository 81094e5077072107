'use strict'
// The key of the cache's internal API for the web middleware (express.js,
// fastify.js through http.js): raw entries and leases. Not part of the
// public API.
const kInternal = Symbol.for('stratacache.internal')
// The cache's native handle, for the change feed (feed.js).
const kNative = Symbol.for('stratacache.native')

module.exports = { kInternal, kNative }
