'use strict'
// PgListener and `npx stratacache listen` against a real PostgreSQL
// (wal_level=logical, STRATACACHE_PG_URL from scripts/with-postgres.sh;
// SQL through psql, as an admin would) and Redis. The feed's semantics are
// the core's (crates/core/tests/feed.rs); this checks what Node adds.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const crypto = require('node:crypto')
const { execFileSync, spawn } = require('node:child_process')
const { Cache, ConfigError } = require('../../node/index.js')
const { PgListener } = require('../../node/feed.js')
const { REDIS_URL, unique } = require('./helpers.js')

const PG_URL = process.env.STRATACACHE_PG_URL
if (!PG_URL) throw new Error('STRATACACHE_PG_URL is not set: run the tests with `make test`')

function psql(sql) {
  execFileSync('psql', [PG_URL, '-v', 'ON_ERROR_STOP=1', '-qc', sql], { stdio: ['ignore', 'ignore', 'inherit'] })
}

async function until(what, fn, ms = 10_000) {
  const deadline = Date.now() + ms
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

function fixture() {
  const name = `nodefeed_${crypto.randomBytes(5).toString('hex')}`
  psql(`CREATE TABLE ${name} (id int PRIMARY KEY, category int); INSERT INTO ${name} SELECT g, g % 2 FROM generate_series(1, 3) g`)
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
    assert.equal(await cache.get('row2'), 'two')
    const s = l.stats()
    assert.deepEqual([s.transactions, s.changes, s.tagsInvalidated, s.errors], [1, 1, 2, 0])
    await l.stop()
    await l.stop() // idempotent
    assert.equal(l.stats().active, false)
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
    const bad = spawn(process.execPath, [cli, 'listen', '--postgres', PG_URL, '--table', 'nope'], { stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    bad.stderr.on('data', (d) => (err += d))
    assert.equal(await new Promise((resolve) => bad.once('exit', resolve)), 2)
    assert.match(err, /table "public\.nope" does not exist/)
  } finally {
    if (p.exitCode === null) p.kill('SIGKILL')
    cache.close()
    t.drop()
  }
})
