'use strict'
// Redis reads over the JS-thread connection (reader.js) around the core's
// split read (`startRead` / `finishRead` of the binding): the Redis half of
// `get`, `getMany`, `has`, and of the read-throughs of `getOrSet` and the
// HTTP middleware. The core judges every reply (verification, versions,
// L1); a failed GET or MGET on the JS connection falls back to the core's
// own read, which owns timeouts, the breaker and the outage fallback.
// Errors from the core propagate: the caller (index.js) applies fail-open.

const { L1, L2, WAITED } = require('./served.js')

/** A read-through that shared another caller's GET, or whose GET failed: the lookup reads natively. */
const JOINED = Object.freeze({ joined: true, bytes: null, epoch: 0 })

// `send()` over the JS connection `r`: its reply, or undefined when it
// failed (the caller falls back to the core's read). When the connection
// stalled meanwhile (the watchdog dropped it: no reply for opTimeout), the
// core is told first, so that fallback fails fast instead of waiting a
// second timeout.
async function over(n, r, send) {
  const stalls = r.stalls
  try {
    const reply = await send()
    r.settled(true)
    return reply
  } catch {
    r.settled(false)
    if (r.stalls !== stalls) n.readStalled()
    return undefined
  }
}

/**
 * `get`'s Redis half: GET `redisKey` here, then the core judges the bytes
 * (`epoch` from `startRead`); the native `fetch` when the GET fails.
 * Resolves `[entry, served]` (the entry as `getLocal` shapes it, how it
 * was served: served.js), or null.
 */
async function readOver(n, r, key, redisKey, epoch) {
  const bytes = await over(n, r, () => r.send(redisKey))
  if (bytes === undefined) return n.fetch(key, epoch)
  // A value, or a Promise when judging the entry needs Redis.
  const v = await n.finishRead(key, bytes, epoch)
  return v === null ? null : [v, L2]
}

/**
 * A read-through's Redis read, after an L1 miss: `{ value, served }`
 * (fresh, or an L1 value that arrived meanwhile), or the `prior` for the core's
 * `lookupAfter` when nothing fresh was found: `{ joined: false, bytes,
 * epoch }` for the caller whose GET it was, `{ joined: true }` for callers
 * that shared it (or when the GET failed: the lookup reads natively).
 * `null`: not tried (no connection ready). Concurrent callers of a key
 * share one GET (`reads`: key -> the read in flight), as the core's single
 * flight shares one native read; but only with the same L1 epoch: a caller
 * that comes after a write or invalidation of the key here (the epoch
 * moved on) does not take an answer sent before it.
 */
async function readThrough(n, reader, reads, key) {
  if (reader === null || !reader.ready) return null
  let s
  try {
    s = n.startRead(key)
  } catch {
    return null
  }
  if (s === null) return null
  if (!(Array.isArray(s) && typeof s[0] === 'string')) return { value: s, served: L1 }
  const shared = reads.get(key)
  if (shared !== undefined && shared.epoch === s[1]) {
    shared.joined++
    const res = await shared.done
    // Another caller's read answered: this one waited for it.
    return res.value !== undefined ? { value: res.value, served: WAITED } : JOINED
  }
  const read = { joined: 0, epoch: s[1], done: null }
  read.done = sharedRead(n, reader, reads, key, s[0], read)
  // A newer read replaces an older one as the one to join.
  reads.set(key, read)
  const res = await read.done
  if (res.value !== undefined || res === JOINED) return res
  return { joined: false, bytes: res.bytes, epoch: s[1] }
}

async function sharedRead(n, reader, reads, key, redisKey, read) {
  const forget = () => {
    if (reads.get(key) === read) reads.delete(key)
  }
  const bytes = await over(n, reader, () => reader.send(redisKey))
  // Whoever comes now reads for itself.
  forget()
  if (bytes === undefined) return JOINED
  try {
    let v = n.finishRead(key, bytes, read.epoch, read.joined)
    if (v instanceof Promise) v = await v
    return v ? { value: v, served: L2 } : { bytes }
  } catch {
    return JOINED
  }
}

/**
 * The Redis half of `getMany`: `starts` is `startReadMany`'s answer;
 * resolves values shaped as `getLocal`'s, or null. When the MGET fails,
 * each key goes to the native `fetch`.
 */
async function readManyOver(n, r, keys, starts) {
  const out = new Array(keys.length).fill(null)
  const at = []
  const redisKeys = []
  for (let i = 0; i < starts.length; i++) {
    const s = starts[i]
    if (Array.isArray(s) && typeof s[0] === 'string') {
      at.push(i)
      redisKeys.push(s[0])
    } else {
      out[i] = s
    }
  }
  if (at.length === 0) return out
  const replies = await over(n, r, () => r.sendMany(redisKeys))
  if (replies === undefined) {
    const got = await Promise.all(at.map((i) => n.fetch(keys[i], starts[i][1])))
    for (let j = 0; j < at.length; j++) out[at[j]] = got[j] === null ? null : got[j][0]
    return out
  }
  let vs = n.finishReadMany(
    at.map((i) => keys[i]),
    replies,
    at.map((i) => starts[i][1]),
  )
  if (vs instanceof Promise) vs = await vs
  for (let j = 0; j < at.length; j++) out[at[j]] = vs[j]
  return out
}

module.exports = { readOver, readThrough, readManyOver, JOINED }
