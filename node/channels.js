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
// plus `outcome` (`'hit'` or `'loaded'`) for getOrSet. With no subscriber
// a call costs one `hasSubscribers` check (make bench-otel measures it).

const dc = require('node:diagnostics_channel')

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
            const ctx = contextOf(this, operation, [options])
            ctx.outcome = 'hit'
            const factory = options.factory
            const wrapped =
              typeof factory === 'function'
                ? (/** @type {unknown[]} */ ...a) => {
                    // A refresh after a stale answer leaves the call's outcome alone.
                    if (!('result' in ctx) && !('error' in ctx)) ctx.outcome = 'loaded'
                    if (!subscribed(load)) return factory(...a)
                    return load.tracePromise(async () => factory(...a), { namespace: ctx.namespace, operation: 'load', key: ctx.key })
                  }
                : factory
            const call = () => orig.call(this, { ...options, factory: wrapped })
            return subscribed(channel) ? channel.tracePromise(call, ctx) : call()
          }
        : /** @this {any} */ function (/** @type {unknown[]} */ ...args) {
            if (!subscribed(channel)) return orig.apply(this, args)
            return channel.tracePromise(() => orig.apply(this, args), contextOf(this, operation, args))
          }
    Object.defineProperty(traced, 'name', { value: operation })
    proto[operation] = traced
  }
}

module.exports = { traceCalls, untraced, OPERATIONS }
