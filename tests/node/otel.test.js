'use strict'
// stratacache/otel through the OpenTelemetry SDK's in-memory exporter and a
// pull metric reader: spans for reads, writes and read-throughs (the
// factory as a child span), keys only when asked, counters and gauges as
// metrics; no wrappers without a recording provider. Real Redis.

const test = require('node:test')
const assert = require('node:assert/strict')
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base')
const { MeterProvider, MetricReader } = require('@opentelemetry/sdk-metrics')
const { Cache } = require('../../node/index.js')
const { instrument } = require('stratacache/otel')
const { REDIS_URL, unique, until } = require('./helpers.js')

class PullReader extends MetricReader {
  async onForceFlush() {}
  async onShutdown() {}
}

function traced(options = {}) {
  const spans = new InMemorySpanExporter()
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] })
  const reader = new PullReader()
  const meterProvider = new MeterProvider({ readers: [reader] })
  const cache = new Cache({ namespace: unique('otel'), redis: REDIS_URL })
  instrument(cache, { tracerProvider, meterProvider, ...options })
  return { cache, spans, reader, tracerProvider }
}

test('reads, writes and read-throughs as spans', async () => {
  const { cache, spans } = traced()
  await cache.set('k', 1)
  assert.equal(await cache.get('k'), 1)
  assert.equal(await cache.get('absent'), undefined)
  assert.equal(await cache.getOrSet({ key: 't', factory: async () => 'loaded' }), 'loaded')
  assert.equal(await cache.getOrSet({ key: 't', factory: async () => 'again' }), 'loaded')
  assert.deepEqual(await cache.getMany(['k', 'absent']), [1, undefined])
  await cache.invalidateTags(['x'])
  const done = spans.getFinishedSpans()
  assert.deepEqual(
    done.map((s) => s.name),
    ['stratacache.set', 'stratacache.get', 'stratacache.get', 'stratacache.load', 'stratacache.get_or_set', 'stratacache.get_or_set', 'stratacache.getMany', 'stratacache.invalidateTags'],
  )
  const { 'stratacache.tier': tier, ...rest } = done[1].attributes
  assert.deepEqual(rest, { 'stratacache.namespace': cache.namespace, 'stratacache.operation': 'get', 'stratacache.hit': true })
  assert.ok(tier === 'l1' || tier === 'l2', `a hit names its tier: ${tier}`)
  assert.equal(done[2].attributes['stratacache.hit'], false)
  assert.equal(done[4].attributes['stratacache.outcome'], 'loaded')
  assert.equal(done[5].attributes['stratacache.outcome'], 'hit')
  assert.equal(done[6].attributes['stratacache.hit'], 1)
  // The factory's span is a child of its read-through's.
  assert.equal(done[3].parentSpanContext && done[3].parentSpanContext.spanId, done[4].spanContext().spanId)
  assert.ok(done.every((s) => !('stratacache.key' in s.attributes)))
  await cache.close()
})

test('errors are recorded; keys only when asked', async () => {
  const { cache, spans } = traced({ recordKeys: true })
  await assert.rejects(cache.getOrSet({ key: 'boom', factory: async () => { throw new Error('db down') } }), /db down/)
  const s = spans.getFinishedSpans().find((x) => x.name === 'stratacache.get_or_set')
  assert.ok(s)
  assert.equal(s.attributes['stratacache.key'], 'boom')
  assert.equal(s.status.code, 2) // ERROR
  await cache.close()
})

test('counters and gauges as metrics', async () => {
  const { cache, reader } = traced()
  await cache.set('k', 1)
  await cache.get('k')
  await cache.get('k')
  const { resourceMetrics } = await reader.collect()
  /** @type {Record<string, any>} */
  const points = {}
  for (const sm of resourceMetrics.scopeMetrics) for (const m of sm.metrics) points[m.descriptor.name] = m
  const sum = (name) => points[`stratacache.${name}`].dataPoints.reduce((a, p) => a + p.value, 0)
  // Two reads, from L1 or (until the bus is up) from Redis: as stats() says.
  assert.equal(sum('l1_hits') + sum('l2_hits'), 2)
  assert.equal(sum('l1_hits'), cache.stats().l1_hits)
  assert.equal(sum('writes'), 1)
  assert.deepEqual(points['stratacache.writes'].dataPoints[0].attributes, { 'stratacache.namespace': cache.namespace })
  assert.equal(Object.keys(points).length, Object.keys(cache.stats()).length)
  await cache.close()
})

test('no recording provider: the methods stay the cache’s own', async () => {
  const cache = new Cache({ namespace: unique('otel-off') })
  instrument(cache, { meterProvider: new MeterProvider() })
  assert.equal(Object.prototype.hasOwnProperty.call(cache, 'get'), false)
  assert.equal(Object.prototype.hasOwnProperty.call(cache, 'getOrSet'), false)
  await cache.close()
})

test('a recording global provider: wrapped without being passed', async () => {
  const api = require('@opentelemetry/api')
  const spans = new InMemorySpanExporter()
  api.trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }))
  try {
    const cache = new Cache({ namespace: unique('otel-global') })
    instrument(cache, { meterProvider: new MeterProvider() })
    await cache.set('k', 1)
    assert.deepEqual(spans.getFinishedSpans().map((s) => s.name), ['stratacache.set'])
    await cache.close()
  } finally {
    api.trace.disable()
  }
})

test('spans say how reads were served, with diagnostics_channel subscribed too', async () => {
  const dc = require('node:diagnostics_channel')
  const { cache, spans, tracerProvider } = traced()
  const far = new Cache({ namespace: cache.namespace, redis: REDIS_URL, l1: false }) // another process's view: Redis only
  instrument(far, { tracerProvider })
  const sub = { start() {} } // a TracingChannel subscriber between the span wrapper and the call
  dc.tracingChannel('stratacache:get').subscribe(sub)
  dc.tracingChannel('stratacache:getOrSet').subscribe(sub)
  try {
    await cache.get('bus-probe')
    await until('the bus', () => cache.stats().bus_connected === 1)
    spans.reset()
    await cache.set('k', { id: 1 })
    assert.deepEqual(await cache.get('k'), { id: 1 })
    assert.deepEqual(await far.get('k'), { id: 1 })
    assert.equal(await cache.get('absent'), undefined)
    const factory = async () => 'v'
    await cache.getOrSet({ key: 't', factory, ttl: '1m' })
    await cache.getOrSet({ key: 't', factory, ttl: '1m' })
  } finally {
    dc.tracingChannel('stratacache:get').unsubscribe(sub)
    dc.tracingChannel('stratacache:getOrSet').unsubscribe(sub)
    await cache.close()
    await far.close()
  }
  const of = (name) =>
    spans
      .getFinishedSpans()
      .filter((s) => s.name === name)
      .map((s) => [s.attributes['stratacache.hit'] ?? s.attributes['stratacache.outcome'], s.attributes['stratacache.tier']])
  assert.deepEqual(of('stratacache.get'), [
    [true, 'l1'],
    [true, 'l2'],
    [false, undefined],
  ])
  assert.deepEqual(of('stratacache.get_or_set'), [
    ['loaded', undefined],
    ['hit', 'l1'],
  ])
})
