'use strict'
// The connection `get` reads Redis over: ioredis, on the JS thread.
//
// Why: a GET through the native binding wakes four threads in turn (a tokio
// worker to send, Redis, the worker again for the reply, then the JS thread
// through napi's threadsafe call); ioredis wakes two (Redis, then the JS
// thread on the reply). On a VM whose idle vCPUs halt, each wake-up is tens
// of microseconds, so the native path cost twice a raw ioredis GET.
//
// What stays in the core: everything but the bytes on the wire. `startRead`
// consults L1 and says which Redis key to GET and the L1 epoch fencing the
// fill; `finishRead` decodes, verifies the signature, judges freshness and
// versions, fills L1 unless a write or invalidation landed meanwhile, and
// counts. Only healthy plain GETs come here: while this connection is not
// ready, after any error it returns, or while the core's circuit breaker is
// open, reads go through the native `fetch`, which owns timeouts, the
// breaker and the outage fallback. Writes, leases, scripts and the bus are
// native always.
//
// Process lifetime: the socket is ref'd only while GETs are in flight (and
// unref'd a tick after the last one settles, so back-to-back reads do not
// toggle it), so it never keeps Node alive on its own; ioredis never
// reconnects on its own (no timers): the next read after a disconnect asks
// for a new connection, at most once a second.
//
// Timeouts: one watchdog per connection instead of a timer per GET (a
// timer set and cleared per command cost ~10 us a read on this project's
// test VM, as much as the rest of the wrapper). It ticks every opTimeout/2
// while GETs are in flight; two ticks in a row with GETs outstanding and no
// reply means the oldest has waited at least opTimeout: the connection is
// dropped, every pending GET fails over to the native `fetch`, and the
// next read after the pause reconnects. Replies come in order on one
// connection, so "no reply for opTimeout" is "the oldest GET timed out".

const { Redis } = require('ioredis')

const RECONNECT_MS = 1000
const PAUSE_MS = 1000
// Node runs a timer with a longer delay after 1 ms: longer timeouts are
// capped here (24.8 days), not turned into 1 ms ones.
const TIMER_MAX = 2 ** 31 - 1

/** Whether `url` is one this connection can serve (plain TCP, no options). */
function servable(url) {
  return typeof url === 'string' && /^redis:\/\/[^?#\s]+$/.test(url)
}

class Reader {
  #client
  #opTimeout
  #pending = 0
  #pausedUntil = 0
  #lastConnect = 0
  // The socket ref'd for the GETs in flight, or null.
  #held = null
  #releaseQueued = false
  // Watchdog: an unref'd interval, running only while reads happen.
  #watchdog = null
  #replies = 0
  #repliesAtTick = 0
  #stalledTicks = 0
  users = 0
  /** Times the watchdog dropped the connection: a read that fails while it moves timed out. */
  stalls = 0

  constructor(url, { connectTimeout, opTimeout }) {
    this.#opTimeout = opTimeout
    this.#client = new Redis(url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      enableReadyCheck: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: Math.min(connectTimeout, TIMER_MAX),
      connectionName: 'stratacache-reads',
    })
    // Errors reach the caller through the native fallback, never as an
    // unhandled 'error' event.
    this.#client.on('error', () => {})
    this.#client.on('connect', () => {
      const stream = this.#client.stream
      if (stream && stream !== this.#held) stream.unref()
    })
  }

  /** Whether a GET may be sent now; starts connecting when it is time to. */
  get ready() {
    const c = this.#client
    if (c.status === 'ready') {
      if (this.#pausedUntil === 0) return true
      if (Date.now() < this.#pausedUntil) return false
      this.#pausedUntil = 0
      return true
    }
    if ((c.status === 'wait' || c.status === 'end') && Date.now() - this.#lastConnect >= RECONNECT_MS) {
      this.#lastConnect = Date.now()
      c.connect().catch(() => {})
    }
    return false
  }

  /**
   * Send `GET redisKey` (only when `ready`): a Promise of a Buffer, `null`
   * when missing. Call `settled(ok)` exactly once when it settles.
   */
  send(redisKey) {
    this.#begin()
    return this.#client.getBuffer(redisKey)
  }

  /** `send` for several keys: one `MGET`, a Promise of Buffers and nulls. */
  sendMany(redisKeys) {
    this.#begin()
    return this.#client.mgetBuffer(redisKeys)
  }

  #begin() {
    if (this.#pending++ === 0) {
      const stream = this.#client.stream
      if (stream !== this.#held) {
        if (this.#held !== null) this.#held.unref()
        stream.ref()
        this.#held = stream
      }
      if (this.#watchdog === null && this.#opTimeout > 0) this.#arm()
    }
  }

  /** The command sent by `send` or `sendMany` settled; `ok` false: it failed, read natively for a while. */
  settled(ok) {
    this.#replies++
    if (!ok) this.#pausedUntil = Date.now() + PAUSE_MS
    if (--this.#pending === 0 && !this.#releaseQueued) {
      this.#releaseQueued = true
      process.nextTick(() => this.#release())
    }
  }

  #release() {
    this.#releaseQueued = false
    if (this.#pending === 0 && this.#held !== null) {
      this.#held.unref()
      this.#held = null
    }
  }

  #arm() {
    this.#repliesAtTick = this.#replies
    this.#stalledTicks = 0
    this.#watchdog = setInterval(() => this.#tick(), Math.min(TIMER_MAX, Math.max(1, this.#opTimeout / 2)))
    this.#watchdog.unref()
  }

  #tick() {
    if (this.#pending === 0) {
      clearInterval(this.#watchdog)
      this.#watchdog = null
      return
    }
    if (this.#replies !== this.#repliesAtTick) {
      this.#repliesAtTick = this.#replies
      this.#stalledTicks = 0
      return
    }
    if (++this.#stalledTicks >= 2) {
      // No reply for opTimeout: drop the connection; the pending GETs
      // reject and their reads go native.
      this.#stalledTicks = 0
      this.#pausedUntil = Date.now() + PAUSE_MS
      this.stalls++
      // Destroyed, not half-closed: ioredis would wait its 2 s
      // disconnectTimeout for a frozen server before rejecting the reads.
      const stream = this.#client.stream
      this.#client.disconnect()
      if (stream) stream.destroy()
    }
  }

  /**
   * Close once the GETs in flight are answered (the watchdog, which stops
   * itself once none is left, still times them out).
   */
  close() {
    const c = this.#client
    if (c.status === 'ready') c.quit().catch(() => c.disconnect())
    else c.disconnect()
  }
}

// One connection per Redis URL and timeouts, shared by the handles using
// it; closed when the last one is closed or garbage-collected.
const readers = new Map()
const released = new FinalizationRegistry((id) => release(id))

function acquire(owner, url, timeouts) {
  const id = `${url}\0${timeouts.connectTimeout}\0${timeouts.opTimeout}`
  let r = readers.get(id)
  if (r === undefined) {
    r = new Reader(url, timeouts)
    readers.set(id, r)
  }
  r.users += 1
  const token = {}
  released.register(owner, id, token)
  return {
    reader: r,
    release() {
      if (released.unregister(token)) release(id)
    },
  }
}

function release(id) {
  const r = readers.get(id)
  if (r === undefined) return
  r.users -= 1
  if (r.users === 0) {
    readers.delete(id)
    r.close()
  }
}

module.exports = { servable, acquire }
