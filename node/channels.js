'use strict'
// The cache's calls on Node's `diagnostics_channel`, as TracingChannels an
// APM agent subscribes to without any wiring in the app (as undici and
// node-redis publish theirs): `stratacache:<operation>` for get, getMany,
// has, set, setMany, add, delete, deleteMany, touch, incr, decr, getOrSet,
// getOrSetMany, warm, invalidateTags and clear, and `stratacache:load` for
// a getOrSet factory's run (a child of its getOrSet). Each publishes
// start / end / asyncStart / asyncEnd / error with one context object:
// `{ namespace, operation, key | keys, result | error }`, plus `outcome`
// (`'hit'` or `'loaded'`) for getOrSet. With no subscriber a call costs one
// `hasSubscribers` check (make bench-otel measures it).

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
  'incr',
  'decr',
  'getOrSet',
  'getOrSetMany',
  'warm',
  'invalidateTags',
  'clear',
]

const load = dc.tracingChannel('stratacache:load')

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
    const o = /** @type {{ key?: unknown, keys?: unknown }} */ (first || {})
    if (o.key !== undefined) ctx.key = o.key
    if (o.keys !== undefined) ctx.keys = o.keys
  } else if (Array.isArray(first)) ctx.keys = first
  return ctx
}

/**
 * Wrap `proto`'s operations so each call is traced while its channel has
 * subscribers.
 * @param {any} proto
 */
function traceCalls(proto) {
  for (const operation of OPERATIONS) {
    const channel = dc.tracingChannel(`stratacache:${operation}`)
    const orig = proto[operation]
    untraced[operation] = orig
    const traced =
      operation === 'getOrSet'
        ? /** @this {any} */ function (/** @type {any} */ options = {}) {
            if (!channel.hasSubscribers && !load.hasSubscribers) return orig.call(this, options)
            const ctx = contextOf(this, operation, [options])
            ctx.outcome = 'hit'
            const factory = options.factory
            const wrapped =
              typeof factory === 'function'
                ? (/** @type {unknown[]} */ ...a) => {
                    ctx.outcome = 'loaded'
                    if (!load.hasSubscribers) return factory(...a)
                    return load.tracePromise(async () => factory(...a), { namespace: ctx.namespace, operation: 'load', key: ctx.key })
                  }
                : factory
            const call = () => orig.call(this, { ...options, factory: wrapped })
            return channel.hasSubscribers ? channel.tracePromise(call, ctx) : call()
          }
        : /** @this {any} */ function (/** @type {unknown[]} */ ...args) {
            if (!channel.hasSubscribers) return orig.apply(this, args)
            return channel.tracePromise(() => orig.apply(this, args), contextOf(this, operation, args))
          }
    Object.defineProperty(traced, 'name', { value: operation })
    proto[operation] = traced
  }
}

module.exports = { traceCalls, untraced, OPERATIONS }
