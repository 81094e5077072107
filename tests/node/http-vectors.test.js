'use strict'
// The HTTP key golden vectors (tests/vectors/http_keys.json) through the
// Node binding: the same request gives the same key in every language.
const test = require('node:test')
const assert = require('node:assert/strict')
const { HttpRoute } = require('../../node/binding.js')
const vectors = require('../vectors/http_keys.json')

for (const v of vectors) {
  test(`HTTP key: ${v.name}`, () => {
    const route = new HttpRoute({
      ttlMs: 60000,
      staleWhileRevalidateMs: 0,
      staleIfErrorMs: 0,
      vary: v.vary,
      sharedCookies: v.shared_cookies,
      privateHeaders: v.private_headers,
      keyed: v.keyed,
      xCache: true,
    })
    const ex = route.exchange(v.method, v.path, v.query, v.headers.flat().join('\0'))
    let step = ex.start()
    if (step === 'principal') step = ex.setPrincipal(v.principal)
    // The binding's one-string step: a key, `peek <key>` (HEAD), `pass <reason>` or `unsafe`.
    assert.equal(step.replace(/^pass /, 'pass:').replace(/^peek /, ''), v.outcome)
  })
}
