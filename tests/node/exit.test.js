'use strict'
// No handle keeps the process alive: after close(), or with the cache
// simply left unreferenced, node exits on its own.
const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { REDIS_URL } = require('./helpers.js')

const entry = path.join(__dirname, '..', '..', 'node', 'index.js')

function runScript(body) {
  const script = `const { Cache } = require(${JSON.stringify(entry)});\n(async () => {\n${body}\n})().catch((e) => { console.error(e); process.exit(3) })`
  return spawnSync(process.execPath, ['-e', script], { timeout: 15000, encoding: 'utf8' })
}

for (const [label, body] of [
  ['after close()', `const c = new Cache({ redis: ${JSON.stringify(REDIS_URL)}, namespace: 'exit-a' }); await c.set('k', 1); await c.getOrSet({ key: 'g', factory: async () => 2 }); await c.close()`],
  ['without close()', `const c = new Cache({ redis: ${JSON.stringify(REDIS_URL)}, namespace: 'exit-b' }); await c.set('k', 1); await c.get('k')`],
  ['L1 only', `const c = new Cache({ namespace: 'exit-c' }); await c.set('k', 1)`],
]) {
  test(`the process exits on its own ${label}`, () => {
    const r = runScript(body)
    assert.equal(r.error, undefined, `did not exit in time: ${r.error}`)
    assert.equal(r.status, 0, r.stderr)
  })
}
