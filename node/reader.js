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
// Process lifetime: the socket is unref'd while no GET is in flight, so it
// never keeps Node alive; ioredis never reconnects on its own (no timers):
// the next read after a disconnect asks for a new connection, at most once
// a second.

const Redis = require('ioredis')

const RECONNECT_MS = 1000
const PAUSE_MS = 1000

/** Whether `url` is one this connection can serve (plain TCP, no options). */
function servable(url) {
  return typeof url === 'string' && /^redis:\/\/[^?#\s]+$/.test(url)
}

class Reader {
  #client
  #pending = 0
  #pausedUntil = 0
  #lastConnect = 0
  users = 0

  constructor(url, { connectTimeout, opTimeout }) {
    this.#client = new Redis(url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      enableReadyCheck: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout,
      commandTimeout: opTimeout,
      connectionName: 'stratacache-reads',
    })
    // Errors reach the caller through the native fallback, never as an
    // unhandled 'error' event.
    this.#client.on('error', () => {})
    this.#client.on('connect', () => {
      if (this.#pending === 0 && this.#client.stream) this.#client.stream.unref()
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

  /** `GET redisKey` as a Buffer (`null` when missing); on error, reads go native for a while. */
  async get(redisKey) {
    const stream = this.#client.stream
    if (this.#pending++ === 0) stream.ref()
    try {
      return await this.#client.getBuffer(redisKey)
    } catch (e) {
      this.#pausedUntil = Date.now() + PAUSE_MS
      throw e
    } finally {
      if (--this.#pending === 0) {
        stream.unref()
        // A connection made while this GET was pending on the one before.
        const now = this.#client.stream
        if (now && now !== stream) now.unref()
      }
    }
  }

  /** Close once the GETs in flight are answered. */
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
