'use strict'
// Fastify plugin:
//   await fastify.register(require('stratacache/fastify'), { cache })
//   fastify.get('/items/:id', { config: { cache: { ttl: '1m' } } }, handler)
// Same HTTP semantics as the Express middleware (node/http.js).

const { rule, begin, headerPairs } = require('./http.js')

const kStep = Symbol('stratacache.fastify')

async function stratacacheFastify(fastify, options) {
  const defaults = options || {}
  const rules = new WeakMap()
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
    if (!config || (request.method !== 'GET' && request.method !== 'HEAD')) return
    const r = ruleFor(config)
    const url = new URL(request.url, 'http://x')
    const step = await begin(r, {
      method: request.method,
      path: url.pathname,
      query: [...url.searchParams.entries()],
      headers: request.headers,
      route: request.routeOptions.url || url.pathname,
      raw: request,
    })
    if (step.answer) {
      const out = step.answer
      reply.code(out.status)
      for (const [k, v] of out.headers) reply.header(k, v)
      if (r.xCache) reply.header('x-cache', out.state)
      return reply.send(out.body || '')
    }
    request[kStep] = step // the handler runs; onSend finishes
  })

  fastify.addHook('onSend', async (request, reply, payload) => {
    const step = request[kStep]
    if (!step) return payload
    request[kStep] = undefined
    const r = ruleFor(configOf(request))
    if (payload !== null && payload !== undefined && typeof payload !== 'string' && !Buffer.isBuffer(payload)) {
      step.abort(new Error('streamed responses are not cached')) // waiters run their own handler
      if (r.xCache) reply.header('x-cache', 'BYPASS')
      return payload
    }
    const body = payload === null || payload === undefined ? Buffer.alloc(0) : Buffer.from(payload)
    const out = await step.finish({ status: reply.statusCode, headers: headerPairs(reply.getHeaders()), body })
    if (r.xCache) reply.header('x-cache', out.state)
    if (out.fromHandler) return payload
    for (const [k, v] of out.headers) reply.header(k, v)
    reply.code(out.status)
    return out.body || ''
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
  fastify.addHook('onResponse', release)
  fastify.addHook('onRequestAbort', release)
}

// Hooks apply to the whole instance (what fastify-plugin does).
stratacacheFastify[Symbol.for('skip-override')] = true
stratacacheFastify[Symbol.for('fastify.display-name')] = 'stratacache'

module.exports = stratacacheFastify
module.exports.default = stratacacheFastify
module.exports.stratacacheFastify = stratacacheFastify
