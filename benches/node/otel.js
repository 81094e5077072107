'use strict'
// What tracing costs on Node's L1-hit path (make bench-otel runs it after
// the Python rows): `cache.get` of a 10-field user object from L1, median
// of 7 runs of 200,000 gets, every row in one process.
//   node benches/node/otel.js
//
// Rows: the method before tracing was installed (the baseline); the
// shipped method with no diagnostics_channel subscriber; with a
// TracingChannel subscriber (what an APM agent attaches); and
// `stratacache/otel`'s instrument() with the SDK's tracer provider
// recording every span (no exporter).

const dc = require('node:diagnostics_channel')
const { Cache } = require('../../node/index.js')
const { untraced } = require('../../node/channels.js')
const { instrument } = require('../../node/otel.js')

const USER = {
  id: 42,
  name: 'Ada Lovelace',
  email: 'ada@example.com',
  active: true,
  score: 98.5,
  tags: ['alpha', 'beta', 'gamma'],
  created: '2026-01-02T03:04:05Z',
  country: 'GB',
  plan: 'pro',
  visits: 1234,
}
const N = 200_000
const RUNS = 7

async function perGet(get) {
  const times = []
  for (let r = 0; r < RUNS; r++) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < N; i++) await get()
    times.push(Number(process.hrtime.bigint() - t0) / N)
  }
  times.sort((a, b) => a - b)
  return times[RUNS >> 1]
}

async function main() {
  const cache = new Cache({ namespace: 'bench-otel' })
  await cache.set('user', USER, '1h')
  const rows = []
  const base = untraced.get
  const before = () => base.call(cache, 'user')
  const shipped = () => cache.get('user')
  // Warmed up first, then each measured twice, alternating (the better of two).
  await perGet(before)
  await perGet(shipped)
  const [b1, s1, b2, s2] = [await perGet(before), await perGet(shipped), await perGet(before), await perGet(shipped)]
  rows.push(['before tracing (the untraced method)', Math.min(b1, b2)])
  rows.push(['shipped: no diagnostics_channel subscriber', Math.min(s1, s2)])
  const ch = dc.tracingChannel('stratacache:get')
  const handlers = { start() {}, end() {}, asyncStart() {}, asyncEnd() {}, error() {} }
  ch.subscribe(handlers)
  rows.push(['a TracingChannel subscriber (empty handlers)', await perGet(() => cache.get('user'))])
  ch.unsubscribe(handlers)
  const { BasicTracerProvider } = require('@opentelemetry/sdk-trace-base')
  const traced = new Cache({ namespace: 'bench-otel' })
  instrument(traced, { tracerProvider: new BasicTracerProvider() })
  rows.push(['instrument(), SDK tracer provider recording every span', await perGet(() => traced.get('user'))])
  console.log(`Node ${process.version}, L1 hit of a 10-field object, median of ${RUNS} x ${N.toLocaleString()} gets`)
  console.log('| row | per get | vs before tracing |')
  console.log('|---|---|---|')
  for (const [name, ns] of rows) console.log(`| ${name} | ${(ns / 1000).toFixed(2)} µs | ${(ns / rows[0][1]).toFixed(2)}× |`)
  await cache.close()
  await traced.close()
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
