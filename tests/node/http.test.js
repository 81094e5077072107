'use strict'
// Express middleware and Fastify plugin on real HTTP servers (ephemeral
// loopback ports), hit with real requests: MISS/HIT, strong ETag and 304,
// coalescing, Cache-Control in and out, Vary, per-user isolation.
const test = require('node:test')
const assert = require('node:assert/strict')
const http = require('node:http')
const crypto = require('node:crypto')
const express = require('express')
const Fastify = require('fastify')
const { Cache } = require('../../node/index.js')
const { cached } = require('../../node/express.js')
const stratacacheFastify = require('../../node/fastify.js')
const { REDIS_URL, unique } = require('./helpers.js')

function request(port, path, headers = {}, method = 'GET') {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers, method, agent: false }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }))
    })
    req.on('error', reject)
    req.end()
  })
}

// One app per framework, same routes and the same handler behaviour.
function routes(counts, gate) {
  const bump = (name) => {
    counts[name] = (counts[name] || 0) + 1
    return counts[name]
  }
  return {
    item: (id, q) => ({ status: 200, json: { id, q, n: bump('item') } }),
    slow: async () => {
      bump('slow')
      await gate.promise
      return { status: 200, json: { v: 'slow' } }
    },
    nostore: () => ({ status: 200, json: { n: bump('nostore') }, headers: { 'cache-control': 'no-store' } }),
    cookie: () => ({ status: 200, json: { n: bump('cookie') }, cookie: true }),
    missing: () => ({ status: 404, json: { n: bump('missing') } }),
    boom: () => {
      bump('boom')
      throw new Error('handler failed')
    },
    me: (auth) => ({ status: 200, json: { user: auth, n: bump('me') } }),
    lang: (l) => ({ status: 200, json: { lang: l, n: bump('lang') } }),
    // Healthy until counts.failing is set, then a 503.
    flaky: () => (counts.failing ? { status: 503, json: { down: bump('down') } } : { status: 200, json: { n: bump('flaky') } }),
  }
}

async function expressApp(cache, counts, gate) {
  const h = routes(counts, gate)
  const app = express()
  const send = (res, out) => {
    if (out.headers) for (const [k, v] of Object.entries(out.headers)) res.setHeader(k, v)
    if (out.cookie) res.cookie('sid', 'secret')
    res.status(out.status).json(out.json)
  }
  const opts = { cache, ttl: '1m' }
  app.get('/items/:id', cached(opts), (req, res) => send(res, h.item(req.params.id, req.query.q)))
  app.get('/slow', cached(opts), async (req, res) => send(res, await h.slow()))
  app.get('/nostore', cached(opts), (req, res) => send(res, h.nostore()))
  app.get('/cookie', cached(opts), (req, res) => send(res, h.cookie()))
  app.get('/missing', cached(opts), (req, res) => send(res, h.missing()))
  app.get('/boom', cached(opts), () => h.boom())
  app.get('/me', cached({ ...opts, keyBy: (req) => req.headers.authorization }), (req, res) => send(res, h.me(req.headers.authorization)))
  app.get('/lang', cached({ ...opts, vary: ['Accept-Language'] }), (req, res) => send(res, h.lang(req.headers['accept-language'])))
  app.get('/flaky', cached({ cache, ttl: 30, staleIfError: '1m' }), (req, res) => send(res, h.flaky()))
  app.post('/items/:id', cached(opts), (req, res) => res.json({ posted: true }))
  app.use((err, req, res, _next) => res.status(500).json({ error: err.message }))
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s))
  })
  return { port: server.address().port, close: () => new Promise((r) => server.close(r)) }
}

async function fastifyApp(cache, counts, gate) {
  const h = routes(counts, gate)
  const app = Fastify()
  await app.register(stratacacheFastify, { cache })
  const send = (reply, out) => {
    if (out.headers) for (const [k, v] of Object.entries(out.headers)) reply.header(k, v)
    if (out.cookie) reply.header('set-cookie', 'sid=secret')
    return reply.code(out.status).send(out.json)
  }
  const c = (extra = {}) => ({ config: { cache: { ttl: '1m', ...extra } } })
  app.get('/items/:id', c(), (req, reply) => send(reply, h.item(req.params.id, req.query.q)))
  app.get('/slow', c(), async (req, reply) => send(reply, await h.slow()))
  app.get('/nostore', c(), (req, reply) => send(reply, h.nostore()))
  app.get('/cookie', c(), (req, reply) => send(reply, h.cookie()))
  app.get('/missing', c(), (req, reply) => send(reply, h.missing()))
  app.get('/boom', c(), async () => h.boom())
  app.get('/me', c({ keyBy: (req) => req.headers.authorization }), (req, reply) => send(reply, h.me(req.headers.authorization)))
  app.get('/lang', c({ vary: ['Accept-Language'] }), (req, reply) => send(reply, h.lang(req.headers['accept-language'])))
  app.get('/flaky', c({ ttl: 30, staleIfError: '1m' }), (req, reply) => send(reply, h.flaky()))
  app.post('/items/:id', c(), async () => ({ posted: true }))
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { port: app.server.address().port, close: () => app.close() }
}

function gateFor() {
  let open
  const promise = new Promise((r) => {
    open = r
  })
  return { promise, open }
}

for (const [framework, make] of [['express', expressApp], ['fastify', fastifyApp]]) {
  for (const [where, cfg] of [['l1', {}], ['redis', { redis: REDIS_URL }]]) {
    const name = `${framework} (${where})`
    let app
    let counts
    let gate
    let cache

    test(`${name}: MISS then HIT, the handler's ETag or a strong one from the body, 304`, async () => {
      counts = {}
      gate = gateFor()
      cache = new Cache({ namespace: unique('http'), opTimeout: 5000, ...cfg })
      app = await make(cache, counts, gate)
      const a = await request(app.port, '/items/1?q=x')
      assert.equal(a.status, 200)
      assert.equal(a.headers['x-cache'], 'MISS')
      assert.deepEqual(JSON.parse(a.body), { id: '1', q: 'x', n: 1 })
      const b = await request(app.port, '/items/1?q=x')
      assert.equal(b.headers['x-cache'], 'HIT')
      assert.equal(b.body, a.body)
      assert.match(a.headers['content-type'], /application\/json/)
      // Express sends its own (weak) ETag, which the cache keeps; Fastify
      // sends none, so the cache's: from the body alone (the same in every
      // process and in Python).
      const etag =
        framework === 'express'
          ? `W/"${a.body.length.toString(16)}-${crypto.createHash('sha1').update(a.body).digest('base64').slice(0, 27)}"`
          : `"${crypto.createHash('sha256').update(a.body).digest('hex').slice(0, 32)}"`
      assert.equal(a.headers.etag, etag)
      assert.equal(b.headers.etag, etag)
      assert.match(b.headers['cache-control'], /^public, max-age=\d+$/)
      const nm = await request(app.port, '/items/1?q=x', { 'if-none-match': etag })
      assert.equal(nm.status, 304)
      assert.equal(nm.body, '')
      assert.equal((await request(app.port, '/items/1?q=y')).headers['x-cache'], 'MISS', 'query is part of the key')
      assert.equal(counts.item, 2)
      assert.deepEqual(JSON.parse((await request(app.port, '/items/1', {}, 'POST')).body), { posted: true })
    })

    test(`${name}: stale-if-error serves the previous response instead of a 5xx`, async () => {
      const first = await request(app.port, '/flaky')
      assert.equal(first.status, 200)
      assert.deepEqual(JSON.parse(first.body), { n: 1 })
      await new Promise((r) => setTimeout(r, 40)) // past the 30 ms TTL, within the minute of grace
      counts.failing = true
      const failed = await request(app.port, '/flaky')
      assert.equal(failed.status, 200, 'the stale response, not the 503')
      assert.equal(failed.headers['x-cache'], 'STALE')
      assert.deepEqual(JSON.parse(failed.body), { n: 1 })
      // Throttled: the failing backend is not called again for a while.
      const again = await request(app.port, '/flaky')
      assert.deepEqual(JSON.parse(again.body), { n: 1 })
      assert.equal(counts.down, 1)
      assert.equal(cache.stats().fail_safe_served, 1)
    })

    test(`${name}: concurrent misses run the handler once`, async () => {
      const pending = Array.from({ length: 20 }, () => request(app.port, '/slow'))
      while (!counts.slow) await new Promise((r) => setImmediate(r))
      // Let the other 19 requests reach the server and coalesce.
      await new Promise((r) => setTimeout(r, 50))
      gate.open()
      const all = await Promise.all(pending)
      assert.ok(all.every((r) => r.status === 200 && JSON.parse(r.body).v === 'slow'))
      assert.equal(counts.slow, 1)
    })

    test(`${name}: responses that may not be stored are never stored or shared`, async () => {
      for (const path of ['/nostore', '/cookie', '/missing']) {
        const a = await request(app.port, path)
        const b = await request(app.port, path)
        assert.equal(a.headers['x-cache'], 'BYPASS', path)
        assert.equal(b.headers['x-cache'], 'BYPASS', path)
      }
      assert.deepEqual([counts.nostore, counts.cookie, counts.missing], [2, 2, 2])
      assert.equal((await request(app.port, '/missing')).status, 404)
      assert.equal((await request(app.port, '/boom')).status, 500)
      assert.equal((await request(app.port, '/boom')).status, 500)
      assert.equal(counts.boom, 2, 'a failing handler is not cached')
    })

    test(`${name}: a client's Cache-Control cannot make the handler run (ignored by default)`, async () => {
      const before = counts.item
      await request(app.port, '/items/5')
      assert.equal((await request(app.port, '/items/5', { 'cache-control': 'no-store' })).headers['x-cache'], 'HIT')
      assert.equal((await request(app.port, '/items/5', { 'cache-control': 'no-cache' })).headers['x-cache'], 'HIT')
      assert.equal(counts.item - before, 1)
    })

    test(`${name}: credentialed requests never get a shared entry`, async () => {
      await request(app.port, '/items/9')
      assert.equal((await request(app.port, '/items/9', { authorization: 'Bearer alice' })).headers['x-cache'], 'BYPASS')
      assert.equal((await request(app.port, '/items/9', { cookie: 'theme=dark; sessionid=abc' })).headers['x-cache'], 'BYPASS')
      const alice = await request(app.port, '/me', { authorization: 'alice' })
      const bob = await request(app.port, '/me', { authorization: 'bob' })
      assert.equal(JSON.parse(alice.body).user, 'alice')
      assert.equal(JSON.parse(bob.body).user, 'bob')
      const again = await request(app.port, '/me', { authorization: 'alice' })
      assert.equal(again.headers['x-cache'], 'HIT')
      assert.equal(JSON.parse(again.body).user, 'alice')
      assert.match(again.headers['cache-control'], /^private/)
      assert.match(again.headers.vary, /authorization/)
      assert.equal(counts.me, 2)
    })

    test(`${name}: Vary splits entries`, async () => {
      const fr = await request(app.port, '/lang', { 'accept-language': 'fr' })
      const de = await request(app.port, '/lang', { 'accept-language': 'de' })
      assert.equal(JSON.parse(fr.body).lang, 'fr')
      assert.equal(JSON.parse(de.body).lang, 'de')
      assert.equal((await request(app.port, '/lang', { 'accept-language': 'fr' })).headers['x-cache'], 'HIT')
      assert.equal(fr.headers.vary, 'accept-language')
      assert.equal(counts.lang, 2)
      await app.close()
      await cache.close()
    })
  }
}

test('a cached response is served from L1 without the native lookup, and from Redis through one', async () => {
  const { NativeCache } = require('../../node/binding.js')
  const namespace = unique('http-fast')
  // Two "processes": the second one's L1 (different options: its own) does
  // not hold what the first one stored.
  const caches = [
    new Cache({ namespace, redis: REDIS_URL }),
    new Cache({ namespace, redis: REDIS_URL, l1: { maxBytes: 3 << 20 } }),
  ]
  const counts = [{}, {}]
  const apps = []
  const lookup = NativeCache.prototype.lookup
  let lookups = 0
  NativeCache.prototype.lookup = function (...args) {
    lookups++
    return lookup.apply(this, args)
  }
  try {
    for (const [i, c] of caches.entries()) apps.push(await expressApp(c, counts[i], gateFor()))
    // Both apps behind one Host, as behind a load balancer (it is part of the key).
    const host = { host: 'app.test' }
    const first = await request(apps[0].port, '/items/1', host)
    assert.equal(first.headers['x-cache'], 'MISS')
    const before = [caches[0].stats(), caches[1].stats()]
    const n = lookups
    const loaded = counts[1].item
    const hit = await request(apps[0].port, '/items/1', host)
    assert.equal(hit.headers['x-cache'], 'HIT')
    assert.equal(hit.body, first.body)
    assert.equal(caches[0].stats().l1_hits - before[0].l1_hits, 1)
    assert.equal(lookups, n, 'the L1 hit did not go through the native lookup')
    const other = await request(apps[1].port, '/items/1', host)
    assert.equal(other.headers['x-cache'], 'HIT')
    assert.equal(other.body, first.body)
    assert.equal(caches[1].stats().l2_hits - before[1].l2_hits, 1)
    assert.equal(lookups, n + 1, 'the Redis hit went through one native lookup')
    assert.equal(counts[0].item, 1)
    assert.equal(counts[1].item, loaded, 'the second app served the response the first one stored')
  } finally {
    NativeCache.prototype.lookup = lookup
    for (const a of apps) await a.close()
    for (const c of caches) c.close()
  }
})

test('a cookie set as the headers go out (session middleware) revokes the stored response', async () => {
  const cache = new Cache({ namespace: unique('http-cookie'), redis: REDIS_URL })
  const revoked = new Promise((resolve) => cache.on('error', (e) => /Set-Cookie went out/.test(e.message) && resolve()))
  const app = express()
  let sessions = 0
  // What express-session (on-headers) does: Set-Cookie added in writeHead.
  app.use((req, res, next) => {
    if (req.headers['x-new-session']) {
      const writeHead = res.writeHead
      res.writeHead = function (...args) {
        res.setHeader('set-cookie', `sid=${++sessions}`)
        return writeHead.apply(this, args)
      }
    }
    next()
  })
  let runs = 0
  app.get('/page', cached({ cache, ttl: '1m' }), (req, res) => res.json({ csrf: `token-${++runs}` }))
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s))
  })
  const port = server.address().port
  try {
    const first = await request(port, '/page', { 'x-new-session': '1' })
    assert.equal(first.headers['set-cookie'][0], 'sid=1')
    await revoked
    const second = await request(port, '/page')
    assert.equal(second.headers['x-cache'], 'MISS', 'the response that set a cookie was not kept')
    assert.equal(JSON.parse(second.body).csrf, 'token-2')
  } finally {
    await new Promise((r) => server.close(r))
    cache.close()
  }
})

test('keyBy must name a principal: an object is refused, null bypasses', async () => {
  const { rule, begin } = require('../../node/http.js')
  const cache = new Cache({ namespace: unique('http-keyby') })
  try {
    const req = (keyBy) => begin(rule({ cache, keyBy }), { method: 'GET', path: '/me', query: [], headers: { authorization: 'x' }, raw: {}, refresh: async () => {} })
    await assert.rejects(req(() => ({ id: 1 })), (e) => e.code === 'E_INVALID_VALUE' && /keyBy must return/.test(e.message))
    await assert.rejects(req(() => ''), (e) => e.code === 'E_INVALID_VALUE')
    const pass = await req(() => null)
    assert.deepEqual(pass.pass, ['x-cache', 'BYPASS', 'cache-status', 'stratacache; fwd=bypass; detail=private'])
  } finally {
    cache.close()
  }
})

test('a closed cache is out of the way: requests run uncached, an unsafe one answers its own response', async () => {
  for (const framework of ['express', 'fastify']) {
    const cache = new Cache({ namespace: unique('http-closed') })
    let posts = 0
    let gets = 0
    let port
    let stop
    if (framework === 'express') {
      const app = express()
      app.use(cached({ cache, ttl: '1m' }))
      app.get('/orders', (req, res) => res.json({ gets: ++gets }))
      app.post('/orders', (req, res) => res.json({ posts: ++posts }))
      const server = await new Promise((resolve) => {
        const s = app.listen(0, '127.0.0.1', () => resolve(s))
      })
      port = server.address().port
      stop = () => new Promise((r) => server.close(r))
    } else {
      const app = Fastify()
      await app.register(stratacacheFastify, { cache, ttl: '1m' })
      app.get('/orders', { config: { cache: {} } }, async () => ({ gets: ++gets }))
      app.post('/orders', async () => ({ posts: ++posts }))
      await app.listen({ port: 0, host: '127.0.0.1' })
      port = app.server.address().port
      stop = () => app.close()
    }
    assert.equal((await request(port, '/orders')).headers['x-cache'], 'MISS', framework)
    assert.equal((await request(port, '/orders')).headers['x-cache'], 'HIT', framework)
    await cache.close()
    const post = await request(port, '/orders', {}, 'POST')
    assert.equal(post.status, 200, `${framework}: ${post.body}`)
    assert.deepEqual(JSON.parse(post.body), { posts: 1 })
    const get = await request(port, '/orders')
    assert.equal(get.status, 200, `${framework}: ${get.body}`)
    assert.deepEqual(JSON.parse(get.body), { gets: 2 }, `${framework}: the handler runs, nothing served from the closed cache`)
    assert.equal(get.headers['x-cache'], undefined)
    await stop()
  }
})
