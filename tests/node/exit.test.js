'use strict'
// No handle keeps the process alive: after close(), or with the cache
// simply left unreferenced, node exits on its own.
const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { REDIS_URL, freePort, startRedis, kill } = require('./helpers.js')

const entry = path.join(__dirname, '..', '..', 'node', 'index.js')

function runScript(body) {
  const script = `const { Cache } = require(${JSON.stringify(entry)});\n(async () => {\n${body}\n})().catch((e) => { console.error(e); process.exit(3) })`
  return spawnSync(process.execPath, ['-e', script], { timeout: 15000, encoding: 'utf8' })
}

for (const [label, body] of [
  ['after close()', `const c = new Cache({ redis: ${JSON.stringify(REDIS_URL)}, namespace: 'exit-a' }); await c.set('k', 1); await c.getOrSet({ key: 'g', factory: async () => 2 }); await c.close()`],
  ['without close()', `const c = new Cache({ redis: ${JSON.stringify(REDIS_URL)}, namespace: 'exit-b' }); await c.set('k', 1); await c.get('k')`],
  ['L1 only', `const c = new Cache({ namespace: 'exit-c' }); await c.set('k', 1)`],
  // Reads from Redis: the connection must not hold the process, closed or
  // not (`kept`: still referenced, so it is not the finalizer that closes it).
  ['after reads from Redis, without close()', `const c = new Cache({ redis: ${JSON.stringify(REDIS_URL)}, namespace: 'exit-d', l1: false }); globalThis.kept = c; await c.set('k', 1); if ((await c.get('k')) !== 1) process.exit(4)`],
  ['closed with reads in flight', `const c = new Cache({ redis: ${JSON.stringify(REDIS_URL)}, namespace: 'exit-e', l1: false }); await c.set('k', 1); if ((await c.get('k')) !== 1) process.exit(4); const p = Promise.all(Array.from({ length: 10 }, () => c.get('k').catch(() => 'closed'))); await c.close(); await p`],
]) {
  test(`the process exits on its own ${label}`, () => {
    const r = runScript(body)
    assert.equal(r.error, undefined, `did not exit in time: ${r.error}`)
    assert.equal(r.status, 0, r.stderr)
  })
}

// A redis-server of the test's own that the child script can stop
// (SIGSTOP: connections stay up, nothing is answered).
async function withOwnRedis(fn) {
  const port = await freePort()
  const server = await startRedis(port)
  try {
    return fn(`redis://127.0.0.1:${port}`, server.pid)
  } finally {
    server.kill('SIGCONT')
    await kill(server)
  }
}

// Redis is stopped while a GET is in flight and continued by a detached
// shell a moment later: the child must print the value before it exits.
// The promise is settled through the addon's one threadsafe function
// (crates/node/src/settle.rs), which holds the loop only while a promise
// is pending. Without it, nothing else holds the loop and the process
// would exit with the GET unanswered.
test('a read in flight keeps the process alive until answered', async () => {
  const r = await withOwnRedis((url, pid) =>
    runScript(
      `const c = new Cache({ redis: ${JSON.stringify(url)}, namespace: 'exit-f', l1: false, opTimeout: 10000 }); globalThis.kept = c; await c.set('k', 1)
      process.kill(${pid}, 'SIGSTOP')
      require('node:child_process').spawn('sh', ['-c', 'sleep 0.3; kill -CONT ${pid}'], { stdio: 'ignore', detached: true }).unref()
      const v = await c.get('k'); process.stdout.write('got ' + v)`,
    ),
  )
  assert.equal(r.error, undefined, `did not exit in time: ${r.error}`)
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.stdout, 'got 1')
})

test('a GET a stopped Redis never answers does not keep a closed cache\'s process alive', async () => {
  // The core's opTimeout fails the GET even after close(); the read then
  // settles and nothing holds the loop.
  const r = await withOwnRedis((url, pid) =>
    runScript(
      `const c = new Cache({ redis: ${JSON.stringify(url)}, namespace: 'exit-g', l1: false, opTimeout: 200, connectTimeout: 200 }); globalThis.kept = c; await c.set('k', 1); await c.get('k')
      process.kill(${pid}, 'SIGSTOP')
      const p = c.get('k').then((v) => 'got ' + v, (e) => e.code)
      await c.close()
      process.stdout.write(await p)`,
    ),
  )
  assert.equal(r.error, undefined, `did not exit in time: ${r.error}`)
  assert.equal(r.status, 0, r.stderr)
  assert.match(r.stdout, /^(got undefined|E_CLOSED)$/)
})
