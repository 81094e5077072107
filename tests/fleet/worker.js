'use strict'
// One Node process of the fleet tests (see test_fleet.py): the real npm
// package against shared Redis. Usage: node worker.js CONFIG_JSON.
// Prints one JSON line with its results.
const { Cache } = require('../../node/index.js')

async function main() {
  const cfg = JSON.parse(process.argv[2])
  const where = cfg.redis ? { redis: cfg.redis } : { cluster: cfg.cluster }
  const cache = new Cache({ namespace: cfg.ns, ...where })
  const ctl = new Cache({ namespace: `${cfg.ns}-ctl`, l1: false, ...where })
  const factory = async () => {
    await ctl.incr('calls')
    await new Promise((r) => setTimeout(r, (cfg.load_s ?? 0.05) * 1000)) // the origin's latency
    return { v: 'loaded', by: cfg.name }
  }
  await ctl.incr('ready')
  while ((await ctl.get('go')) === undefined) await new Promise((r) => setTimeout(r, 1))
  const before = await cache.stats()
  const calls = Array.from({ length: cfg.calls }, () => cache.getOrSet({ key: cfg.key, factory, ttl: 60_000 }))
  const settled = await Promise.allSettled(calls)
  const after = await cache.stats()
  const values = new Set()
  const errors = []
  for (const s of settled) {
    if (s.status === 'fulfilled') values.add(JSON.stringify(sortKeys(s.value)))
    else errors.push(String(s.reason))
  }
  const stats = {}
  for (const [k, v] of Object.entries(after)) if (typeof v === 'number') stats[k] = v - (before[k] ?? 0)
  process.stdout.write(`${JSON.stringify({ values: [...values].sort(), n: settled.length, errors, stats })}\n`)
  await cache.close()
  await ctl.close()
}

function sortKeys(v) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return v
  return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]))
}

main().catch((e) => {
  process.stderr.write(`${e.stack}\n`)
  process.exit(1)
})
