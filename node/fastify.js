'use strict'
// Fastify plugin:
//   await fastify.register(require('stratacache/fastify'), { cache })
//   fastify.get('/items/:id', { config: { cache: { ttl: '1m' } } }, handler)
// Translates Fastify requests and replies for the core's HTTP engine
// (node/http.js drives it). Its hooks cover the whole instance: a
// successful POST/PUT/PATCH/DELETE on any route invalidates its path's
// entries.

const { rule, begin, headerPairs, splitTarget } = require('./http.js')
const { metricsAnswer } = require('./metrics.js')

const kStep = Symbol('stratacache.fastify')
const kRevoke = Symbol('stratacache.fastify.revoke')

/** Set flat [name, value, ...] headers. */
function headerAll(reply, flat) {
  for (let i = 0; i < flat.length; i += 2) reply.header(flat[i], flat[i + 1])
}
const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

// Options Fastify itself gives plugins: not HTTP cache options.
const FASTIFY_OPTIONS = new Set(['prefix', 'logLevel', 'logSerializers'])

async function stratacacheFastify(fastify, options) {
  const defaults = Object.fromEntries(Object.entries(options || {}).filter(([k]) => !FASTIFY_OPTIONS.has(k)))
  const rules = new WeakMap()
  const unsafeRule = defaults.cache ? rule(defaults) : null
  const ruleFor = (config) => {
    let r = rules.get(config)
    if (!r) {
      r = rule({ ...defaults, ...config })
      rules.set(config, r)
    }
    return r
  }
  const configOf = (request) => request.routeOptions && request.routeOptions.config && request.routeOptions.config.cache

  fastify.addHook('onRequest', async (request, reply) => {
    const config = configOf(request)
    let r
    if (config) r = ruleFor(config)
    else if (UNSAFE.has(request.method) && unsafeRule) r = unsafeRule
    else return
    // The path as Fastify routes it (raw: see splitTarget).
    const { path, query } = splitTarget(request.url)
    const step = await begin(r, {
      method: request.method,
      path,
      query,
      headers: request.headers,
      rawHeaders: request.raw.rawHeaders,
      raw: request,
      refresh: (headers) => request.server.inject({ method: 'GET', url: request.url, headers }),
    })
    if (step.answer) {
      const a = step.answer
      reply.code(a.status)
      headerAll(reply, a.headers)
      return reply.send(a.body || '')
    }
    if (step.pass) {
      headerAll(reply, step.pass)
      return
    }
    request[kStep] = step // the handler runs; onSend finishes
  })

  // The handler runs inside the step's tracking scope, so its reads become
  // the response's dependencies (a callback hook: `done` enters the handler
  // within the scope).
  fastify.addHook('preHandler', (request, reply, done) => {
    const step = request[kStep]
    if (step) step.run(done)
    else done()
  })

  fastify.addHook('onSend', async (request, reply, payload) => {
    const step = request[kStep]
    if (!step) return payload
    request[kStep] = undefined
    if (payload !== null && payload !== undefined && typeof payload !== 'string' && !Buffer.isBuffer(payload)) {
      headerAll(reply, step.streamed())
      await step.finish({ streamed: true })
      return payload
    }
    const body = payload === null || payload === undefined ? Buffer.alloc(0) : Buffer.from(payload)
    const out = await step.finish({ status: reply.statusCode, headers: headerPairs(reply.getHeaders()), body })
    request[kRevoke] = out.revoke // once sent (onResponse): a later onSend may still set a cookie
    if (out.pass) {
      headerAll(reply, out.pass)
      return payload
    }
    const a = out.answer
    for (const name of Object.keys(reply.getHeaders())) reply.removeHeader(name)
    headerAll(reply, a.headers)
    reply.code(a.status)
    return a.body || ''
  })

  // A request that never reached onSend (client gone, hook error): release
  // the requests waiting on it.
  const release = async (request) => {
    const step = request[kStep]
    if (step) {
      request[kStep] = undefined
      step.abort(new Error('the route did not respond'))
    }
  }
  fastify.addHook('onResponse', async (request, reply) => {
    const revoke = request[kRevoke]
    if (revoke) {
      request[kRevoke] = undefined
      await revoke(reply.hasHeader('set-cookie'))
    }
    return release(request)
  })
  fastify.addHook('onRequestAbort', release)
}

// Hooks apply to the whole instance (what fastify-plugin does).
stratacacheFastify[Symbol.for('skip-override')] = true
stratacacheFastify[Symbol.for('fastify.display-name')] = 'stratacache'

/**
 * A Prometheus endpoint for `caches` (a cache or an array): each metric
 * family once, a sample per namespace. With `{ token }` it answers only
 * `Authorization: Bearer <token>`. `fastify.get('/metrics', metricsHandler(cache))`.
 */
function metricsHandler(caches, options = {}) {
  const answer = metricsAnswer(caches, options)
  return async (request, reply) => {
    const a = answer(request.headers.authorization)
    return reply.code(a.status).header('cache-control', 'no-store').type(a.type).send(a.body)
  }
}

module.exports = stratacacheFastify
module.exports.default = stratacacheFastify
module.exports.stratacacheFastify = stratacacheFastify
module.exports.metricsHandler = metricsHandler
