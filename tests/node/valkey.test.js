'use strict'
// Valkey's URL schemes: `valkey://` works (Valkey speaks Redis's protocol;
// Debian 12 has no Valkey server, so it is checked against the test Redis).

const test = require('node:test')
const assert = require('node:assert/strict')
const { Cache } = require('../../node/index.js')
const { REDIS_URL, unique } = require('./helpers.js')

test('a valkey:// URL', async () => {
  const redis = REDIS_URL.replace('redis://', 'valkey://')
  const namespace = unique('valkey')
  const a = new Cache({ redis, namespace })
  const b = new Cache({ redis, namespace, l1: false })
  await a.set('k', { over: 'valkey://' })
  assert.deepEqual(await b.get('k'), { over: 'valkey://' })
  await a.close()
  await b.close()
})
