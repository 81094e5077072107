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

// Reads `k` (1) through `c` until one went over the JS connection, as
// CLIENT LIST tells (its last command a GET), through a raw client closed after.
const untilJsReads = `
  const Redis = require(require.resolve('ioredis', { paths: [${JSON.stringify(path.dirname(entry))}] }))
  const raw = new Redis(${JSON.stringify(REDIS_URL)})
  for (;;) {
    if ((await c.get('k')) !== 1) process.exit(4)
    const list = await raw.client('LIST')
    if (list.split('\\n').some((l) => l.includes(' name=stratacache-reads ') && l.includes(' cmd=get '))) break
  }
  raw.disconnect()`

for (const [label, body] of [
  ['after close()', `const c = new Cache({ redis: ${JSON.stringify(REDIS_URL)}, namespace: 'exit-a' }); await c.set('k', 1); await c.getOrSet({ key: 'g', factory: async () => 2 }); await c.close()`],
  ['without close()', `const c = new Cache({ redis: ${JSON.stringify(REDIS_URL)}, namespace: 'exit-b' }); await c.set('k', 1); await c.get('k')`],
  ['L1 only', `const c = new Cache({ namespace: 'exit-c' }); await c.set('k', 1)`],
  // Reads over the JS-thread connection (node/reader.js): its socket must
  // not hold the process, closed or not (`kept`: still referenced, so it is
  // not the finalizer that closes it).
  ['after reads over the JS connection, without close()', `const c = new Cache({ redis: ${JSON.stringify(REDIS_URL)}, namespace: 'exit-d', l1: false }); globalThis.kept = c; await c.set('k', 1); ${untilJsReads}`],
  ['closed with reads in flight', `const c = new Cache({ redis: ${JSON.stringify(REDIS_URL)}, namespace: 'exit-e', l1: false }); await c.set('k', 1); ${untilJsReads}; const p = Promise.all(Array.from({ length: 10 }, () => c.get('k').catch(() => 'closed'))); await c.close(); await p`],
]) {
  test(`the process exits on its own ${label}`, () => {
    const r = runScript(body)
    assert.equal(r.error, undefined, `did not exit in time: ${r.error}`)
    assert.equal(r.status, 0, r.stderr)
  })
}

test('a read in flight over the JS connection keeps the process alive until answered', () => {
  const r = runScript(
    `const c = new Cache({ redis: ${JSON.stringify(REDIS_URL)}, namespace: 'exit-f', l1: false }); globalThis.kept = c; await c.set('k', 1); ${untilJsReads}; const v = await c.get('k'); process.stdout.write('got ' + v)`,
  )
  assert.equal(r.error, undefined, `did not exit in time: ${r.error}`)
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.stdout, 'got 1')
})
