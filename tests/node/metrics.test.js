'use strict'
// The Prometheus endpoints: metricsText over several caches (the core's
// exposition), and the Express and Fastify handlers serving it, with and
// without a token.

const test = require('node:test')
const assert = require('node:assert/strict')
const { once } = require('node:events')
const express = require('express')
const Fastify = require('fastify')
const { Cache, metricsText, InvalidValueError } = require('../../node/index.js')
const { metricsHandler: expressMetrics } = require('../../node/express.js')
const { metricsHandler: fastifyMetrics } = require('../../node/fastify.js')
const { unique } = require('./helpers.js')

const families = (text) => [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1])

test('several caches: each family once, a sample per namespace', async () => {
  const a = new Cache({ namespace: unique('ma') })
  const b = new Cache({ namespace: unique('mb') })
  await a.set('k', 1)
  await a.get('k')
  const text = metricsText(a, b)
  const names = families(text)
  assert.equal(names.length, new Set(names).size)
  assert.ok(text.includes(`stratacache_l1_hits_total{namespace="${a.namespace}"} 1\n`), text)
  assert.ok(text.includes(`stratacache_l1_hits_total{namespace="${b.namespace}"} 0\n`))
  assert.throws(() => metricsText({}), InvalidValueError)
  await a.close()
  await b.close()
})

async function scrape(port, headers = {}) {
  const r = await fetch(`http://127.0.0.1:${port}/metrics`, { headers })
  return { status: r.status, type: r.headers.get('content-type'), body: await r.text() }
}

test('Express and Fastify handlers, with a token', async () => {
  const cache = new Cache({ namespace: unique('mh') })
  const app = express()
  app.get('/metrics', expressMetrics(cache, { token: 't' }))
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const f = Fastify()
  f.get('/metrics', fastifyMetrics([cache], { token: 't' }))
  await f.listen({ port: 0, host: '127.0.0.1' })
  try {
    for (const port of [server.address().port, f.server.address().port]) {
      assert.equal((await scrape(port)).status, 401)
      assert.equal((await scrape(port, { authorization: 'Bearer x' })).status, 401)
      const ok = await scrape(port, { authorization: 'Bearer t' })
      assert.equal(ok.status, 200)
      assert.ok(ok.type.startsWith('text/plain; version=0.0.4'), ok.type)
      assert.ok(ok.body.includes(`namespace="${cache.namespace}"`))
    }
  } finally {
    server.close()
    await f.close()
    await cache.close()
  }
})
