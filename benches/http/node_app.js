'use strict'
// One server process for `make bench-http`: Express or Fastify, with the
// same ~1 KB JSON body on four routes: not cached (/plain), stratacache
// with its L1 (/l1), stratacache with L1 off so every hit reads Redis
// (/l2), and the framework's in-memory peer middleware (/peer, and /peer2
// for Express's second peer).
//
//   node node_app.js express|fastify PORT NAMESPACE REDIS_URL
const path = require('node:path')
const root = path.resolve(__dirname, '../..')
const peers = path.join(root, 'benches/node/node_modules')
const need = (name) => require(require.resolve(name, { paths: [peers, root] }))
const { Cache } = require(path.join(root, 'node/index.js'))

const [framework, portText, ns, redisUrl] = process.argv.slice(2)
const port = Number(portText)

// ~1 KB of JSON shaped like an API answer: four users.
const BODY = {
  page: 1,
  items: Array.from({ length: 4 }, (_, i) => ({
    id: i,
    name: `User ${i}`,
    email: `user${i}@example.com`,
    active: true,
    score: 97.5,
    tags: ['alpha', 'beta', 'gamma'],
    created: '2026-01-02T03:04:05Z',
    country: 'GB',
    plan: 'pro',
    visits: 1234,
  })),
}

// How many times each route's handler ran: 1 for a route that caches.
const calls = { plain: 0, l1: 0, l2: 0, peer: 0, peer2: 0 }
const body = (route) => {
  calls[route]++
  return BODY
}

const l1 = new Cache({ namespace: ns })
const l2 = new Cache({ redis: redisUrl, namespace: `${ns}-l2`, l1: false })

async function express() {
  const app = need('express')()
  const { cached } = require(path.join(root, 'node/express.js'))
  const apicache = need('apicache').options({ defaultDuration: '1 hour' }).middleware
  const routeCache = need('route-cache')
  app.get('/plain', (req, res) => res.json(body('plain')))
  app.get('/l1', cached({ cache: l1, ttl: '1h' }), (req, res) => res.json(body('l1')))
  app.get('/l2', cached({ cache: l2, ttl: '1h' }), (req, res) => res.json(body('l2')))
  app.get('/peer', apicache(), (req, res) => res.json(body('peer')))
  app.get('/peer2', routeCache.cacheSeconds(3600), (req, res) => res.json(body('peer2')))
  app.get('/calls', (req, res) => res.json(calls))
  await new Promise((resolve) => app.listen(port, '127.0.0.1', resolve))
}

async function fastify() {
  const app = need('fastify')()
  await app.register(require(path.join(root, 'node/fastify.js')), { cache: l1 })
  app.get('/plain', async () => body('plain'))
  const BUF = Buffer.from(JSON.stringify(BODY))
  app.get('/buf', async (req, reply) => { reply.header('content-type', 'application/json'); return BUF })
  app.get('/calls', async () => calls)
  app.get('/l1', { config: { cache: { ttl: '1h' } } }, async () => body('l1'))
  app.get('/l2', { config: { cache: { cache: l2, ttl: '1h' } } }, async () => body('l2'))
  // fastify-lcache caches every GET route of the instance it is registered
  // on: give it an instance of its own, mounted under /peer.
  await app.register(async (sub) => {
    await sub.register(need('fastify-lcache'), { ttlInMinutes: 60 })
    sub.get('/', async () => body('peer'))
  }, { prefix: '/peer' })
  await app.listen({ port, host: '127.0.0.1' })
}

;(framework === 'express' ? express() : fastify())
  .then(() => console.log('ready'))
  .catch((e) => {
    console.error(e)
    process.exit(1)
  })
