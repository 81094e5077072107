'use strict'
// Python and Node share entries: same envelope, same key layout. A JSON
// entry (and a counter) written by one is read by the other, through Redis
// and through Redis Cluster. Runs the real Python package in a child process.
const test = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const { Cache } = require('../../node/index.js')
const { CONFIGS, unique } = require('./helpers.js')

const PYTHON = process.env.STRATACACHE_PYTHON
if (!PYTHON) throw new Error('STRATACACHE_PYTHON is not set: run the tests with `make test`')

function python(code, env) {
  return execFileSync(PYTHON, ['-c', code], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30000 }).trim()
}

for (const name of ['redis', 'cluster']) {
  test(`${name}: Python and Node read each other's JSON entries and counters`, async () => {
    const cfg = CONFIGS[name]
    const ns = unique('interop')
    const pyCfg = name === 'redis' ? `redis_url=${JSON.stringify(cfg.redis)}` : `cluster=${JSON.stringify(cfg.cluster)}`
    const node = new Cache({ namespace: ns, ...cfg })
    await node.set('from-node', { lang: 'node', list: [1, 2.5, 'three'], nested: { ok: true } })
    await node.set('node-counter', 40)
    const out = python(
      `import json, stratacache
c = stratacache.Cache(${pyCfg}, namespace=${JSON.stringify(ns)}, serializer="json")
print(json.dumps(c.get("from-node")))
print(c.incr("node-counter", 2))
c.set("from-python", {"lang": "python", "n": None, "u": "ünïcødé"})
c.set("py-counter", 7)`,
    )
    const [fromNode, counter] = out.split('\n')
    assert.deepEqual(JSON.parse(fromNode), { lang: 'node', list: [1, 2.5, 'three'], nested: { ok: true } })
    assert.equal(counter, '42')
    assert.deepEqual(await node.get('from-python'), { lang: 'python', n: null, u: 'ünïcødé' })
    assert.equal(await node.get('node-counter'), 42, 'the counter Python incremented')
    assert.equal(await node.incr('py-counter'), 8)
    await node.close()
  })
}

test('a pickled Python entry is a miss in Node, never misread', async () => {
  const { REDIS_URL } = require('./helpers.js')
  const ns = unique('interop-pickle')
  python(`import stratacache
stratacache.Cache(redis_url=${JSON.stringify(REDIS_URL)}, namespace=${JSON.stringify(ns)}).set("p", {"a": {1, 2}})`)
  const node = new Cache({ namespace: ns, redis: REDIS_URL })
  assert.equal(await node.get('p'), undefined)
  await node.close()
})
