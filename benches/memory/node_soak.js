'use strict'
// The L1 memory soak's Node workload (run by run.py; protocol in
// crates/core/examples/l1_memory.rs): `node node_soak.js <writes> <size>`.
// A `Cache` with L1 only (64 MiB bound, defaults otherwise); values are
// strings of the given size (JSON-encoded, as users' values are). Prints
// `sample <writes done> <RSS growth bytes> <L1 entries> <L1 bytes> <V8
// heap growth bytes>` twenty times (the last: how much of the RSS growth
// is V8's own heap, the workload's strings, rather than L1). Awaits every
// call, so the event loop turns as a server's would. With a third argument
// `control`, the same loop runs against a cache that keeps nothing: what
// the process grows by for this workload without any cache. Run with
// --expose-gc, it last prints `after-gc <RSS growth> <V8 heap in use
// growth>` after a full collection.
const { Cache } = require('../../node')

// Keeps nothing; async as the real cache's calls are.
class Control {
  async get () { return undefined }
  async set () {}
  stats () { return { l1_entries: 0, l1_bytes: 0 } }
  async close () {}
}

const BOUND = 64 * 1024 * 1024
const SAMPLES = 20
// Turns of the loop run against `Control` before the baseline (below).
const WARM = 1_000_000

function sizeOf (fixed, i) {
  if (fixed !== null) return fixed
  const u = (i * 0.6180339887498949) % 1
  return Math.floor(64 * 160 ** u)
}

async function main () {
  const writes = Number(process.argv[2])
  const fixed = process.argv[3] === 'mixed' ? null : Number(process.argv[3])
  const cache = process.argv[4] === 'control'
    ? new Control()
    : new Cache({ namespace: 'soak', l1: { maxBytes: BOUND } })
  // After the cache exists and has served a first call (which starts what
  // the native side makes on first use, as the Python soak does): what
  // grows from here is L1's.
  await cache.get('warm-up')
  // And after the loop itself has run against a cache that keeps nothing:
  // V8 grows its young generation to its working size (32 MiB on Node 20)
  // within the first ~500,000 turns of any loop that allocates this fast,
  // with or without a cache, as a server's does while it serves. Measured
  // from before that, the no-cache control grew 0.63-0.65x the bound.
  const filler = 'v'.repeat(10 << 10)
  const idle = new Control()
  for (let i = 0; i < WARM; i++) {
    await idle.set(`warm:${i}`, filler.slice(0, sizeOf(fixed, i)))
    await idle.get(`warm:${Math.max(0, i - (i * 7) % 64)}`)
  }
  // run.py passes --expose-gc: start from a collected heap.
  if (global.gc) global.gc()
  const before = process.memoryUsage.rss()
  const usedBefore = process.memoryUsage().heapUsed
  const heapBefore = process.memoryUsage().heapTotal
  const every = Math.max(1, Math.floor(writes / SAMPLES))
  for (let i = 0; i < writes; i++) {
    await cache.set(`key:${i}`, filler.slice(0, sizeOf(fixed, i)))
    await cache.get(`key:${Math.max(0, i - (i * 7) % 64)}`)
    if ((i + 1) % every === 0) {
      const s = cache.stats()
      const m = process.memoryUsage()
      console.log(`sample ${i + 1} ${m.rss - before} ${s.l1_entries} ${s.l1_bytes} ${m.heapTotal - heapBefore}`)
    }
  }
  // After a full collection: what is still resident once V8 has let go of
  // the loop's garbage (its heap keeps the pages it reserved).
  if (global.gc) {
    global.gc()
    const m = process.memoryUsage()
    console.log(`after-gc ${m.rss - before} ${m.heapUsed - usedBefore}`)
  }
  await cache.close()
}

main().catch((e) => { console.error(e); process.exit(1) })
