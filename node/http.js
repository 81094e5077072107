'use strict'
// The framework-neutral driver of the core's HTTP caching engine
// (stratacache::http, `HttpRoute` / `HttpExchange` in the binding) for the
// Express and Fastify adapters. Every rule (keys, privacy, what may be
// stored, Vary, validators, headers out) is the engine's, shared with
// Python; this file only does the cache I/O the engine asks for.

const crypto = require('node:crypto')
const binding = require('./binding.js')
const { parseTtl } = require('./index.js')
const { NativeDeps, within } = require('./deps.js')
const { kInternal } = require('./internal.js')
const { checkOptions } = require('./options.js')
const { CacheClosedError, ConfigError, InvalidValueError, L2_CODES: L2 } = require('./errors.js')

const STALE = 1
const LEAD = 2
// From the core (stratacache::http): the header marking the in-process
// request that refreshes a stale entry in the background, and the
// conditional and range headers a leader's request and a refresh replay
// run without (their response fills the entry for everyone: a 304 or a 206
// cannot; the engine answers conditions itself).
const { httpRefreshHeader: REFRESH_HEADER, httpConditionalHeaders: CONDITIONAL } = binding.constants()

const OPTIONS = [
  'cache',
  'ttl',
  'staleWhileRevalidate',
  'staleIfError',
  'vary',
  'keyBy',
  'sharedCookies',
  'privateHeaders',
  'requestDirectives',
  'xCache',
  'tags',
  'scope',
  'edgeTtl',
  'edgeTagHeader',
]
const RENAMED = {
  credentialCookies:
    'credentialCookies was removed: every cookie now makes a request private; list the cookies that do not identify a user in sharedCookies',
  name: 'name was renamed scope (it separates the entries of apps sharing a namespace)',
}

/** Released to coalesced requests when the leader's response may not be shared. */
class NotShareable extends Error {}

function rule(options = {}) {
  for (const k of Object.keys(options)) if (RENAMED[k]) throw new ConfigError(RENAMED[k])
  checkOptions(options, OPTIONS, 'HTTP cache')
  const { cache } = options
  if (!cache || typeof cache[kInternal] !== 'function') throw new InvalidValueError('options.cache must be a stratacache Cache')
  const ttlMs = parseTtl(options.ttl === undefined ? '60s' : options.ttl)
  if (!(ttlMs > 0) || ttlMs === Infinity) throw new InvalidValueError('ttl must be a finite duration > 0')
  const swrMs = parseTtl(options.staleWhileRevalidate === undefined ? 0 : options.staleWhileRevalidate) || 0
  const sieMs = parseTtl(options.staleIfError === undefined ? 0 : options.staleIfError, 'staleIfError') || 0
  const edgeMs = parseTtl(options.edgeTtl === undefined ? 0 : options.edgeTtl, 'edgeTtl') || 0
  if (options.keyBy !== undefined && typeof options.keyBy !== 'function') throw new InvalidValueError('keyBy must be a function')
  let route
  try {
    route = new binding.HttpRoute({
      scope: options.scope,
      ttlMs,
      staleWhileRevalidateMs: swrMs,
      staleIfErrorMs: sieMs,
      vary: [...(options.vary || [])],
      sharedCookies: [...(options.sharedCookies || [])],
      privateHeaders: [...(options.privateHeaders || [])],
      keyed: typeof options.keyBy === 'function',
      requestDirectives: options.requestDirectives,
      xCache: options.xCache !== false,
      edgeTtlMs: edgeMs,
      edgeTagHeader: options.edgeTagHeader,
    })
  } catch (e) {
    throw configError(e)
  }
  return { cache, route, ttlMs, swrMs, sieMs, keyBy: options.keyBy, tags: options.tags }
}

function configError(e) {
  const m = /^\[(E_[A-Z_]+)\] (.*)$/s.exec(String(e && e.message))
  if (m && m[1] === 'E_CONFIG') return new ConfigError(m[2])
  if (m) return new InvalidValueError(m[2])
  return e
}

function headerPairs(headers) {
  const out = []
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) continue
    if (Array.isArray(v)) for (const x of v) out.push([k, String(x)])
    else out.push([k, String(v)])
  }
  return out
}

/**
 * A request target's path and query pairs, as the framework routes it: raw,
 * not normalized (`new URL` would turn `/x/../api` into `/api`, a key
 * another route's answer could fill); only the query goes through the URL
 * parser, and only when there is one.
 * @param {string} target
 */
function splitTarget(target) {
  const q = target.indexOf('?')
  if (q < 0) return { path: target, query: [] }
  return { path: target.slice(0, q), query: [...new URL(target.slice(q), 'http://x').searchParams.entries()] }
}

// An answer from `onEntry` or `onResponse`, packed in one Buffer (see crates/node/src/http.rs):
// { status, headers: [name, value, ...], body: Buffer | null }.
function unpack(buf) {
  const status = buf.readUInt16BE(0)
  const hasBody = buf[2] === 1
  const n = buf.readUInt32BE(3)
  const headers = n === 0 ? [] : buf.toString('utf8', 7, 7 + n - 1).split('\0')
  return { status, headers, body: hasBody ? buf.subarray(7 + n) : null }
}

// keyBy's answer: a non-empty string or a finite number, or null/undefined
// (the request then bypasses the cache). Anything else is refused: an
// object would key every user alike ("[object Object]").
function principalOf(p) {
  if (p === undefined || p === null) return null
  if ((typeof p === 'string' && p !== '') || (typeof p === 'number' && Number.isFinite(p))) return String(p)
  throw new InvalidValueError(`keyBy must return a non-empty string, a number or null, not ${p === '' ? 'an empty string' : typeof p}`)
}

// A step of the engine: { kind, key, bypass } from its one-string form.
function stepOf(s) {
  if (s.startsWith('http:')) return { kind: 'lookup', key: s }
  const sp = s.indexOf(' ')
  if (sp < 0) return { kind: s }
  const kind = s.slice(0, sp)
  return kind === 'pass' ? { kind, bypass: s.slice(sp + 1) } : { kind, key: s.slice(sp + 1) }
}

// What `onEntry` found: { answer }, { follow: key } or {} (unusable bytes).
function found(f) {
  if (f === null) return {}
  if (typeof f === 'string') return { follow: f }
  return { answer: unpack(f) }
}

// Background refreshes waiting for their in-process request: token -> { key, lease }.
const refreshes = new Map()

/**
 * First half of handling a request.
 * req: { method, path, query: [[k, v]] (decoded, in order), headers (object,
 * lower-case), rawHeaders (Node's flat [name, value, ...]), raw (the
 * framework's request), refresh(headers) (replays the request in-process
 * with these headers: a Promise) }.
 * Resolves one of
 *   { answer }                  send it; the handler must not run;
 *   { pass }                    run the handler, send its response with the `pass` headers added;
 *   { run(handler), finish(res), streamed(), abort(err) }
 *       run the handler, then `finish` with what it produced ({ status,
 *       headers: [[k, v]], body: Buffer } or { streamed: true }) resolves
 *       { answer } or { pass }, each with `revoke(setCookie)` to call once
 *       the response is sent; `streamed()` (synchronous, before the
 *       stream's first byte) gives the headers to add to a streamed
 *       response; `abort` if it never produced anything.
 */
async function begin(r, req) {
  const internal = r.cache[kInternal]()
  // A closed cache is out of the way: the request runs as if uncached
  // (an unsafe one too, whose invalidation it could no longer send).
  if (internal.closed) return { pass: [] }
  const now = () => Date.now() / 1000
  let pending = null
  let raw = req.rawHeaders || headerPairs(req.headers).flat()
  const token = req.headers[REFRESH_HEADER]
  if (token !== undefined) {
    // Only a token this process handed out means anything; it is never kept.
    pending = refreshes.get(String(token)) || null
    refreshes.delete(String(token))
    delete req.headers[REFRESH_HEADER]
    raw = headerPairs(req.headers).flat()
  }
  let ex
  if (pending) ex = r.route.exchange(req.method, req.path, req.query, raw.join('\0'))
  else {
    // One call: an answer from L1, else the exchange at its first step.
    ex = internal.begin(r.route, req.method, req.path, req.query, raw.join('\0'))
    if (Buffer.isBuffer(ex)) {
      // Sent after the loop's poll phase, not from inside the read of the
      // request's socket: with many connections the replies then go out
      // together instead of one wake-up of the client each (make
      // bench-http: Fastify's L1 hits 8,000 -> 14,700 req/s from this alone).
      await new Promise(setImmediate)
      return { answer: unpack(ex) }
    }
  }
  let step = stepOf(ex.start())
  if (step.kind === 'principal') step = stepOf(ex.setPrincipal(principalOf(await r.keyBy(req.raw))))
  const l2Trouble = (e) => {
    // Closed meanwhile: what is left to do is not done (as for a closed cache at the start).
    if (e instanceof CacheClosedError) return null
    if (!(internal.failOpen && L2.has(e.code))) throw e
    internal.emitError(e)
    return null
  }
  if (step.kind === 'unsafe') {
    return {
      run: (fn) => fn(), // nothing is stored: nothing to track
      finish: async (res) => {
        if (res.streamed) return { pass: [], revoke: async () => {} }
        const s = ex.onResponse(res.status, res.headers, res.body, now())
        if (s.invalidate.length) await r.cache.invalidateTags(s.invalidate).catch(l2Trouble)
        return { pass: [], revoke: async () => {} }
      },
      streamed: () => [],
      abort: () => {},
    }
  }
  if (step.kind === 'pass') {
    if (pending) internal.abandon(pending.lease, new NotShareable('refresh request bypassed the cache'))
    return { pass: ex.passHeaders(step.bypass) }
  }
  // Only a lead or a native lookup needs them (not a hit).
  let tagsMemo = null
  const tagsOf = async () => {
    if (tagsMemo === null) {
      const own = typeof r.tags === 'function' ? await r.tags(req.raw) : r.tags || []
      tagsMemo = [...own, ...ex.tags()]
    }
    return tagsMemo
  }
  const policy = { allowStale: r.swrMs > 0, failSafe: r.sieMs > 0 }
  let key = step.key
  if (step.kind === 'peek') {
    // A HEAD: served from an entry if there is one, never leads a flight.
    for (let hop = 0; hop < 2; hop++) {
      let data
      try {
        data = await internal.peek(key)
      } catch (e) {
        l2Trouble(e)
        data = null
      }
      if (data === null) break
      const f = found(ex.onEntry(data, false, now()))
      if (f.answer !== undefined) return { answer: f.answer }
      if (f.follow === undefined) break
      key = f.follow
    }
    return { pass: ex.passHeaders('head') }
  }
  let lease = null
  if (step.kind === 'refresh') {
    const got = await internal.tryLease(key).catch(l2Trouble)
    lease = got || null
  }
  // At most twice: the base key, then the variant a marker names.
  for (let hop = 0; lease === null && hop < 2; hop++) {
    if (pending && pending.key === key) {
      lease = pending.lease
      pending = null
      break
    }
    let look
    try {
      look = await internal.lookup(key, policy, tagsOf)
    } catch (e) {
      if (e instanceof NotShareable) return { pass: ex.passHeaders('not-storable') }
      l2Trouble(e)
      return { pass: ex.passHeaders('error') }
    }
    if (look.kind === LEAD) {
      lease = look.lease
      break
    }
    const f = found(ex.onEntry(look.data, look.kind === STALE, now()))
    if (f.follow !== undefined) {
      // A stale marker with the lease: keep it (the marker is not the stale part).
      if (look.lease) await internal.complete(look.lease, look.data, r.ttlMs, r.route.graceMs, await tagsOf()).catch(l2Trouble)
      key = f.follow
      continue
    }
    if (f.answer !== undefined) {
      if (look.lease) refreshInBackground(r, req, key, look.lease, internal)
      return { answer: f.answer }
    }
    // Unusable bytes (another format): the handler runs; its response
    // replaces them (no flight to lead: `lease` stays null).
    if (look.lease) lease = look.lease
    break
  }
  if (pending) internal.abandon(pending.lease, new NotShareable('refresh request led elsewhere'))
  for (const h of CONDITIONAL) delete req.headers[h]
  return lead(r, ex, internal, key, lease, tagsOf, l2Trouble, now)
}

function lead(r, ex, internal, key, lease, tagsOf, l2Trouble, now) {
  let settled = false
  // The handler's reads become the response's dependencies.
  const deps = internal.tracksDependencies ? new NativeDeps() : undefined
  const release = (why) => {
    if (lease !== null) internal.abandon(lease, new NotShareable(why))
    lease = null
  }
  return {
    /** Run the handler (`fn`) so that its reads are tracked. */
    run: (fn) => (deps === undefined ? fn() : within(deps, fn)),
    // The handler's response: what to send, and `revoke(setCookie)` to call
    // once it is sent: Express session middleware adds Set-Cookie only as
    // the headers go out, and a response that set a cookie must not stay
    // shared (the entry is written before sending, so that whoever asks
    // next finds it; it is deleted again if a cookie went out with it).
    finish: async (res) => {
      settled = true
      const done = { pass: [], revoke: async () => {} }
      if (res.streamed) return done // see streamed()
      if (r.route.hasEdgeTags) ex.setEdgeTags(await tagsOf(), deps)
      const s = ex.onResponse(res.status, res.headers, res.body, now())
      if (s.useStale && lease !== null) {
        const stale = await internal.failSafe(lease, new Error(`handler answered ${res.status}`)).catch(l2Trouble)
        if (stale !== null && stale !== undefined) {
          lease = null // consumed by the fail-safe
          const f = found(ex.onEntry(stale, true, now()))
          if (f.answer !== undefined) return { answer: f.answer, revoke: done.revoke }
        }
      }
      const stored = []
      try {
        if (s.complete) {
          const tags = await tagsOf()
          for (const [k, bytes] of s.writes) {
            await internal.setRaw(k, bytes, s.ttlMs, s.graceMs, tags, deps).catch(l2Trouble)
            stored.push(k)
          }
          if (lease !== null) await internal.complete(lease, s.complete, s.ttlMs, s.graceMs, tags, deps).catch(l2Trouble)
          else await internal.setRaw(key, s.complete, s.ttlMs, s.graceMs, tags, deps).catch(l2Trouble)
          stored.push(key)
          lease = null
        }
      } finally {
        release(s.complete ? 'the entry could not be written' : 'response may not be shared')
      }
      const revoke = async (setCookie) => {
        if (!setCookie || stored.length === 0) return
        await internal.delete(stored).catch(l2Trouble)
        internal.emitError(new NotShareable(`a Set-Cookie went out with a stored response (${key}): deleted; register session middleware so that it runs before the cache sees the response`))
      }
      return s.answer ? { answer: unpack(s.answer), revoke } : { pass: ex.passHeaders(s.bypass || 'not-storable'), revoke }
    },
    streamed: () => {
      release('streamed response')
      return ex.passHeaders('streamed')
    },
    abort: (reason) => {
      if (settled) return
      settled = true
      // Waiters run their own request rather than share this failure.
      release(String((reason && reason.message) || reason || 'no response'))
    },
  }
}

// Stale-while-revalidate: the request was answered from the stale entry;
// the same request is replayed in-process with a one-time token, and its
// pass through the middleware leads the flight with this lease.
function refreshInBackground(r, req, key, lease, internal) {
  const token = crypto.randomBytes(16).toString('hex')
  refreshes.set(token, { key, lease })
  const headers = { ...req.headers, [REFRESH_HEADER]: token }
  for (const h of CONDITIONAL) delete headers[h]
  Promise.resolve()
    .then(() => req.refresh(headers))
    .catch((e) => internal.emitError(e))
    .finally(() => {
      // Never reached the middleware (rejected before it): release the flight.
      if (refreshes.delete(token)) internal.abandon(lease, new NotShareable('background refresh did not run'))
    })
}

module.exports = { rule, begin, headerPairs, splitTarget, NotShareable, REFRESH_HEADER }
