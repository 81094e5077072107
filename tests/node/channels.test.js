'use strict'
// The cache's calls on diagnostics_channel (TracingChannel): what an APM
// agent subscribing to `stratacache:*` sees, on real Redis.

const test = require('node:test')
const assert = require('node:assert/strict')
const dc = require('node:diagnostics_channel')
const { Cache, InvalidKeyError } = require('../../node/index.js')
const { OPERATIONS } = require('../../node/channels.js')
const { REDIS_URL, unique, until } = require('./helpers.js')

/** Subscribe to `names`; `events` collects `[channel, event, context]`. */
function listen(names) {
  const events = []
  const subs = names.map((name) => {
    const handlers = {}
    for (const ev of ['start', 'end', 'asyncStart', 'asyncEnd', 'error']) handlers[ev] = (ctx) => events.push([name, ev, ctx])
    dc.tracingChannel(`stratacache:${name}`).subscribe(handlers)
    return () => dc.tracingChannel(`stratacache:${name}`).unsubscribe(handlers)
  })
  return { events, stop: () => subs.forEach((s) => s()) }
}

test('every operation publishes start, end, asyncStart and asyncEnd with its context and result', async () => {
  const c = new Cache({ namespace: unique('dc'), redis: REDIS_URL })
  const { events, stop } = listen(OPERATIONS)
  try {
    await c.set('k', 'v', '1m')
    assert.equal(await c.get('k'), 'v')
    assert.equal(await c.has('nope'), false)
    await c.getMany(['k', 'nope'])
  } finally {
    stop()
    await c.close()
  }
  const of = (op) => events.filter(([name]) => name === op).map(([, ev, ctx]) => [ev, ctx])
  for (const op of ['set', 'get', 'has', 'getMany']) {
    assert.deepEqual(
      of(op).map(([ev]) => ev),
      ['start', 'end', 'asyncStart', 'asyncEnd'],
      op,
    )
  }
  const [, get] = of('get')[3]
  assert.equal(get.namespace, c.namespace)
  assert.equal(get.operation, 'get')
  assert.equal(get.key, 'k')
  assert.equal(get.result, 'v')
  assert.deepEqual(of('getMany')[3][1].keys, ['k', 'nope'])
  assert.equal(of('has')[3][1].result, false)
})

test('getOrSet says whether it loaded; the factory runs as a stratacache:load child', async () => {
  const c = new Cache({ namespace: unique('dc-load'), redis: REDIS_URL })
  const { events, stop } = listen(['getOrSet', 'load'])
  const order = []
  const onLoad = { start: () => order.push('load start') }
  const onCall = { start: () => order.push('getOrSet start'), asyncEnd: () => order.push('getOrSet end') }
  dc.tracingChannel('stratacache:load').subscribe(onLoad)
  dc.tracingChannel('stratacache:getOrSet').subscribe(onCall)
  try {
    await c.getOrSet({ key: 'u', factory: async () => ({ id: 1 }), ttl: '1m' })
    await c.getOrSet({ key: 'u', factory: async () => ({ id: 2 }), ttl: '1m' })
  } finally {
    dc.tracingChannel('stratacache:load').unsubscribe(onLoad)
    dc.tracingChannel('stratacache:getOrSet').unsubscribe(onCall)
    stop()
    await c.close()
  }
  const ends = events.filter(([name, ev]) => name === 'getOrSet' && ev === 'asyncEnd').map(([, , ctx]) => ctx)
  assert.deepEqual(
    ends.map((ctx) => [ctx.outcome, ctx.result]),
    [
      ['loaded', { id: 1 }],
      ['hit', { id: 1 }],
    ],
  )
  const loads = events.filter(([name, ev]) => name === 'load' && ev === 'start')
  assert.equal(loads.length, 1, 'one factory run')
  assert.equal(loads[0][2].key, 'u')
  assert.deepEqual(order, ['getOrSet start', 'load start', 'getOrSet end', 'getOrSet start', 'getOrSet end'])
})

test('a failing call publishes error with the error', async () => {
  const c = new Cache({ namespace: unique('dc-err') })
  const { events, stop } = listen(['get', 'getOrSet'])
  try {
    await assert.rejects(c.get(''), InvalidKeyError)
    await assert.rejects(c.getOrSet({ key: 'x', factory: async () => Promise.reject(new Error('db down')) }), /db down/)
  } finally {
    stop()
    await c.close()
  }
  const errors = events.filter(([, ev]) => ev === 'error').map(([name, , ctx]) => [name, ctx.error.message])
  assert.equal(errors.length, 2)
  assert.equal(errors[0][0], 'get')
  assert.match(errors[1][1], /db down/)
})

test('contexts carry keys, never values; a bad call fails as it does untraced', async () => {
  const c = new Cache({ namespace: unique('dc-ctx') })
  const { events, stop } = listen(['setMany', 'invalidateTags', 'getOrSet'])
  try {
    await c.setMany([['a', { secret: 1 }], ['b', 2]])
    await c.invalidateTags(['t'])
    await assert.rejects(c.getOrSet(null))
  } finally {
    stop()
    await c.close()
  }
  const start = (op) => events.find(([name, ev]) => name === op && ev === 'start')[2]
  assert.deepEqual(start('setMany').keys, ['a', 'b'])
  assert.deepEqual(start('invalidateTags').tags, ['t'])
  assert.equal(start('invalidateTags').keys, undefined)
})

test('a stale answer says stale; its background refresh publishes its own load', async () => {
  const c = new Cache({ namespace: unique('dc-stale') })
  const { events, stop } = listen(['getOrSet'])
  let refreshed
  const done = new Promise((resolve) => (refreshed = resolve))
  const onLoad = { asyncEnd: (ctx) => refreshed(ctx) }
  dc.tracingChannel('stratacache:load').subscribe(onLoad)
  try {
    const o = { key: 's', ttl: 5, allowStale: true, grace: '1m' }
    await c.getOrSet({ ...o, factory: async () => 1 })
    while ((await c.get('s')) !== undefined) await new Promise(setImmediate) // until stale
    assert.equal(await c.getOrSet({ ...o, factory: async () => 2 }), 1)
    assert.equal((await done).key, 's')
  } finally {
    dc.tracingChannel('stratacache:load').unsubscribe(onLoad)
    stop()
    await c.close()
  }
  const ends = events.filter(([, ev]) => ev === 'asyncEnd').map(([, , ctx]) => [ctx.outcome, ctx.result])
  assert.deepEqual(ends, [
    ['loaded', 1],
    ['stale', 1],
  ])
})

/** How each `operation` call was served, from its asyncEnd contexts. */
const servedOf = (events, operation) =>
  events.filter(([name, ev]) => name === operation && ev === 'asyncEnd').map(([, , ctx]) => [ctx.outcome, ctx.tier])

test('get and getOrSet say how they were served: tier, waited, stale, loaded', async () => {
  const ns = unique('dc-served')
  const c = new Cache({ namespace: ns, redis: REDIS_URL })
  const far = new Cache({ namespace: ns, redis: REDIS_URL, l1: false }) // another process's view
  await c.get('bus-probe')
  await until('the bus', () => c.stats().bus_connected === 1)
  const { events, stop } = listen(['get', 'getOrSet'])
  try {
    await c.set('k', { id: 1 })
    assert.deepEqual(await c.get('k'), { id: 1 })
    assert.deepEqual(await far.get('k'), { id: 1 })
    assert.equal(await c.get('absent'), undefined)
    assert.deepEqual(servedOf(events, 'get'), [
      ['hit', 'l1'],
      ['hit', 'l2'],
      [undefined, undefined],
    ])
    const factory = async () => 'v'
    assert.equal(await c.getOrSet({ key: 't', factory, ttl: '1m' }), 'v')
    assert.equal(await c.getOrSet({ key: 't', factory, ttl: '1m' }), 'v')
    assert.equal(await far.getOrSet({ key: 't', factory, ttl: '1m' }), 'v')
    // Always due: an L1 hit that refreshes in the background.
    const refreshes = c.stats().early_refreshes
    assert.equal(await c.getOrSet({ key: 't', factory, ttl: '1m', refreshAhead: 1 }), 'v')
    assert.equal(c.stats().early_refreshes, refreshes + 1, 'served from L1 while it refreshes')
    // Two callers at once: one loads, the other waits for it.
    let release
    const gate = new Promise((r) => (release = r))
    const slow = async () => {
      await gate
      return 'w'
    }
    const first = c.getOrSet({ key: 'w', factory: slow, ttl: '1m' })
    const second = c.getOrSet({ key: 'w', factory: slow, ttl: '1m' })
    // It waits on the first's flight.
    await until('the second caller waits', () => c.stats().coalesced_waits === 1)
    release()
    assert.deepEqual(await Promise.all([first, second]), ['w', 'w'])
    // Stale within its grace.
    await c.set('s', 'old', 5, { grace: '1m' })
    await until('stale', async () => (await c.get('s')) === undefined)
    assert.equal(await c.getOrSet({ key: 's', factory: async () => 'new', ttl: '1m', allowStale: true, grace: '1m' }), 'old')
    // This call leads the load, which fails: fail-safe serves the stale value.
    await c.set('f', 'old', 5, { grace: '1m' })
    await until('stale', async () => (await c.get('f')) === undefined)
    const down = async () => {
      throw new Error('db down')
    }
    assert.equal(await c.getOrSet({ key: 'f', factory: down, ttl: '1m', failSafe: true, grace: '1m' }), 'old')
    const got = servedOf(events, 'getOrSet')
    assert.deepEqual(got.slice(0, 4), [
      ['loaded', undefined],
      ['hit', 'l1'],
      ['hit', 'l2'],
      ['hit', 'l1'],
    ])
    // The two at once end in either order.
    assert.deepEqual(got.slice(4, 6).sort(), [
      ['loaded', undefined],
      ['waited', undefined],
    ])
    assert.deepEqual(got.slice(6), [
      ['stale', undefined],
      ['stale', undefined],
    ])
  } finally {
    stop()
    await c.close()
    await far.close()
  }
})
