'use strict'
// Express middleware: `app.get('/items/:id', cached({ cache, ttl: '1m' }), handler)`.
// Caches the rendered response with HTTP semantics (see node/http.js and
// docs/architecture.md): coalesced misses, strong ETag and 304,
// Cache-Control/Age/Vary, no-store/private/Set-Cookie never stored,
// credentialed requests never served a shared entry unless `keyBy` is given.

const { rule, begin, headerPairs } = require('./http.js')

// Run the rest of the chain and capture what it sends instead of sending it.
function capture(res, next) {
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
    res.write = function (chunk, encoding, cb) {
      if (chunk !== undefined && chunk !== null && typeof chunk !== 'function') {
        chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, typeof encoding === 'string' ? encoding : 'utf8'))
      }
      const done = [encoding, cb].find((f) => typeof f === 'function')
      if (done) process.nextTick(done)
      return true
    }
    res.end = function (chunk, encoding, cb) {
      if (chunk !== undefined && chunk !== null && typeof chunk !== 'function') res.write(chunk, encoding)
      restore()
      const body = Buffer.concat(chunks)
      resolve({ status: res.statusCode, headers: headerPairs(res.getHeaders()), body })
      const done = [chunk, encoding, cb].find((f) => typeof f === 'function')
      if (done) process.nextTick(done)
      return res
    }
    next()
  })
}

/** Express middleware factory; see `node/express.d.ts` for the options. */
function cached(options) {
  const r = rule(options)
  return function stratacacheCached(req, res, next) {
    if (req.method !== 'GET' && req.method !== 'HEAD') return next()
    const url = new URL(req.originalUrl || req.url, 'http://x')
    const info = {
      method: req.method,
      path: url.pathname,
      query: [...url.searchParams.entries()],
      headers: req.headers,
      route: (req.baseUrl || '') + (req.route && req.route.path ? String(req.route.path) : url.pathname),
      raw: req,
    }
    const send = (out) => {
      if (!out.fromHandler) for (const name of res.getHeaderNames()) res.removeHeader(name)
      res.statusCode = out.status
      if (!out.fromHandler) for (const [k, v] of out.headers) res.setHeader(k, v)
      if (r.xCache) res.setHeader('x-cache', out.state)
      res.end(out.body || undefined)
    }
    begin(r, info)
      .then(async (step) => {
        if (step.answer) return send(step.answer)
        // Express 5 routes thrown and rejected handler errors to the error
        // handler, which also ends the response: capture resolves either way.
        const produced = await capture(res, next)
        send(await step.finish(produced))
      })
      .catch(next)
  }
}

module.exports = { cached, default: cached }
