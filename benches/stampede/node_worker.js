'use strict'
// One Node process of `make bench-stampede` (see run.py). Usage:
// node node_worker.js CONFIG_JSON. Runs `callers` concurrent callers on one
// key, counts factory calls in Redis, prints the callers' latencies as JSON.
const path = require('node:path')

const peers = path.join(__dirname, '..', 'node', 'node_modules')
const need = (m) => require(require.resolve(m, { paths: [peers] }))
const IoRedis = need('ioredis')

const cfg = JSON.parse(process.argv[2])
const r = new IoRedis(cfg.redis)
const CALLS = `${cfg.run}:calls`
const KEY = `${cfg.run}:${cfg.scenario}`
const TTL_MS = cfg.ttl_s * 1000
const sleep = (ms) => new Promise((res) => setTimeout(res, ms))

async function factory() {
  await r.incr(CALLS)
  await sleep(cfg.load_s * 1000) // the origin's latency
  return { v: 'x'.repeat(200), at: Date.now() }
}

async function contender(lib) {
  if (lib === 'stratacache') {
    const { Cache } = require('../../node/index.js')
    const c = new Cache({ redis: cfg.redis, namespace: `st-${cfg.run}` })
    return {
      // Stale-while-revalidate: at expiry the value is served stale at once
      // while one process refreshes it (one load per TTL period).
      get: () => c.getOrSet({ key: KEY, factory, ttl: TTL_MS, allowStale: true, grace: '1m' }),
      close: () => c.close(),
    }
  }
  if (lib === 'bentocache') {
    const { BentoCache, bentostore } = need('bentocache')
    const { memoryDriver } = need('bentocache/drivers/memory')
    const { redisDriver, redisBusDriver } = need('bentocache/drivers/redis')
    const conn = { host: '127.0.0.1', port: Number(new URL(cfg.redis).port || 6379) }
    const bento = new BentoCache({
      default: 'tiered',
      prefix: `bento-${cfg.run}`,
      stores: {
        tiered: bentostore()
          .useL1Layer(memoryDriver({ maxSize: '64mb' }))
          .useL2Layer(redisDriver({ connection: conn }))
          .useBus(redisBusDriver({ connection: conn })),
      },
    })
    return {
      get: () => bento.getOrSet({ key: KEY, factory, ttl: TTL_MS, grace: '1m' }),
      close: () => bento.disconnectAll(),
    }
  }
  if (lib === 'cache-manager') {
    const { createCache } = need('cache-manager')
    const { Keyv } = need('keyv')
    const KeyvRedis = need('@keyv/redis').default
    const store = new Keyv({ store: new KeyvRedis(cfg.redis), namespace: `cm-${cfg.run}` })
    const cm = createCache({ stores: [store] })
    return { get: () => cm.wrap(KEY, factory, TTL_MS), close: () => cm.disconnect() }
  }
  throw new Error(`unknown contender ${lib}`)
}

async function main() {
  const c = await contender(cfg.lib)
  if (cfg.scenario === 'hot') await c.get() // warm-up: the first load is not the scenario
  await r.incr(`${cfg.run}:ready`)
  while (!(await r.exists(`${cfg.run}:go`))) await sleep(1)
  const lat = []
  const cold = async () => {
    const t = process.hrtime.bigint()
    await c.get()
    lat.push(Number(process.hrtime.bigint() - t) / 1e9)
  }
  const hot = async () => {
    const end = Date.now() + cfg.duration_s * 1000
    while (Date.now() < end) {
      const t = process.hrtime.bigint()
      await c.get()
      lat.push(Number(process.hrtime.bigint() - t) / 1e9)
      await sleep(1) // the rest of the request's work
    }
  }
  await Promise.all(Array.from({ length: cfg.callers }, cfg.scenario === 'cold' ? cold : hot))
  process.stdout.write(`${JSON.stringify({ lat })}\n`)
  await c.close()
  r.disconnect()
}

main().catch((e) => {
  process.stderr.write(`${e.stack}\n`)
  process.exit(1)
})
