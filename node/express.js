'use strict'
// Express middleware: `app.get('/items/:id', cached({ cache, ttl: '1m' }), handler)`.
// Translates Express requests and responses for the core's HTTP engine
// (node/http.js drives it; docs/architecture.md describes the rules).
// Put it on unsafe routes too (or `app.use(cached({ cache }))`): a
// successful POST/PUT/PATCH/DELETE invalidates its path's entries.

const http = require('node:http')
const https = require('node:https')
const { rule, begin, headerPairs, splitTarget } = require('./http.js')
const { metricsAnswer } = require('./metrics.js')

const kHandled = Symbol('stratacache.express.handled')

// Run the rest of the chain and capture what it sends instead of sending
// it. A response written in pieces (a stream) is passed through as it
// goes: `streamed()` gives the headers to add, and the capture resolves
// `{ streamed: true }`.
function capture(res, next, streamed) {
  return new Promise((resolve) => {
    const chunks = []
    const { write, end, writeHead } = res
    const restore = () => {
      res.write = write
      res.end = end
      res.writeHead = writeHead
    }
    res.writeHead = function (status, ...rest) {
      res.statusCode = status
      const hdrs = rest.find((x) => x && typeof x === 'object')
      if (hdrs) for (const [k, v] of Array.isArray(hdrs) ? hdrs : Object.entries(hdrs)) res.setHeader(k, v)
      return res
    }
    res.write = function (...args) {
      restore()
      setAll(res, streamed())
      resolve({ streamed: true })
      return res.write(...args)
    }
    res.end = function (chunk, encoding, cb) {
      if (chunk !== undefined && chunk !== null && typeof chunk !== 'function') {
        chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, /** @type {BufferEncoding} */ (typeof encoding === 'string' ? encoding : 'utf8')))
      }
      restore()
      resolve({ status: res.statusCode, headers: headerPairs(res.getHeaders()), body: Buffer.concat(chunks) })
      const done = [chunk, encoding, cb].find((f) => typeof f === 'function')
      if (done) process.nextTick(done)
      return res
    }
    next()
  })
}

// The background refresh of a stale entry: the same request again, to this
// server over its own TCP address, through every middleware of the app;
// without a body, and given up after REPLAY_TIMEOUT_MS. A server on a unix
// socket (no TCP address) is not replayed: the entry refreshes when a
// request leads after its grace.
const REPLAY_TIMEOUT_MS = 30_000
const HOP_BY_HOP = ['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'upgrade', 'te', 'trailer', 'expect']

function replay(req, headers) {
  const sock = req.socket
  if (!sock || typeof sock.localPort !== 'number' || !sock.localAddress) {
    return Promise.reject(new Error('not a TCP server: stale entries are refreshed by a request after their grace'))
  }
  const lib = sock.encrypted ? https : http
  const h = { ...headers, connection: 'close' }
  for (const name of HOP_BY_HOP) if (name !== 'connection') delete h[name]
  return new Promise((resolve, reject) => {
    const r = lib.request(
      {
        host: sock.localAddress,
        port: sock.localPort,
        method: 'GET',
        path: req.originalUrl || req.url,
        headers: h,
        agent: false,
        rejectUnauthorized: false, // it is this very server
        timeout: REPLAY_TIMEOUT_MS,
      },
      (res) => {
        res.resume()
        res.on('end', resolve)
        res.on('error', reject)
      },
    )
    r.on('timeout', () => r.destroy(new Error('background refresh timed out')))
    r.on('error', reject)
    r.end()
  })
}

function setAll(res, flat) {
  for (let i = 0; i < flat.length; i += 2) res.setHeader(flat[i], flat[i + 1])
}

// The answer's headers replace whatever the chain set so far (they were
// captured with the response, those included); given to writeHead as
// Node's flat [name, value, ...] list, checked once there.
function sendAnswer(res, a) {
  for (const name of res.getHeaderNames()) res.removeHeader(name)
  res.writeHead(a.status, a.headers)
  res.end(a.body || undefined)
}

/** Express middleware factory; see `node/express.d.ts` for the options. */
function cached(options) {
  const r = rule(options)
  return function stratacacheCached(req, res, next) {
    // One cache instance per request: with app.use(cached()) and a route's
    // own cached(), the inner one would wait on the outer one's flight.
    if (req[kHandled]) return next()
    req[kHandled] = true
    // The path as Express routes it (raw: see splitTarget).
    const { path, query } = splitTarget(req.originalUrl || req.url)
    const info = {
      method: req.method,
      path,
      query,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      raw: req,
      refresh: (headers) => replay(req, headers),
    }
    begin(r, info)
      .then(async (step) => {
        if (step.answer) return sendAnswer(res, step.answer)
        if (step.pass) {
          setAll(res, step.pass)
          return next()
        }
        // Express 5 routes thrown and rejected handler errors to the error
        // handler, which also ends the response: capture resolves either way.
        // A client gone before the handler answered releases the waiters.
        res.once('close', () => step.abort(new Error('the client went away')))
        const produced = await capture(res, () => step.run(next), () => step.streamed())
        const out = await step.finish(produced)
        if (produced.streamed) return
        if (out.answer) sendAnswer(res, out.answer)
        else {
          setAll(res, out.pass)
          res.end(produced.body)
        }
        // Sent: session middleware adds Set-Cookie as the headers go out.
        await out.revoke(res.hasHeader('set-cookie'))
      })
      .catch(next)
  }
}

/**
 * A Prometheus endpoint for `caches` (a cache or an array): each metric
 * family once, a sample per namespace. With `{ token }` it answers only
 * `Authorization: Bearer <token>`. `app.get('/metrics', metricsHandler(cache))`.
 */
function metricsHandler(caches, options = {}) {
  const answer = metricsAnswer(caches, options)
  return (req, res) => {
    const a = answer(req.headers.authorization)
    res.statusCode = a.status
    res.setHeader('content-type', a.type)
    res.setHeader('cache-control', 'no-store')
    res.end(a.body)
  }
}

module.exports = { cached, metricsHandler, default: cached }
