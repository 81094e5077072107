'use strict'
// The cache's calls on Node's `diagnostics_channel`, as TracingChannels an
// APM agent subscribes to without any wiring in the app (as undici and
// node-redis publish theirs): `stratacache:<operation>` for get, getMany,
// has, set, setMany, add, delete, deleteMany, touch, incr (decr too),
// getOrSet, getOrSetMany, warm, invalidateTags and clear, and
// `stratacache:load` for a getOrSet factory's run (a child of its
// getOrSet, or on its own for a refresh that runs after the call answered
// stale). Each publishes start / end / asyncStart / asyncEnd / error with
// one context object: `{ namespace, operation, key | keys, result | error }`,
// plus, for get and getOrSet, how the call was served (served.js):
// `outcome` (`'hit'`, and for getOrSet `'waited'`, `'stale'` or
// `'loaded'`) and a hit's `tier` (`'l1'` or `'l2'`). With no subscriber a
// call costs one `hasSubscribers` check (make bench-otel measures it).

const dc = require('node:diagnostics_channel')
const served = require('./served.js')

const OPERATIONS = [
  'get',
  'getMany',
  'has',
  'set',
  'setMany',
  'add',
  'delete',
  'deleteMany',
  'touch',
  'incr', // decr is an incr of -delta: published once, as incr
  'getOrSet',
  'getOrSetMany',
  'warm',
  'invalidateTags',
  'clear',
]

// TracingChannel came with Node 18.19 and its `hasSubscribers` with
// 20.13: without the first nothing is traced; without the second its
// sub-channels are asked.
const TRACING = typeof dc.tracingChannel === 'function'
/** @param {any} ch */
const subscribed = (ch) =>
  ch.hasSubscribers ?? (ch.start.hasSubscribers || ch.end.hasSubscribers || ch.asyncStart.hasSubscribers || ch.asyncEnd.hasSubscribers || ch.error.hasSubscribers)
const load = /** @type {any} */ (TRACING ? dc.tracingChannel('stratacache:load') : null)

/**
 * The methods as they were before tracing, by name (make bench-otel's baseline).
 * @type {Record<string, Function>}
 */
const untraced = {}

/** The context a call's events carry. */
function contextOf(cache, operation, args) {
  /** @type {Record<string, unknown>} */
  const ctx = { namespace: cache.namespace, operation }
  const first = args[0]
  if (typeof first === 'string') ctx.key = first
  else if (operation === 'getOrSet' || operation === 'getOrSetMany') {
    const o = /** @type {{ key?: unknown, keys?: unknown }} */ (first && typeof first === 'object' ? first : {})
    if (o.key !== undefined) ctx.key = o.key
    if (o.keys !== undefined) ctx.keys = o.keys
  } else if (Array.isArray(first)) {
    // Never values: setMany's entries give their keys only.
    if (operation === 'setMany') ctx.keys = first.map((e) => (Array.isArray(e) ? e[0] : undefined))
    else if (operation === 'invalidateTags') ctx.tags = first
    else ctx.keys = first
  }
  return ctx
}

/** The operations that say how they were served (served.js). */
const SERVED = new Set(['get', 'getOrSet'])

/**
 * Run `call` telling it to note how it was served on `ctx`, and pass that
 * on to `outer` (an OTel wrapper's observer around this call) once known.
 * @param {Record<string, unknown>} ctx
 * @param {Record<string, unknown> | undefined} outer
 * @param {() => Promise<unknown>} call
 */
function observed(ctx, outer, call) {
  served.expect(ctx)
  let p
  try {
    p = call()
  } finally {
    served.take() // not left for another call if this one did not take it
  }
  if (outer === undefined) return p
  return p.finally(() => {
    if (ctx.outcome !== undefined) outer.outcome = ctx.outcome
    if (ctx.tier !== undefined) outer.tier = ctx.tier
  })
}

/**
 * Wrap `proto`'s operations so each call is traced while its channel has
 * subscribers.
 * @param {any} proto
 */
function traceCalls(proto) {
  if (load === null) return
  for (const operation of OPERATIONS) {
    const channel = dc.tracingChannel(`stratacache:${operation}`)
    const orig = proto[operation]
    untraced[operation] = orig
    const traced =
      operation === 'getOrSet'
        ? /** @this {any} */ function (/** @type {any} */ options = {}) {
            if ((!subscribed(channel) && !subscribed(load)) || !options || typeof options !== 'object') return orig.call(this, options)
            const outer = served.take()
            const ctx = contextOf(this, operation, [options])
            const factory = options.factory
            const wrapped =
              typeof factory === 'function'
                ? (/** @type {unknown[]} */ ...a) => {
                    if (!subscribed(load)) return factory(...a)
                    return load.tracePromise(async () => factory(...a), { namespace: ctx.namespace, operation: 'load', key: ctx.key })
                  }
                : factory
            const call = () => observed(ctx, outer, () => orig.call(this, { ...options, factory: wrapped }))
            return subscribed(channel) ? channel.tracePromise(call, ctx) : call()
          }
        : operation === 'get'
          ? // The L1-hit path: one argument, no rest array.
            /** @this {any} */ function (/** @type {unknown} */ key) {
              if (!subscribed(channel)) return orig.call(this, key)
              const ctx = contextOf(this, operation, [key])
              const outer = served.take()
              return channel.tracePromise(() => observed(ctx, outer, () => orig.call(this, key)), ctx)
            }
          : /** @this {any} */ function (/** @type {unknown[]} */ ...args) {
            if (!subscribed(channel)) return orig.apply(this, args)
            const ctx = contextOf(this, operation, args)
            if (!SERVED.has(operation)) return channel.tracePromise(() => orig.apply(this, args), ctx)
            const outer = served.take()
            return channel.tracePromise(() => observed(ctx, outer, () => orig.apply(this, args)), ctx)
          }
    Object.defineProperty(traced, 'name', { value: operation })
    proto[operation] = traced
  }
}

module.exports = { traceCalls, untraced, OPERATIONS }
