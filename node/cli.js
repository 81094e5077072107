#!/usr/bin/env node
'use strict'
// `npx stratacache`: command-line tools, the same verbs and flags as
// `python -m stratacache`.
//   doctor, stats, get KEY, delete KEY, invalidate-tags TAG..., clear [--yes],
//   warm MODULE[:EXPORT] (called with the cache): on --redis URL (or
//   --cluster URL, repeated) and --namespace NS; the signing key from
//   $STRATACACHE_SIGNING_KEY. What doctor and stats check is the core's.
//   listen: run the PostgreSQL change feed until interrupted
//     npx stratacache listen --postgres postgresql://app@127.0.0.1/shop \
//       --redis redis://127.0.0.1:6379 --namespace shop \
//       --table products --table 'categories=category:{id},catalog'

const fs = require('node:fs')
const { parseArgs } = require('node:util')
const { listenConfig, redactedUrl } = require('./binding.js')
const path = require('node:path')
const readline = require('node:readline/promises')
const util = require('node:util')
const { Cache } = require('./index.js')
const { kNative } = require('./internal.js')
const { PgListener, EventListener } = require('./feed.js')
const { ConfigError, StrataCacheError, fromNative } = require('./errors.js')

const USAGE = `usage: stratacache doctor|stats [--json] [--redis URL | --cluster URL ...] [--namespace NS]
       stratacache get KEY | delete KEY | invalidate-tags TAG... | clear [--yes] | warm MODULE[:EXPORT]  (same flags)
       stratacache listen [--postgres URL --table TABLE[=TEMPLATE,...] ...]
                         [--nats URL [--nats-stream S] [--nats-subject X ...] [--nats-durable D]]
                         [--amqp URL [--amqp-queue Q] [--amqp-bind EXCHANGE:KEY]] [--key TABLE=COL,...]
                         [--redis URL] [--namespace NS] [--slot SLOT] [--publication PUB]
                         [--poll-interval SECONDS] [--lease-ttl SECONDS] [--stats-every SECONDS]`

function table(spec) {
  const i = spec.indexOf('=')
  if (i < 0) return [spec.trim(), null]
  const tags = spec
    .slice(i + 1)
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean)
  return [spec.slice(0, i).trim(), tags]
}

/** Start the listeners of a (normalized) configuration. */
async function start(cache, cfg) {
  /** @type {Record<string, import('./feed.js').EventTableRule>} */
  const tables = {}
  for (const [name, key, tags] of cfg.events) {
    tables[name] = {}
    if (key !== null) tables[name].key = key
    if (tags !== null) tables[name].tags = tags
  }
  const running = []
  try {
    if (cfg.postgres) {
      const p = cfg.postgres
      const opts = { slot: p.slot, publication: p.publication, pollInterval: p.poll_interval_ms, leaseTtl: p.lease_ttl_ms }
      running.push(await PgListener.start(cache, p.url, Object.fromEntries(p.tables), opts))
    }
    if (cfg.nats) running.push(await EventListener.nats(cache, cfg.nats.url, { stream: cfg.nats.stream, subjects: cfg.nats.subjects, durable: cfg.nats.durable, tables }))
    if (cfg.amqp) running.push(await EventListener.rabbitmq(cache, cfg.amqp.url, { queue: cfg.amqp.queue, bind: cfg.amqp.bind || undefined, tables }))
  } catch (e) {
    for (const r of running) await r.stop()
    throw e
  }
  return running
}

async function listen(argv) {
  const { values: a } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string' },
      postgres: { type: 'string' },
      table: { type: 'string', multiple: true },
      redis: { type: 'string' },
      namespace: { type: 'string' },
      slot: { type: 'string' },
      publication: { type: 'string' },
      'poll-interval': { type: 'string' },
      'lease-ttl': { type: 'string' },
      'stats-every': { type: 'string', default: '60' },
      nats: { type: 'string' },
      'nats-stream': { type: 'string' },
      'nats-subject': { type: 'string', multiple: true },
      'nats-durable': { type: 'string' },
      amqp: { type: 'string' },
      'amqp-queue': { type: 'string' },
      'amqp-bind': { type: 'string' },
      key: { type: 'string', multiple: true },
    },
  })
  // --config FILE: read and completed by the core, instead of the source flags.
  let cfg = null
  if (a.config !== undefined) {
    const given = ['postgres', 'table', 'nats', 'amqp', 'key'].filter((f) => a[f] !== undefined).map((f) => `--${f}`)
    if (given.length) throw new ConfigError(`--config replaces the source flags: remove ${given.join(', ')}`)
    let text
    try {
      text = fs.readFileSync(a.config, 'utf8')
    } catch (e) {
      throw new ConfigError(`--config ${a.config}: ${e.message}`)
    }
    try {
      cfg = JSON.parse(listenConfig(text))
    } catch (e) {
      throw fromNative(e)
    }
  } else {
    if (!a.postgres && !a.nats && !a.amqp) throw new ConfigError('give at least one of --postgres, --nats, --amqp')
    if (a.postgres && !a.table) throw new ConfigError('--postgres needs at least one --table')
    const secs = (v) => (v === undefined ? undefined : Number(v) * 1000)
    const bindSpec = a['amqp-bind']
    const colon = bindSpec ? bindSpec.indexOf(':') : -1
    cfg = {
      postgres: a.postgres
        ? { url: a.postgres, tables: a.table.map(table), slot: a.slot, publication: a.publication, poll_interval_ms: secs(a['poll-interval']), lease_ttl_ms: secs(a['lease-ttl']) }
        : null,
      nats: a.nats ? { url: a.nats, stream: a['nats-stream'], subjects: a['nats-subject'], durable: a['nats-durable'] } : null,
      amqp: a.amqp ? { url: a.amqp, queue: a['amqp-queue'], bind: bindSpec ? [bindSpec.slice(0, colon < 0 ? bindSpec.length : colon), colon < 0 ? '' : bindSpec.slice(colon + 1)] : null } : null,
      events: [],
    }
    // Debezium rules: --table templates and --key columns, by table.
    /** @type {Record<string, [string[] | null, string[] | null]>} */
    const byTable = {}
    for (const [name, tags] of (a.table || []).map(table)) if (tags) (byTable[name] ||= [null, null])[1] = tags
    for (const [name, cols] of (a.key || []).map(table)) {
      if (!cols || cols.length === 0) throw new ConfigError(`--key ${name}: give TABLE=COLUMN,... (the key columns of its Debezium events)`)
      ;(byTable[name] ||= [null, null])[0] = cols
    }
    cfg.events = Object.entries(byTable).map(([name, [key, tags]]) => [name, key, tags])
  }
  const namespace = a.namespace || cfg.namespace || 'default'
  const cache = new Cache({ redis: a.redis || cfg.redis || undefined, namespace })
  const running = await start(cache, cfg).catch((e) => {
    cache.close()
    throw e
  })
  const sources = [cfg.postgres && cfg.postgres.tables.map((t) => t[0]).join(', '), cfg.nats && 'nats', cfg.amqp && 'rabbitmq'].filter(Boolean)
  console.log(`stratacache listen: ${sources.join('; ')} -> namespace '${namespace}'`)
  const every = Number(a['stats-every'])
  const timer = every > 0 ? setInterval(() => console.log(`stratacache listen: ${JSON.stringify(running.map((r) => r.stats()))}`), every * 1000) : null
  // The cache and the feed keep no handle on the event loop: this one
  // keeps the process up until a signal.
  const alive = setInterval(() => {}, 1 << 30)
  await new Promise((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  clearInterval(alive)
  if (timer) clearInterval(timer)
  for (const r of running) await r.stop()
  cache.close()
}

const VERBS = ['doctor', 'stats', 'get', 'delete', 'invalidate-tags', 'clear', 'warm']

/** A warm function: `module[:export]` (default export `warm`, then the module itself). */
function warmFunction(spec) {
  const colon = spec.lastIndexOf(':')
  const [file, name] = colon > 1 ? [spec.slice(0, colon), spec.slice(colon + 1)] : [spec, null]
  let mod
  try {
    mod = require(path.resolve(file))
  } catch (e) {
    throw new ConfigError(`warm ${spec}: ${e instanceof Error ? e.message.split('\n')[0] : e}`)
  }
  const fn = name ? mod[name] : typeof mod === 'function' ? mod : mod.warm
  if (typeof fn !== 'function') throw new ConfigError(`warm ${spec}: ${file} exports no function ${name || 'warm'}`)
  return fn
}

/** Run an operator verb; resolves to the exit status. */
async function verb(name, argv) {
  const { values: a, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      redis: { type: 'string' },
      cluster: { type: 'string', multiple: true },
      namespace: { type: 'string', default: 'default' },
      json: { type: 'boolean', default: false },
      yes: { type: 'boolean', default: false },
    },
  })
  const wants = { get: 1, delete: 1, warm: 1 }[name]
  if (wants !== undefined && positionals.length !== wants) throw new ConfigError(`${name} takes one argument`)
  if (name === 'invalidate-tags' && positionals.length === 0) throw new ConfigError('invalidate-tags takes at least one TAG')
  const signingKey = process.env.STRATACACHE_SIGNING_KEY || undefined
  // failOpen off: Redis trouble is an error here, not "not cached" / "cleared".
  const cache = new Cache({ redis: a.redis, cluster: a.cluster, namespace: a.namespace, signingKey, failOpen: false })
  const out = (s) => process.stdout.write(s)
  try {
    switch (name) {
      case 'doctor': {
        const [text, code] = await cache[kNative]().doctor(a.json)
        out(a.json ? text + '\n' : text)
        return code
      }
      case 'stats':
        out((await cache[kNative]().census(a.json)) + (a.json ? '\n' : ''))
        return 0
      case 'get': {
        const v = await cache.get(positionals[0])
        if (v === undefined) {
          console.error(`stratacache get: ${JSON.stringify(positionals[0])} is not cached`)
          return 1
        }
        let shown
        try {
          shown = JSON.stringify(v, null, 2)
        } catch {
          shown = undefined
        }
        out((shown === undefined ? util.inspect(v, { depth: 6 }) : shown) + '\n')
        return 0
      }
      case 'delete':
        out((await cache.delete(positionals[0])) ? 'deleted\n' : 'not cached\n')
        return 0
      case 'invalidate-tags':
        await cache.invalidateTags(positionals)
        out(`invalidated ${positionals.length} tag(s)\n`)
        return 0
      case 'clear': {
        if (!a.yes) {
          if (!process.stdin.isTTY) {
            console.error('stratacache clear: not a terminal; pass --yes to clear without asking')
            return 2
          }
          const where = a.redis || (a.cluster || []).join(',') || 'this process'
          const rl = readline.createInterface({ input: process.stdin, output: process.stdout })
          const answer = await rl.question(`Drop every entry of namespace '${a.namespace}' on ${redactedUrl(where)}, in every process? [y/N] `)
          rl.close()
          if (!['y', 'yes'].includes(answer.trim().toLowerCase())) {
            console.error('stratacache clear: left as it was')
            return 1
          }
        }
        await cache.clear()
        out('cleared\n')
        return 0
      }
      case 'warm': {
        const n = await warmFunction(positionals[0])(cache)
        out(`warmed${Number.isInteger(n) ? ` ${n} key(s)` : ''}\n`)
        return 0
      }
    }
    throw new Error(`unreachable: ${name}`)
  } finally {
    await cache.close()
  }
}

async function main(argv) {
  const [command, ...rest] = argv
  if (command !== 'listen' && !VERBS.includes(command)) {
    console.error(USAGE)
    return 2
  }
  try {
    if (command !== 'listen') return await verb(command, rest)
    await listen(rest)
    return 0
  } catch (e) {
    // Bad flags or values: a message and status 2, never a stack trace.
    if (e instanceof StrataCacheError || (e && typeof e.code === 'string' && e.code.startsWith('ERR_PARSE_ARGS'))) {
      console.error(`stratacache ${command}: ${e.message}`)
      return 2
    }
    throw e
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code
})
