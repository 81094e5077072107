'use strict'
// `stratacache/otel`: OpenTelemetry for a cache, through `@opentelemetry/api`
// (an optional peer dependency). `instrument(cache)` gives its calls spans
// (reads, writes, read-throughs with the factory's run as a child
// `stratacache.load` span, tag invalidations) and its counters and gauges
// as observable OTel instruments. The same names and attributes as
// Python's `stratacache.otel`. Only an instrumented cache pays anything,
// and span wrappers are installed only when spans can be recorded (a
// `tracerProvider` given, or a recording provider registered globally
// before `instrument`): otherwise the cache's own methods stay in place.

const fs = require('node:fs')
const path = require('node:path')
const { ConfigError } = require('./errors.js')
const served = require('./served.js')

/** The package's version (the instrumentation scope's). */
const VERSION = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')).version

const GAUGES = new Set(['l1_entries', 'l1_bytes', 'l1_memo_bytes', 'breaker_open', 'bus_connected', 'edge_purge_pending'])
const READS = ['get', 'has']
const WRITES = ['set', 'add', 'delete', 'incr', 'decr', 'touch']
const MANY = ['getMany']
const TAGS = ['invalidateTags']

function otelApi() {
  try {
    return require('@opentelemetry/api')
  } catch {
    throw new ConfigError('stratacache/otel needs @opentelemetry/api: npm install @opentelemetry/api')
  }
}

/** Whether the global tracer provider is a real one (not the API's no-op
 *  placeholder, which is what it is until an SDK registers one). */
function globalRecording(api) {
  const p = api.trace.getTracerProvider()
  const delegate = typeof p.getDelegate === 'function' ? p.getDelegate() : p
  const Noop = new api.ProxyTracerProvider().getDelegate().constructor
  return !(delegate instanceof Noop)
}

/**
 * @param {import('./index').Cache} cache
 * @param {{ tracerProvider?: any, meterProvider?: any, recordKeys?: boolean, spans?: boolean }} [options]
 */
function instrument(cache, { tracerProvider, meterProvider, recordKeys = false, spans } = {}) {
  const api = otelApi()
  const version = VERSION
  const tp = tracerProvider || api.trace.getTracerProvider()
  if (spans === undefined) spans = tracerProvider !== undefined || globalRecording(api)
  if (spans) wrapSpans(cache, api, tp.getTracer('stratacache', version), recordKeys)
  observe(cache, (meterProvider || api.metrics.getMeterProvider()).getMeter('stratacache', version))
}

function wrapSpans(cache, api, tracer, recordKeys) {
  const ns = cache.namespace
  const run = (name, key, fn, record) =>
    tracer.startActiveSpan(`stratacache.${name}`, { attributes: attrs(name, key) }, async (span) => {
      try {
        const r = await fn(span)
        record(span, r)
        return r
      } catch (e) {
        span.recordException(e)
        span.setStatus({ code: api.SpanStatusCode.ERROR, message: String((e && e.message) || e) })
        throw e
      } finally {
        span.end()
      }
    })
  const attrs = (name, key) => {
    /** @type {Record<string, string>} */
    const a = { 'stratacache.namespace': ns, 'stratacache.operation': name }
    if (recordKeys && typeof key === 'string') a['stratacache.key'] = key
    return a
  }
  const none = () => {}
  // How the call was served (served.js): a hit's tier, a read-through's outcome.
  const tierOf = (s, obs) => {
    if (obs.tier !== undefined) s.setAttribute('stratacache.tier', obs.tier)
  }
  for (const name of [...READS, ...WRITES, ...TAGS, ...MANY]) {
    const orig = cache[name].bind(cache)
    if (name === 'get') {
      cache.get = (key) => {
        /** @type {Record<string, unknown>} */
        const obs = {}
        const record = (s, r) => {
          s.setAttribute('stratacache.hit', r !== undefined || obs.outcome !== undefined)
          tierOf(s, obs)
        }
        const call = () => {
          served.expect(obs)
          try {
            return orig(key)
          } finally {
            served.take() // not left for another call if this one did not take it
          }
        }
        return run(name, key, call, record)
      }
      continue
    }
    const record = READS.includes(name)
      ? (s, r) => s.setAttribute('stratacache.hit', name === 'has' ? r === true : r !== undefined)
      : MANY.includes(name)
        ? (s, r) => s.setAttribute('stratacache.hit', r.filter((v) => v !== undefined).length)
        : none
    cache[name] = (...args) => run(name, args[0], () => orig(...args), record)
  }
  const getOrSet = cache.getOrSet.bind(cache)
  cache.getOrSet = (options = {}) => {
    /** @type {Record<string, unknown>} */
    const obs = {}
    const record = (s) => {
      if (obs.outcome !== undefined) s.setAttribute('stratacache.outcome', obs.outcome)
      tierOf(s, obs)
    }
    return run(
      'get_or_set',
      options.key,
      (span) => {
        const parent = api.trace.setSpan(api.context.active(), span)
        const factory = options.factory
        const wrapped = async (...a) => {
          const load = tracer.startSpan('stratacache.load', {}, parent)
          try {
            return await factory(...a)
          } finally {
            load.end()
          }
        }
        served.expect(obs)
        try {
          return getOrSet({ ...options, factory: wrapped })
        } finally {
          served.take() // not left for another call if this one did not take it
        }
      },
      record,
    )
  }
}

function observe(cache, meter) {
  const attrs = { 'stratacache.namespace': cache.namespace }
  for (const stat of Object.keys(cache.stats())) {
    const make = GAUGES.has(stat) ? meter.createObservableGauge : meter.createObservableCounter
    make.call(meter, `stratacache.${stat}`).addCallback((r) => {
      let v
      try {
        v = cache.stats()[stat]
      } catch {
        return // a closed cache: nothing to report
      }
      r.observe(v, attrs)
    })
  }
}

module.exports = { instrument, GAUGES }
