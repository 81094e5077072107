'use strict'
// A Node observer of the coherence test (test_coherence.py): holds two
// entries in its L1, then reports how long after each acknowledged change
// (a delete, a tag invalidation) its reads stopped returning the old value.
// Usage: node observer.js CONFIG_JSON. Prints one JSON line.
const { Cache } = require('../../node/index.js')

async function main() {
  const cfg = JSON.parse(process.argv[2])
  const where = cfg.redis ? { redis: cfg.redis } : { cluster: cfg.cluster }
  const cache = new Cache({ namespace: cfg.ns, ...where })
  const ctl = new Cache({ namespace: `${cfg.ns}-ctl`, l1: false, ...where })
  const out = {}
  for (const key of ['k', 'tagged']) {
    for (;;) {
      const before = cache.stats().l1_hits
      if ((await cache.get(key)) === undefined) throw new Error(`${key} missing`)
      if (cache.stats().l1_hits > before) break
    }
  }
  await ctl.incr('ready')
  for (const [phase, key] of [[1, 'k'], [2, 'tagged']]) {
    while (((await ctl.get('phase')) || 0) < phase) await new Promise((r) => setTimeout(r, 1))
    const changedAt = await ctl.get(`changed_at_${phase}`)
    const deadline = Date.now() + 10_000
    out[key] = null
    while (Date.now() < deadline) {
      if ((await cache.get(key)) === undefined) {
        out[key] = Date.now() - changedAt
        break
      }
    }
    await ctl.incr(`done_${phase}`)
  }
  process.stdout.write(`${JSON.stringify(out)}\n`)
  await cache.close()
  await ctl.close()
}

main().catch((e) => {
  process.stderr.write(`${e.stack}\n`)
  process.exit(1)
})
