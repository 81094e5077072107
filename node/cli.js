#!/usr/bin/env node
'use strict'
// `npx stratacache`: command-line tools, the same verbs and flags as
// `python -m stratacache`.
//   listen: run the PostgreSQL change feed until interrupted
//     npx stratacache listen --postgres postgresql://app@127.0.0.1/shop \
//       --redis redis://127.0.0.1:6379 --namespace shop \
//       --table products --table 'categories=category:{id},catalog'

const { parseArgs } = require('node:util')
const { Cache } = require('./index.js')
const { PgListener, EventListener } = require('./feed.js')
const { ConfigError } = require('./errors.js')

const USAGE = `usage: stratacache listen [--postgres URL --table TABLE[=TEMPLATE,...] ...]
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

async function listen(argv) {
  const { values: a } = parseArgs({
    args: argv,
    options: {
      postgres: { type: 'string' },
      table: { type: 'string', multiple: true },
      redis: { type: 'string' },
      namespace: { type: 'string', default: 'default' },
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
  if (!a.postgres && !a.nats && !a.amqp) throw new ConfigError('give at least one of --postgres, --nats, --amqp')
  if (a.postgres && !a.table) throw new ConfigError('--postgres needs at least one --table')
  const secs = (v) => (v === undefined ? undefined : Number(v) * 1000)
  // Debezium rules: --table templates and --key columns, by table.
  /** @type {Record<string, import('./feed.js').EventTableRule>} */
  const rules = {}
  for (const [name, tags] of (a.table || []).map(table)) if (tags) (rules[name] ||= {}).tags = tags
  for (const [name, cols] of (a.key || []).map(table)) (rules[name] ||= {}).key = cols || []
  const cache = new Cache({ redis: a.redis, namespace: a.namespace })
  const running = []
  const sources = []
  try {
    if (a.postgres) {
      running.push(
        await PgListener.start(cache, a.postgres, Object.fromEntries(a.table.map(table)), {
          slot: a.slot,
          publication: a.publication,
          pollInterval: secs(a['poll-interval']),
          leaseTtl: secs(a['lease-ttl']),
        }),
      )
      sources.push(a.table.join(', '))
    }
    if (a.nats) {
      running.push(await EventListener.nats(cache, a.nats, { stream: a['nats-stream'], subjects: a['nats-subject'], durable: a['nats-durable'], tables: rules }))
      sources.push('nats')
    }
    if (a.amqp) {
      const spec = a['amqp-bind']
      /** @type {[string, string] | undefined} */
      const bind = spec ? [spec.slice(0, spec.indexOf(':') < 0 ? spec.length : spec.indexOf(':')), spec.includes(':') ? spec.slice(spec.indexOf(':') + 1) : ''] : undefined
      running.push(await EventListener.rabbitmq(cache, a.amqp, { queue: a['amqp-queue'], bind, tables: rules }))
      sources.push('rabbitmq')
    }
  } catch (e) {
    for (const r of running) await r.stop()
    cache.close()
    throw e
  }
  console.log(`stratacache listen: ${sources.join('; ')} -> namespace '${a.namespace}'`)
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

async function main(argv) {
  const [command, ...rest] = argv
  if (command !== 'listen') {
    console.error(USAGE)
    return 2
  }
  try {
    await listen(rest)
    return 0
  } catch (e) {
    if (e instanceof ConfigError || (e && e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION')) {
      console.error(`stratacache listen: ${e.message}`)
      return 2
    }
    throw e
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code
})
