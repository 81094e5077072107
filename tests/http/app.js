'use strict'
// An Express or Fastify app built from tests/http/cases.json's routes, for
// the case table (tests/http/test_cases.py starts two of each).
//   node tests/http/app.js express|fastify PORT NAMESPACE REDIS_URL
// Every route is served cached at its path and uncached at /raw<path>;
// /__calls gives the handler runs, POST /__fail?on=1|0 makes the failing
// routes fail.
const path = require('node:path')
const { Readable } = require('node:stream')
const express = require('express')
const Fastify = require('fastify')
const { Cache } = require('../../node/index.js')
const { cached } = require('../../node/express.js')
const stratacacheFastify = require('../../node/fastify.js')

const [framework, port, namespace, redis] = process.argv.slice(2)
const { routes } = require(path.join(__dirname, 'cases.json'))
// The edges to purge (tests/http/test_varnish.py), as the core takes them.
const edges = process.env.STRATACACHE_TEST_EDGE_PURGE
const cache = new Cache({ namespace, redis, opTimeout: 5000, edgePurge: edges ? JSON.parse(edges) : undefined })
const calls = {}
let failing = false

function options(spec) {
  const c = spec.cache
  const o = { ttl: c.ttl * 1000 }
  if (c.stale_while_revalidate) o.staleWhileRevalidate = c.stale_while_revalidate * 1000
  if (c.stale_if_error) o.staleIfError = c.stale_if_error * 1000
  if (c.edge_ttl) o.edgeTtl = c.edge_ttl * 1000
  if (c.edge_tag_header) o.edgeTagHeader = c.edge_tag_header
  if (c.vary) o.vary = c.vary
  if (c.shared_cookies) o.sharedCookies = c.shared_cookies
  if (c.api_key_header) o.privateHeaders = [c.api_key_header]
  if (c.request_directives) o.requestDirectives = c.request_directives
  if (c.key_by) o.keyBy = (req) => req.headers[c.key_by] || null
  return o
}

// What the route's handler answers: { status, headers, body, type, stream, raise }.
async function produce(name, spec, req, counted) {
  const r = spec.respond || {}
  if (counted) calls[name] = (calls[name] || 0) + 1
  if (r.delay) await new Promise((resolve) => setTimeout(resolve, r.delay * 1000))
  if (r.fails && failing) {
    if (r.fails === 'raise') return { raise: true }
    return { status: 503, json: { down: true } }
  }
  const out = { status: r.status || 200, headers: { ...(r.headers || {}) } }
  if (r.set_cookie) out.cookie = r.set_cookie
  if (r.stream) out.stream = ['chunk-1;', 'chunk-2;']
  else if (r.html) out.html = '<p>html</p>'
  else if (r.model) out.json = { id: 1, name: 'ada' } // the model leaves out password_hash
  else {
    const url = new URL(req.url, 'http://x')
    const echo = {}
    for (const h of r.echo || []) echo[h] = req.headers[h] === undefined ? null : req.headers[h]
    out.json = { route: name, query: [...url.searchParams], echo }
    // A key read through the cache: a dependency of the response.
    if (r.reads) out.json.read = String(await cache.get(r.reads))
    if (!r.fixed) out.json.n = `${process.pid}:${calls[name] || 0}`
  }
  return out
}

async function expressApp() {
  const app = express()
  const send = (res, out) => {
    if (out.raise) throw new Error('handler failed')
    for (const [k, v] of Object.entries(out.headers || {})) res.setHeader(k, v)
    if (out.cookie) res.setHeader('Set-Cookie', out.cookie)
    res.status(out.status || 200)
    if (out.stream) {
      for (const c of out.stream) res.write(c)
      return res.end()
    }
    if (out.html) return res.type('html').send(out.html)
    return res.json(out.json)
  }
  // What an app writes to let a request skip the cache.
  app.use((req, res, next) => (req.headers['x-no-cache'] ? cache.disabled(next) : next()))
  for (const [name, spec] of Object.entries(routes)) {
    const mw = cached({ cache, ...options(spec) })
    app.all(spec.path, mw, async (req, res) => send(res, await produce(name, spec, req, req.method !== 'POST')))
    app.get(`/raw${spec.path}`, async (req, res) => send(res, await produce(name, spec, req, false)))
  }
  app.get('/__calls', (req, res) => res.json(calls))
  app.post('/__fail', (req, res) => {
    failing = req.query.on === '1'
    res.json({ failing })
  })
  app.use((err, req, res, _next) => res.status(500).json({ error: err.message }))
  await new Promise((resolve) => app.listen(Number(port), '127.0.0.1', resolve))
}

async function fastifyApp() {
  const app = Fastify()
  // What an app writes to let a request skip the cache (before the plugin's hooks).
  app.addHook('onRequest', (req, reply, done) => (req.headers['x-no-cache'] ? cache.disabled(done) : done()))
  await app.register(stratacacheFastify, { cache })
  const send = (reply, out) => {
    if (out.raise) throw new Error('handler failed')
    for (const [k, v] of Object.entries(out.headers || {})) reply.header(k, v)
    if (out.cookie) reply.header('set-cookie', out.cookie)
    reply.code(out.status || 200)
    if (out.stream) return reply.send(Readable.from(out.stream))
    if (out.html) return reply.type('text/html').send(out.html)
    return reply.send(out.json)
  }
  for (const [name, spec] of Object.entries(routes)) {
    const config = { config: { cache: options(spec) } }
    app.route({ method: ['GET', 'HEAD', 'POST'], url: spec.path, ...config, handler: async (req, reply) => send(reply, await produce(name, spec, req, req.method !== 'POST')) })
    app.get(`/raw${spec.path}`, async (req, reply) => send(reply, await produce(name, spec, req, false)))
  }
  app.get('/__calls', async () => calls)
  app.post('/__fail', async (req) => {
    failing = req.query.on === '1'
    return { failing }
  })
  await app.listen({ port: Number(port), host: '127.0.0.1' })
}

;(framework === 'express' ? expressApp : fastifyApp)().then(
  () => console.log('ready'),
  (e) => {
    console.error(e)
    process.exit(1)
  },
)
process.on('SIGTERM', () => {
  cache.close()
  process.exit(0)
})
