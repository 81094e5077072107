'use strict'
// Edge purges from Node: the `edgePurge` option (camelCase fields) reaches
// the core, and an invalidation arrives at a real local HTTP endpoint (a
// webhook) once, signed. Each vendor's request shape is checked in
// crates/core/tests/purge.rs; a real Varnish in tests/http/test_varnish.py.

const test = require('node:test')
const assert = require('node:assert/strict')
const http = require('node:http')
const crypto = require('node:crypto')
const { once } = require('node:events')
const { Cache, ConfigError } = require('../../node/index.js')
const { unique, until } = require('./helpers.js')

const REDIS = process.env.REDIS_URL || 'redis://127.0.0.1:6379'

async function hook() {
  const got = []
  const server = http.createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      got.push({ headers: req.headers, body: Buffer.concat(chunks) })
      res.end()
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { got, server, url: `http://127.0.0.1:${server.address().port}/purge` }
}

test('an invalidation reaches the webhook once, signed', async () => {
  const h = await hook()
  try {
    const namespace = unique('edge-node')
    const edgePurge = [{ kind: 'webhook', url: h.url, secret: 's3cret', lingerMs: 0, maxAttempts: 2 }]
    const a = new Cache({ redis: REDIS, namespace, edgePurge })
    const b = new Cache({ redis: REDIS, namespace, edgePurge, l1: { maxBytes: 1 << 20 } })
    await b.get('bus-probe') // b subscribes to the bus: it hears of a's invalidation
    await until('b subscribed', () => b.stats().bus_connects > 0)
    await a.invalidateTags(['product:7'])
    await until('b heard of it', () => b.stats().bus_received > 0)
    assert.equal(await a.flushEdgePurges('10s'), true)
    assert.equal(await b.flushEdgePurges(10_000), true)
    assert.equal(h.got.length, 1)
    const { headers, body } = h.got[0]
    assert.deepEqual(JSON.parse(body), { namespace, tags: ['product:7', 'stratacache-overflow'], soft: false })
    const want = 'sha256=' + crypto.createHmac('sha256', 's3cret').update(body).digest('hex')
    assert.equal(headers['x-stratacache-signature'], want)
    const s = a.stats()
    assert.deepEqual([s.edge_purges, s.edge_purge_tags, s.edge_purge_pending], [1, 2, 0])
    assert.equal(b.stats().edge_purges, 0)
    await a.close()
    await b.close()
  } finally {
    h.server.close()
  }
})

test('bad edges are ConfigErrors naming the field, never a secret', () => {
  const cases = [
    [[{ kind: 'fastly', token: 'sekrit' }], 'edge_purge[0].service_id'],
    [[{ kind: 'cloudflare', zoneId: 'z', token: 't', soft: true }], 'edge_purge[0].soft'],
    [[{ kind: 'varnish', url: 'http://v/', lingrMs: 1 }], 'did you mean "linger_ms"'],
    ['http://varnish/', 'edgePurge must be an array'],
    [[null], 'each edge must be an object'],
  ]
  for (const [edgePurge, names] of cases) {
    assert.throws(
      () => new Cache({ edgePurge }),
      (e) => e instanceof ConfigError && e.code === 'E_CONFIG' && e.message.includes(names) && !e.message.includes('sekrit'),
      names,
    )
  }
})
