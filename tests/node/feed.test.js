'use strict'
// PgListener and `npx stratacache listen` against a real PostgreSQL
// (wal_level=logical, STRATACACHE_PG_URL from scripts/with-postgres.sh;
// SQL through psql, as an admin would) and Redis. The feed's semantics are
// the core's (crates/core/tests/feed.rs); this checks what Node adds.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const crypto = require('node:crypto')
const { execFileSync, spawn } = require('node:child_process')
const { Cache, ConfigError } = require('../../node/index.js')
const { PgListener } = require('../../node/feed.js')
const { REDIS_URL, unique, until } = require('./helpers.js')

const PG_URL = process.env.STRATACACHE_PG_URL
if (!PG_URL) throw new Error('STRATACACHE_PG_URL is not set: run the tests with `make test`')

function psql(sql) {
  execFileSync('psql', [PG_URL, '-v', 'ON_ERROR_STOP=1', '-qc', sql], { stdio: ['ignore', 'ignore', 'inherit'] })
}

function fixture() {
  const name = `nodefeed_${crypto.randomBytes(5).toString('hex')}`
  psql(`CREATE TABLE ${name} (id int PRIMARY KEY, category int); ALTER TABLE ${name} REPLICA IDENTITY FULL; INSERT INTO ${name} SELECT g, g % 2 FROM generate_series(1, 3) g`)
  return {
    name,
    drop() {
      psql(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '${name}'; DROP PUBLICATION IF EXISTS ${name}; DROP TABLE ${name}`)
    },
  }
}

test('PgListener: row changes invalidate the default and the template tags; stats; stop', async () => {
  const t = fixture()
  const cache = new Cache({ redis: REDIS_URL, namespace: unique('nodefeed') })
  try {
    await cache.set('row1', 'one', '5m', { tags: [`table:public.${t.name}:1`] })
    await cache.set('row2', 'two', '5m', { tags: [`table:public.${t.name}:2`] })
    await cache.set('odd', 'cat', '5m', { tags: ['category:1'] })
    const l = await PgListener.start(cache, PG_URL, [t.name], { slot: t.name, publication: t.name, pollInterval: '10ms' })
    await until('active', () => l.stats().active)
    psql(`UPDATE ${t.name} SET category = 7 WHERE id = 1`)
    await until("row 1's entry invalidated", async () => (await cache.get('row1')) === undefined)
    await until('the transaction counted', () => l.stats().transactions === 1)
    assert.equal(await cache.get('row2'), 'two')
    const s = l.stats()
    assert.deepEqual([s.transactions, s.changes, s.tagsInvalidated, s.errors], [1, 1, 2, 0])
    await l.stop()
    await l.stop() // idempotent
    // The stop gave the fleet lease up: the next listener is active at
    // once, not after the lease's 5 s.
    const t0 = Date.now()
    const again = await PgListener.start(cache, PG_URL, [t.name], { slot: t.name, publication: t.name })
    await until('the next listener is active', () => again.stats().active)
    assert.ok(Date.now() - t0 < 4000, `${Date.now() - t0} ms`)
    await again.stop()
    const tpl = await PgListener.start(cache, PG_URL, { [t.name]: ['category:{category}'] }, { slot: t.name, publication: t.name })
    psql(`UPDATE ${t.name} SET category = 1 WHERE id = 3`)
    await until("category 1's entry invalidated", async () => (await cache.get('odd')) === undefined)
    assert.equal(await cache.get('row2'), 'two')
    await tpl.stop()
  } finally {
    cache.close()
    t.drop()
  }
})

test('PgListener: configuration errors are ConfigError naming the problem', async () => {
  const t = fixture()
  const cache = new Cache({ namespace: unique('nodefeed-bad') })
  try {
    const o = { slot: t.name, publication: t.name }
    await assert.rejects(PgListener.start(cache, PG_URL, ['nope'], o), (e) => e instanceof ConfigError && e.code === 'E_CONFIG' && /table "public\.nope" does not exist/.test(e.message))
    await assert.rejects(PgListener.start(cache, PG_URL, { [t.name]: ['x:{nope}'] }, o), /no column "nope"/)
    await assert.rejects(PgListener.start(cache, 'postgresql://postgres@127.0.0.1:1/postgres', [t.name]), /cannot connect/)
    await assert.rejects(PgListener.start(cache, PG_URL, [t.name], { ...o, slott: 'x' }), /unknown PgListener option "slott" \(did you mean slot\?\)/)
  } finally {
    cache.close()
    t.drop()
  }
})

test('npx stratacache listen: invalidates until interrupted; exit 2 on a configuration error', async () => {
  const t = fixture()
  const namespace = unique('nodefeed-cli')
  const cache = new Cache({ redis: REDIS_URL, namespace })
  const cli = path.join(__dirname, '../../node/cli.js')
  const args = ['listen', '--postgres', PG_URL, '--redis', REDIS_URL, '--namespace', namespace, '--table', t.name, '--slot', t.name, '--publication', t.name, '--stats-every', '0']
  const p = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    await cache.set('row2', 'two', '5m', { tags: [`table:public.${t.name}:2`] })
    const first = await new Promise((resolve) => p.stdout.once('data', (d) => resolve(String(d))))
    assert.match(first, new RegExp(`^stratacache listen: ${t.name} -> namespace '${namespace}'`))
    psql(`UPDATE ${t.name} SET category = 9 WHERE id = 2`)
    await until('the CLI invalidated row 2', async () => (await cache.get('row2')) === undefined)
    const exited = new Promise((resolve) => p.once('exit', resolve))
    p.kill('SIGINT')
    assert.equal(await exited, 0)
    const refused = async (args, message) => {
      const bad = spawn(process.execPath, [cli, 'listen', ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
      let err = ''
      bad.stderr.on('data', (d) => (err += d))
      assert.equal(await new Promise((resolve) => bad.once('exit', resolve)), 2)
      assert.match(err, message)
    }
    await refused(['--postgres', PG_URL, '--table', 'nope'], /table "public\.nope" does not exist/)
    // --config: the core reads the file (the same rules as Python's CLI).
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sc-listen-'))
    fs.writeFileSync(path.join(dir, 'bad.json'), '{"postgres": {"url": "u", "tables": {"t": null}, "slott": "x"}}')
    await refused(['--config', path.join(dir, 'bad.json')], /unknown field `slott`, expected one of/)
    await refused(['--config', path.join(dir, 'bad.json'), '--nats', 'nats://x'], /--config replaces the source flags: remove --nats/)
    fs.rmSync(dir, { recursive: true })
  } finally {
    if (p.exitCode === null) p.kill('SIGKILL')
    cache.close()
    t.drop()
  }
})

// Publishers: the brokers' own Python clients (pika, nats-py), run with
// the test environment's Python.
const PYTHON = process.env.STRATACACHE_PYTHON
if (!PYTHON) throw new Error('STRATACACHE_PYTHON is not set: run the tests with `make test`')
const NATS_URL = process.env.STRATACACHE_NATS_URL || 'nats://127.0.0.1:4222'
const AMQP_URL = process.env.STRATACACHE_AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/%2f'
const PUBLISH = `
import asyncio, json, sys
broker, url, where, bodies = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
if broker == "nats":
    import nats
    async def go():
        nc = await nats.connect(url)
        js = nc.jetstream()
        for b in bodies:
            await js.publish(where, b.encode())
        await nc.close()
    asyncio.run(go())
elif broker == "amqp":
    import pika
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.confirm_delivery()
    for b in bodies:
        ch.basic_publish("", where, b.encode())
    conn.close()
else:
    import pika
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    dead = ch.basic_get(where + ".dead", auto_ack=True)
    print(dead[2].decode() if dead[2] else "")
    for q in (where, where + ".dead"):
        ch.queue_delete(q)
    ch.exchange_delete(where + ".dead")
    conn.close()
`
function py(broker, url, where, bodies = []) {
  return execFileSync(PYTHON, ['-c', PUBLISH, broker, url, where, JSON.stringify(bodies)], { encoding: 'utf8' })
}

test('EventListener.nats and .rabbitmq: plain and Debezium events, a poison message, errors', async () => {
  const { EventListener } = require('../../node/feed.js')
  const cache = new Cache({ redis: REDIS_URL, namespace: unique('nodeevents') })
  const run = crypto.randomBytes(4).toString('hex')
  const tables = { 'shop.items': { key: ['sku'], tags: ['item:{sku}', 'category:{cat}'] } }
  const bodies = [
    '{"tags": ["product:1"], "keys": ["home"]}',
    '{poison',
    '{"op": "c", "after": {"sku": "a-1", "cat": 3}, "source": {"db": "shop", "table": "items"}}',
  ]
  try {
    for (const broker of ['nats', 'amqp']) {
      await cache.set('home', 'v')
      await cache.set('p1', 'v', '5m', { tags: ['product:1'] })
      await cache.set('c3', 'v', '5m', { tags: ['category:3'] })
      let l
      if (broker === 'nats') {
        l = await EventListener.nats(cache, NATS_URL, { stream: `SCNODE${run}`, subjects: [`scnode${run}.>`], durable: `scnode${run}`, tables })
        py('nats', NATS_URL, `scnode${run}.events`, bodies)
      } else {
        l = await EventListener.rabbitmq(cache, AMQP_URL, { queue: `scnode-${run}`, tables })
        py('amqp', AMQP_URL, `scnode-${run}`, bodies)
      }
      await until(`${broker}: both events`, async () => (await cache.get('home')) === undefined && (await cache.get('p1')) === undefined && (await cache.get('c3')) === undefined)
      await until(`${broker}: counted`, () => l.stats().messages === 2 && l.stats().malformed === 1)
      const s = l.stats()
      assert.deepEqual([s.messages, s.keysDeleted, s.tagsInvalidated, s.malformed, s.errors], [2, 1, 3, 1, 0])
      await l.stop()
    }
    assert.equal(py('dead', AMQP_URL, `scnode-${run}`).trim(), '{poison', 'dead-lettered')
    await assert.rejects(EventListener.rabbitmq(cache, 'amqp://guest:wrong@127.0.0.1:5672/%2f'), (e) => e instanceof ConfigError && /cannot connect/.test(e.message))
    await assert.rejects(EventListener.nats(cache, NATS_URL, { durible: 'x' }), /unknown EventListener.nats option "durible" \(did you mean durable\?\)/)
  } finally {
    cache.close()
  }
})
