// The ESM entry point exposes the same API as the CommonJS one.
import test from 'node:test'
import assert from 'node:assert/strict'
import { Cache, KeyNotFoundError } from 'stratacache'
import cjs from '../../node/index.js'

test('ESM import works and is the same implementation', async () => {
  assert.equal(Cache, cjs.Cache)
  const c = new Cache({ namespace: `esm-${process.pid}` })
  await c.set('k', { ok: true })
  assert.deepEqual(await c.get('k'), { ok: true })
  await assert.rejects(c.incr('missing'), KeyNotFoundError)
  await c.close()
})
