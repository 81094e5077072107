'use strict'
// The framework-neutral part of the Express and Fastify middleware. The
// rules themselves (keys, what may be stored, ETag, Cache-Control, the
// stored format) are the core's (stratacache::http), shared with Python.

const binding = require('./binding.js')
const { kInternal, parseTtl } = require('./index.js')
const { InvalidValueError } = require('./errors.js')

const FRESH = 0
const LEAD = 2
const DEFAULT_CREDENTIAL_COOKIES = ['sessionid', 'session', 'connect.sid', '_session', 'remember_token']
const L2 = new Set(['E_L2', 'E_L2_UNAVAILABLE', 'E_L2_TIMEOUT'])

/** Released to coalesced requests when the leader's response may not be shared. */
class NotShareable extends Error {}

function rule(options = {}) {
  const { cache } = options
  if (!cache || typeof cache[kInternal] !== 'function') throw new InvalidValueError('options.cache must be a stratacache Cache')
  const ttlMs = parseTtl(options.ttl === undefined ? '60s' : options.ttl)
  if (!(ttlMs > 0) || ttlMs === Infinity) throw new InvalidValueError('ttl must be a finite duration > 0')
  const swrMs = parseTtl(options.staleWhileRevalidate === undefined ? 0 : options.staleWhileRevalidate) || 0
  const sieMs = parseTtl(options.staleIfError === undefined ? 0 : options.staleIfError, 'staleIfError') || 0
  if (!(swrMs >= 0 && sieMs >= 0)) throw new InvalidValueError('staleWhileRevalidate and staleIfError must be >= 0')
  return {
    cache,
    ttlMs,
    ttlS: Math.max(1, Math.round(ttlMs / 1000)),
    swrMs,
    swrS: Math.round(swrMs / 1000),
    sieMs,
    // How long an entry stays servable after its TTL (for either use).
    graceMs: Math.max(swrMs, sieMs),
    vary: (options.vary || []).map((h) => h.toLowerCase()),
    keyBy: options.keyBy,
    credentialCookies: options.credentialCookies || DEFAULT_CREDENTIAL_COOKIES,
    xCache: options.xCache !== false,
    name: options.name,
    // Tags of the stored responses: a list, or (req) => list.
    tags: options.tags,
  }
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
 * First half of handling a request.
 * req: { method, path, query: [[k, v]], headers (lower-case), route, raw }
 * Resolves either { answer } (send it; the route handler must not run) or
 * { finish, abort }: run the route handler, then `finish(res)` with what it
 * produced ({ status, headers: [[k, v]], body: Buffer }) resolves the answer
 * to send, or `abort(err)` if it failed before producing anything.
 * An answer is { status, headers: [[k, v]], body: Buffer | null, state,
 * fromHandler } (fromHandler: send the handler's own response as it is).
 */
async function begin(r, req) {
  const internal = r.cache[kInternal]()
  const passThrough = { finish: async (res) => ({ ...res, state: 'BYPASS', fromHandler: true }), abort: () => {} }
  const directives = binding.httpDirectives(req.headers['cache-control'] || '')
  let principal = null
  if (binding.httpHasCredentials(req.headers.authorization, req.headers.cookie, r.credentialCookies)) {
    if (!r.keyBy) return passThrough
    principal = String(await r.keyBy(req.raw))
  }
  if (directives.includes('no-store')) return passThrough
  const priv = principal !== null
  const key = binding.httpRequestKey(
    r.name || req.route,
    'GET',
    req.path,
    req.query,
    r.vary.map((h) => [h, String(req.headers[h] || '')]),
    principal,
  )
  const answer = (entry, state) => {
    const a = binding.httpAnswer(entry, Date.now() / 1000, priv, r.swrS, r.vary, req.headers['if-none-match'])
    return a && { status: a.status, headers: a.headers, body: a.body, state, fromHandler: false }
  }
  const store = (res) => binding.httpStore(res.status, res.headers, res.body, Date.now() / 1000, r.ttlS, priv)
  const tags = typeof r.tags === 'function' ? await r.tags(req.raw) : r.tags
  const l2Trouble = (e) => {
    if (!(internal.failOpen && L2.has(e.code))) throw e
    internal.emitError(e)
  }

  if (directives.includes('no-cache')) {
    // Revalidate: the handler runs and its response replaces the entry.
    return {
      finish: async (res) => {
        const entry = store(res)
        if (!entry) return passThrough.finish(res)
        await internal.setRaw(key, entry, r.ttlMs, r.graceMs, tags).catch(l2Trouble)
        return answer(entry, 'MISS')
      },
      abort: () => {},
    }
  }

  let look
  try {
    look = await internal.lookup(key, { allowStale: r.swrMs > 0, failSafe: r.sieMs > 0 }, tags)
  } catch (e) {
    if (e instanceof NotShareable) return passThrough // the leader's response was not shareable
    l2Trouble(e)
    return passThrough
  }
  if (look.kind !== LEAD && look.data && !look.lease) {
    const a = answer(look.data, look.kind === FRESH ? 'HIT' : 'STALE')
    if (a) return { answer: a }
  }
  if (!look.lease) return passThrough
  // We lead (a miss, or the one refresh of a stale entry): the handler runs
  // once and coalesced requests get its response.
  const lease = look.lease
  let settled = false
  return {
    finish: async (res) => {
      settled = true
      if (res.status >= 500 && r.sieMs > 0) {
        // stale-if-error: serve the previous entry instead of the failure,
        // and keep it a while so the failing backend is not hammered.
        const stale = await internal.failSafe(lease, new Error(`handler answered ${res.status}`)).catch(l2Trouble)
        const a = stale && answer(stale, 'STALE')
        if (a) return a
      }
      const entry = store(res)
      if (!entry) {
        internal.abandon(lease, new NotShareable('response may not be shared'))
        return passThrough.finish(res)
      }
      await internal.complete(lease, entry, r.ttlMs, r.graceMs, tags).catch(l2Trouble)
      return answer(entry, 'MISS')
    },
    abort: (reason) => {
      if (settled) return
      settled = true
      // Waiters run their own handler rather than share this failure.
      internal.abandon(lease, new NotShareable(String((reason && reason.message) || reason || 'no response')))
    },
  }
}

module.exports = { rule, begin, headerPairs, NotShareable, DEFAULT_CREDENTIAL_COOKIES }
