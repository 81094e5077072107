'use strict'
// `make demo`: the embedded default (in-process L1, no Redis) in a real web
// app. An Express route whose handler takes 50 ms (a slow database query)
// is hit by 2,000 concurrent requests on a cold key, then by a second burst.
// Prints handler calls, the cache's hit ratio and request latency.
const http = require('node:http')
const express = require('express')
const { Cache } = require('../node/index.js')
const { cached } = require('../node/express.js')

const REQUESTS = 2000

async function main() {
  const cache = new Cache({ namespace: 'demo' }) // no `redis`: in-process only
  let handlerCalls = 0
  const app = express()
  app.get('/products/:id', cached({ cache, ttl: '1m' }), async (req, res) => {
    handlerCalls++
    await new Promise((r) => setTimeout(r, 50)) // the "database"
    res.json({ id: Number(req.params.id), name: 'Espresso machine', price: 499 })
  })
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s))
  })
  const port = server.address().port
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 })
  const get = () =>
    new Promise((resolve, reject) => {
      const t0 = process.hrtime.bigint()
      http
        .get({ host: '127.0.0.1', port, path: '/products/42', agent }, (res) => {
          res.resume()
          res.on('end', () => resolve({ ms: Number(process.hrtime.bigint() - t0) / 1e6, xcache: res.headers['x-cache'], status: res.statusCode }))
        })
        .on('error', reject)
    })
  const pct = (xs, p) => xs[Math.min(xs.length - 1, Math.floor(xs.length * p))]

  console.log(`stratacache demo: Express + the embedded in-process cache, ${REQUESTS} concurrent requests per burst, 50 ms handler\n`)
  for (const label of ['burst 1 (cold key)', 'burst 2 (warm key)']) {
    const before = handlerCalls
    const results = await Promise.all(Array.from({ length: REQUESTS }, get))
    const lat = results.map((r) => r.ms).sort((a, b) => a - b)
    const states = results.reduce((m, r) => ((m[r.xcache] = (m[r.xcache] || 0) + 1), m), {})
    if (!results.every((r) => r.status === 200)) throw new Error('a request failed')
    console.log(
      `${label}: handler calls ${String(handlerCalls - before).padStart(4)}   p50 ${pct(lat, 0.5).toFixed(1)} ms   p99 ${pct(lat, 0.99).toFixed(1)} ms   X-Cache ${JSON.stringify(states)}`,
    )
  }
  const s = cache.stats()
  const served = s.l1_hits + s.coalesced_waits
  console.log(`\nstats: leads ${s.leads}  coalesced waits ${s.coalesced_waits}  L1 hits ${s.l1_hits}  hit ratio ${((100 * served) / (2 * REQUESTS)).toFixed(2)}%`)
  console.log(`without single-flight the cold burst would have run the handler ${REQUESTS} times.`)
  agent.destroy()
  server.close()
  await cache.close()
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
