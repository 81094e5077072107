'use strict'
// `make bench-node`: stratacache beside its Node peers in one run, reported
// as ratios (docs/benchmarks.md). Not a test: nothing here asserts a speed.
const { Cache } = require('../../node/index.js')
const { BentoCache, bentostore } = require('bentocache')
const { memoryDriver } = require('bentocache/drivers/memory')
const { redisDriver } = require('bentocache/drivers/redis')
const KeyvRedis = require('@keyv/redis').default
const { createCache } = require('cache-manager')
const { Keyv } = require('keyv')
const { LRUCache } = require('lru-cache')
const Redis = require('ioredis')

const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379'
const { hostname: REDIS_HOST, port: REDIS_PORT_TEXT } = new URL(REDIS_URL)
const REDIS_PORT = Number(REDIS_PORT_TEXT || 6379)
const RUN = Math.random().toString(16).slice(2, 10)

// The old benchmark value: one long string (kept as one extra row).
function value(size) {
  return { id: 42, payload: 'x'.repeat(size) }
}

// Values shaped like what API servers cache (docs/benchmarks.md): a
// 10-field user (~200 B of JSON) and a page of 8 users plus 9,000
// characters of HTML (~10 KB).
function user(i = 42) {
  return {
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
  }
}

function page() {
  return { page: 1, total: 8, items: Array.from({ length: 8 }, (_, i) => user(i)), html: `<p>${'x'.repeat(8993)}</p>` }
}

const PAYLOADS = [
  ['user', user()],
  ['page', page()],
  ['old payload (one 200-char string)', value(200)],
]

// Best of `repeat` runs of `n` sequential awaited calls; µs per call.
async function perOp(fn, n, repeat = 5) {
  for (let i = 0; i < Math.min(n, 1000); i++) await fn()
  let best = Infinity
  for (let r = 0; r < repeat; r++) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) await fn()
    const us = Number(process.hrtime.bigint() - t0) / 1e3 / n
    best = Math.min(best, us)
  }
  return best
}

// A round runs `n` sequential awaited calls of each contender in turn, so
// the machine's state (a round trip on this VM takes ~20 µs while its vCPUs
// stay awake and ~100 µs once they halt between calls) is shared fairly;
// each round starts one contender further on, so none always follows the
// same neighbour (and pays for the garbage it left); best and median per
// contender over `rounds`.
async function interleaved(contenders, rounds, n) {
  const samples = contenders.map(() => [])
  for (const [, fn] of contenders) for (let i = 0; i < 500; i++) await fn()
  for (let r = 0; r < rounds; r++) {
    for (let j = 0; j < contenders.length; j++) {
      const i = (r + j) % contenders.length
      const fn = contenders[i][1]
      const t0 = process.hrtime.bigint()
      for (let k = 0; k < n; k++) await fn()
      samples[i].push(Number(process.hrtime.bigint() - t0) / 1e3 / n)
    }
  }
  const pick = (f) => contenders.map(([name], i) => [name, f(samples[i].slice().sort((a, b) => a - b))])
  return { best: pick((s) => s[0]), median: pick((s) => s[s.length >> 1]) }
}

function table(title, rows, base) {
  const ref = rows.find(([n]) => n === base)[1]
  console.log(`\n${title}`)
  for (const [name, us] of rows) {
    console.log(`  ${name.padEnd(44)} ${us.toFixed(2).padStart(9)} µs   ${(us / ref).toFixed(2)}x of ${base}`)
  }
}

async function l1Hits() {
  for (const [name, v] of PAYLOADS) {
    const text = JSON.stringify(v)
    const strata = new Cache({ namespace: `bench-${RUN}-${name.length}` })
    await strata.set('hot', v, '1h')
    // Nothing kept (no memo budget): every hit copies the entry's bytes
    // into a new string before parsing it.
    const unkept = new Cache({ namespace: `bench-unkept-${RUN}-${name.length}`, l1: { memoBytes: 0 } })
    await unkept.set('hot', v, '1h')
    const shared = new Cache({ namespace: `bench-shared-${RUN}-${name.length}`, clone: false })
    await shared.set('hot', v, '1h')
    const bento = new BentoCache({ default: 'mem', stores: { mem: bentostore().useL1Layer(memoryDriver({ maxSize: '64mb' })) } })
    await bento.set({ key: 'hot', value: v, ttl: '1h' })
    const cm = createCache({ stores: [new Keyv()] })
    await cm.set('hot', v, 3_600_000)
    const lru = new LRUCache({ max: 10_000 })
    lru.set('hot', v)
    // Interleaved rounds, medians: a hit's cost over `JSON.parse` is a
    // fraction of a µs, less than this machine drifts between rows run
    // one after the other.
    const { median: rows } = await interleaved(
      [
        ['stratacache get (copy)', () => strata.get('hot')],
        ['stratacache get (copy, l1.memoBytes: 0)', () => unkept.get('hot')],
        ['stratacache get (clone: false, shared)', () => shared.get('hot')],
        ['bentocache memory get (copy)', () => bento.get({ key: 'hot' })],
        ['cache-manager 7 get (Keyv memory)', () => cm.get('hot')],
        ['lru-cache get + structuredClone (copy)', async () => structuredClone(lru.get('hot'))],
        ['lru-cache get (no copy, shared object)', async () => lru.get('hot')],
        ['JSON.parse of the value alone', async () => JSON.parse(text)],
        ['an async function that returns at once', async () => undefined],
      ],
      41,
      text.length > 4096 ? 500 : 5000,
    )
    table(`L1 hit get, ${name} (${text.length} B of JSON; medians of 41 interleaved rounds)`, rows, 'bentocache memory get (copy)')
    const sets = [
      ['stratacache set (L1 only, no Redis)', await perOp(() => strata.set('w', v, '1h'), 50_000)],
      ['bentocache memory set', await perOp(() => bento.set({ key: 'w', value: v, ttl: '1h' }), 50_000)],
      ['cache-manager 7 set (Keyv memory)', await perOp(() => cm.set('w', v, 3_600_000), 50_000)],
    ]
    table(`In-process set, ${name}`, sets, 'bentocache memory set')
    await strata.close()
    await unkept.close()
    await shared.close()
    await bento.disconnectAll()
  }
}

async function l2Hits() {
  const redis = new Redis(REDIS_URL)
  for (const [name, v] of PAYLOADS.slice(0, 2)) {
    const size = name
    const strata = new Cache({ redis: REDIS_URL, namespace: `bench-l2-${RUN}-${size}`, l1: false })
    await strata.set('hot', v, '1h')
    await redis.set(`raw-${RUN}-${size}`, JSON.stringify(v))
    // The peers with their Redis layer only, on the same server.
    const bento = new BentoCache({
      default: 'l2',
      prefix: `bench-l2-bento-${RUN}-${size}`,
      stores: { l2: bentostore().useL2Layer(redisDriver({ connection: { host: REDIS_HOST, port: REDIS_PORT } })) },
    })
    await bento.set({ key: 'hot', value: v, ttl: '1h' })
    const cm = createCache({ stores: [new Keyv({ store: new KeyvRedis(REDIS_URL), namespace: `bench-l2-cm-${RUN}-${size}` })] })
    await cm.set('hot', v, 3_600_000)
    const unused = () => {
      throw new Error('a hit was expected')
    }
    const contenders = [
      ['stratacache get, L1 disabled (decoded)', () => strata.get('hot')],
      ['stratacache getOrSet, L1 disabled (decoded)', () => strata.getOrSet({ key: 'hot', factory: unused })],
      ['bentocache get, Redis layer only', () => bento.get({ key: 'hot' })],
      ['cache-manager 7 get (@keyv/redis)', () => cm.get('hot')],
      ['raw ioredis GET (string, not decoded)', () => redis.get(`raw-${RUN}-${size}`)],
      ['raw ioredis GET + JSON.parse', async () => JSON.parse(await redis.get(`raw-${RUN}-${size}`))],
    ]
    const { best, median } = await interleaved(contenders, 15, 300)
    const writes = [
      ['stratacache set (bus publish included)', () => strata.set('w', v, '1h')],
      ['bentocache set, Redis layer only', () => bento.set({ key: 'w', value: v, ttl: '1h' })],
      ['cache-manager 7 set (@keyv/redis)', () => cm.set('w', v, 3_600_000)],
      ['raw ioredis SET PX (JSON.stringify)', () => redis.set(`raww-${RUN}-${size}`, JSON.stringify(v), 'PX', 3_600_000)],
    ]
    const w = await interleaved(writes, 15, 300)
    table(`Redis set, ${name}: median of 15 rounds`, w.median, 'raw ioredis SET PX (JSON.stringify)')
    table(`L2 hit get, ${name}: best of 15 rounds`, best, 'raw ioredis GET (string, not decoded)')
    table(`L2 hit get, ${name}: median of 15 rounds`, median, 'raw ioredis GET (string, not decoded)')
    await strata.clear()
    await strata.close()
    await bento.clear()
    await bento.disconnectAll()
    await cm.clear()
    await cm.disconnect()
  }
  redis.disconnect()
}

// L2 reads with 1, 16 and 64 in flight, ops/s, over each connection kind
// `make test`'s Redis offers (redis://, unix://, rediss:// when
// scripts/with-redis.sh set them): 1,000 distinct keys read in turn (no
// coalescing), user values, L1 off; raw ioredis on the same connection
// kind is the reference.
async function inFlight() {
  const kinds = [
    ['redis://', REDIS_URL],
    ['unix://', process.env.STRATACACHE_UNIX_URL],
    ['rediss:// (TLS)', process.env.STRATACACHE_TLS_URL],
  ].filter(([, url]) => url)
  const keys = Array.from({ length: 1000 }, (_, i) => `d${i}`)
  const v = user()
  const rate = async (fn, n, ms = 1500) => {
    let done = 0
    let stop = false
    let turn = 0
    const t0 = process.hrtime.bigint()
    setTimeout(() => (stop = true), ms)
    await Promise.all(
      Array.from({ length: n }, async () => {
        while (!stop) {
          await fn(keys[turn++ % keys.length])
          done++
        }
      }),
    )
    return done / (Number(process.hrtime.bigint() - t0) / 1e9)
  }
  // The core's TLS trusts the system's roots and SSL_CERT_FILE: the test
  // CA scripts/with-redis.sh made (without it every TLS read failed, fast).
  if (process.env.STRATACACHE_TLS_CA) process.env.SSL_CERT_FILE = process.env.STRATACACHE_TLS_CA
  // A read that fails is answered by fail-open as a miss: count only hits.
  const hit = async (c, k) => {
    if ((await c.get(k)) === undefined) throw new Error(`inFlight: ${k} was not read back`)
  }
  for (const [kind, url] of kinds) {
    const u = new URL(url)
    const raw =
      u.protocol === 'unix:'
        ? new Redis({ path: u.pathname })
        : new Redis(url, u.protocol === 'rediss:' ? { tls: { rejectUnauthorized: false } } : {})
    const ns = `bench-inflight-${RUN}`
    const strata = new Cache({ redis: url, namespace: ns, l1: false })
    await strata.setMany(keys.map((k) => [k, v]), '1h')
    await raw.mset(Object.fromEntries(keys.map((k) => [`raw-d-${RUN}-${k}`, JSON.stringify(v)])))
    console.log(`\nL2 get throughput, user, 1,000 distinct keys in turn, ${kind}, ops/s (ratio to raw ioredis GET + JSON.parse)`)
    for (const n of [1, 16, 64]) {
      const ref = await rate(async (k) => JSON.parse(await raw.get(`raw-d-${RUN}-${k}`)), n)
      const got = await rate((k) => hit(strata, k), n)
      console.log(`  ${String(n).padStart(2)} in flight: raw ${ref.toFixed(0)}   stratacache ${got.toFixed(0)} (${(got / ref).toFixed(2)}x)`)
    }
    await strata.clear()
    await strata.close()
    await raw.del(keys.map((k) => `raw-d-${RUN}-${k}`))
    raw.disconnect()
  }
}

// getMany of 10 keys from Redis (L1 disabled): one MGET either way.
async function l2Many() {
  const redis = new Redis(REDIS_URL)
  const keys = Array.from({ length: 10 }, (_, i) => `k${i}`)
  const strata = new Cache({ redis: REDIS_URL, namespace: `bench-many-${RUN}`, l1: false })
  const cm = createCache({ stores: [new Keyv({ store: new KeyvRedis(REDIS_URL), namespace: `bench-many-cm-${RUN}` })] })
  await strata.setMany(keys.map((k, i) => [k, user(i)]), '1h')
  await cm.mset(keys.map((key, i) => ({ key, value: user(i), ttl: 3_600_000 })))
  const rawKeys = keys.map((k) => `raw-many-${RUN}-${k}`)
  for (const [i, k] of rawKeys.entries()) await redis.set(k, JSON.stringify(user(i)))
  const contenders = [
    ['stratacache getMany, L1 disabled (decoded)', () => strata.getMany(keys)],
    ['cache-manager 7 mget (@keyv/redis)', () => cm.mget(keys)],
    ['raw ioredis MGET (strings, not decoded)', () => redis.mget(rawKeys)],
    ['raw ioredis MGET + JSON.parse each', async () => (await redis.mget(rawKeys)).map((v) => JSON.parse(v))],
  ]
  const { median } = await interleaved(contenders, 15, 200)
  table('getMany of 10 keys, user values, L1 disabled: median of 15 rounds', median, 'raw ioredis MGET (strings, not decoded)')
  await strata.clear()
  await strata.close()
  await cm.clear()
  await cm.disconnect()
  await redis.del(rawKeys)
  redis.disconnect()
}

// HTTP response caching: a keep-alive client sends sequential GETs to an
// Express and a Fastify app on loopback; the same 200 B JSON route cached
// (a hit from L1, a hit from Redis with L1 disabled) and not cached (the
// handler runs every time). Medians of interleaved rounds.
async function httpHits() {
  const http = require('node:http')
  const express = require('express')
  const Fastify = require('fastify')
  const { cached } = require('../../node/express.js')
  const stratacacheFastify = require('../../node/fastify.js')
  const body = value(200)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const get = (port, path) =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, agent }, (res) => {
        res.resume()
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))))
      })
      req.on('error', reject)
      req.end()
    })
  const l1 = new Cache({ namespace: `bench-http-${RUN}` })
  const l2 = new Cache({ redis: REDIS_URL, namespace: `bench-http-l2-${RUN}`, l1: false })
  const app = express()
  app.get('/plain', (req, res) => res.json(body))
  app.get('/l1', cached({ cache: l1, ttl: '1h' }), (req, res) => res.json(body))
  app.get('/l2', cached({ cache: l2, ttl: '1h' }), (req, res) => res.json(body))
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s))
  })
  const ep = server.address().port
  const fastify = Fastify()
  await fastify.register(stratacacheFastify, { cache: l1 })
  fastify.get('/plain', async () => body)
  fastify.get('/l1', { config: { cache: { ttl: '1h' } } }, async () => body)
  fastify.get('/l2', { config: { cache: { cache: l2, ttl: '1h' } } }, async () => body)
  await fastify.listen({ port: 0, host: '127.0.0.1' })
  const fp = fastify.server.address().port
  const contenders = [
    ['express, not cached (handler runs)', () => get(ep, '/plain')],
    ['express cached, HIT from L1', () => get(ep, '/l1')],
    ['express cached, HIT from Redis (L1 off)', () => get(ep, '/l2')],
    ['fastify, not cached (handler runs)', () => get(fp, '/plain')],
    ['fastify cached, HIT from L1', () => get(fp, '/l1')],
    ['fastify cached, HIT from Redis (L1 off)', () => get(fp, '/l2')],
  ]
  const { median } = await interleaved(contenders, 9, 300)
  table('HTTP GET, 200 B JSON, keep-alive, sequential: median of 9 rounds', median, 'express, not cached (handler runs)')
  agent.destroy()
  await new Promise((r) => server.close(r))
  await fastify.close()
  await l2.clear()
  l1.close()
  l2.close()
}

// Memory of L1 hits in a loop that never yields to the event loop (no
// timer or I/O turn, so nothing that waits for one is released): RSS
// every 200,000 of 1 M awaited `get` hits.
async function hitMemory() {
  const mb = () => (process.memoryUsage().rss / 1048576).toFixed(0)
  for (const [name, v] of [['user', user()], ['page', page()], ['1 KB Buffer (raw)', Buffer.alloc(1024, 1)]]) {
    const c = new Cache({ namespace: `bench-hitmem-${RUN}`, serializer: Buffer.isBuffer(v) ? 'raw' : 'json' })
    await c.set('hot', v, '1h')
    const samples = [mb()]
    for (let i = 1; i <= 1_000_000; i++) {
      if ((await c.get('hot')) === undefined) throw new Error('miss')
      if (i % 200_000 === 0) samples.push(mb())
    }
    console.log(`  L1 hits without yielding, ${name.padEnd(18)} RSS MB: ${samples.join(' -> ')}`)
    await c.close()
  }
}

// How long after its deadline a kept hit is still served: hits of kept
// values read no clock (crates/core/src/watch.rs). In a loop of hits, the
// binding's own judgement every 16th hit ends them; between sparse hits,
// the core's ticker thread does when the deadline passes. Each of 40
// entries (30 ms) is read through a kept handle and through one that asks
// L1 on every hit (short text is not kept): how much later the kept one
// misses than the other, and how many hits it served in between.
async function holdLateness() {
  const ns = `bench-late-${RUN}`
  const kept = new Cache({ namespace: ns, clone: false })
  const asks = new Cache({ namespace: ns })
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
  for (const [row, [name, pause]] of [['hits back to back', 0], ['a hit every ~1 ms', 1]].entries()) {
    const late = []
    let extra = 0
    for (let t = 0; t < 40; t++) {
      const key = `k${row}-${t}`
      await kept.set(key, { v: t }, 30)
      let missed = 0
      for (;;) {
        const a = await kept.get(key)
        const b = await asks.get(key)
        const now = performance.now()
        if (b === undefined && missed === 0) missed = now
        if (a === undefined) {
          late.push(now - (missed || now))
          break
        }
        if (b === undefined) extra++
        if (pause) await sleep(pause)
      }
    }
    late.sort((x, y) => x - y)
    const ms = (q) => late[Math.min(late.length - 1, Math.floor(late.length * q))].toFixed(3)
    console.log(`  kept hits after L1's own miss, ${name.padEnd(18)} median ${ms(0.5)} ms   p95 ${ms(0.95)} ms   max ${ms(1)} ms   hits ${extra} in 40 entries`)
  }
  await kept.close()
  await asks.close()
}

async function stampede() {
  console.log('\nCold key, 1,000 concurrent getOrSet, 50 ms factory')
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
  const run = async (name, call) => {
    let calls = 0
    const factory = async () => {
      calls++
      await sleep(50)
      return value(200)
    }
    const lat = []
    await Promise.all(
      Array.from({ length: 1000 }, async () => {
        const t0 = process.hrtime.bigint()
        await call(factory)
        lat.push(Number(process.hrtime.bigint() - t0) / 1e6)
      }),
    )
    lat.sort((a, b) => a - b)
    console.log(`  ${name.padEnd(44)} factory calls ${String(calls).padStart(4)}   p50 ${lat[499].toFixed(1)} ms   p99 ${lat[989].toFixed(1)} ms`)
  }
  const strata = new Cache({ redis: REDIS_URL, namespace: `bench-cold-${RUN}` })
  await run('stratacache getOrSet (L1 + Redis)', (f) => strata.getOrSet({ key: 'cold', factory: f, ttl: '1m' }))
  const bento = new BentoCache({ default: 'mem', stores: { mem: bentostore().useL1Layer(memoryDriver({ maxSize: '64mb' })) } })
  await run('bentocache getOrSet (memory)', (f) => bento.getOrSet({ key: 'cold', factory: f, ttl: '1m' }))
  const cm = createCache({ stores: [new Keyv()] })
  await run('cache-manager 7 wrap (Keyv memory)', (f) => cm.wrap('cold', f, 60_000))
  await strata.clear()
  await strata.close()
  await bento.disconnectAll()
}

;(async () => {
  console.log(`stratacache ${require('../../package.json').version}, Node ${process.version}, Redis at ${REDIS_URL}`)
  const only = process.argv[2]
  if (!only || only === 'l1') await l1Hits()
  if (!only || only === 'l2') await l2Hits()
  if (!only || only === 'many') await l2Many()
  if (!only || only === 'inflight') await inFlight()
  if (!only || only === 'stampede') await stampede()
  if (!only || only === 'http') await httpHits()
  if (!only || only === 'hitmem') await hitMemory()
  if (!only || only === 'late') await holdLateness()
})().catch((e) => {
  console.error(e)
  process.exit(1)
})
