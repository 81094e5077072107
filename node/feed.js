'use strict'
// The PostgreSQL change feed: committed row changes in chosen tables become
// tag invalidations, whoever made them (the core's stratacache::feed; see
// feed.d.ts and the README's "Invalidation from your database").

const { kNative } = require('./internal.js')
const { checkOptions } = require('./options.js')
const { parseTtl } = require('./policy.js')
const { fromNative, InvalidValueError } = require('./errors.js')

const FEED_OPTIONS = ['slot', 'publication', 'pollInterval', 'leaseTtl']

function tablesOf(tables) {
  if (typeof tables === 'string') return [{ name: tables }]
  if (Array.isArray(tables)) return tables.map((name) => ({ name: String(name) }))
  if (tables && typeof tables === 'object') {
    return Object.entries(tables).map(([name, tags]) => (tags == null ? { name } : { name, tags: tags.map(String) }))
  }
  throw new InvalidValueError('tables must be a table name, an array of names, or { name: [tag templates] | null }')
}

class PgListener {
  #n

  /** @param {import('./binding.js').NativePgListener} native */
  constructor(native) {
    this.#n = native
  }

  /**
   * Check the configuration against PostgreSQL (creating the publication
   * and the replication slot when absent) and start listening on the
   * core's threads. Rejects with ConfigError (E_CONFIG) naming the problem.
   */
  static async start(cache, postgresUrl, tables, options = {}) {
    checkOptions(options, FEED_OPTIONS, 'PgListener')
    const o = { url: String(postgresUrl), tables: tablesOf(tables) }
    if (options.slot !== undefined) o.slot = options.slot
    if (options.publication !== undefined) o.publication = options.publication
    if (options.pollInterval !== undefined) o.pollIntervalMs = parseTtl(options.pollInterval, 'pollInterval')
    if (options.leaseTtl !== undefined) o.leaseTtlMs = parseTtl(options.leaseTtl, 'leaseTtl')
    try {
      return new PgListener(await cache[kNative]().startPgListener(o))
    } catch (e) {
      throw fromNative(e)
    }
  }

  /** Counters: active, transactions, changes, tagsInvalidated, errors, lagMs. */
  stats() {
    return this.#n.stats()
  }

  /** Finish the batch in progress and give up the fleet lease (idempotent). */
  async stop() {
    await this.#n.stop()
  }
}

const NATS_OPTIONS = ['stream', 'subjects', 'durable', 'tables']
const AMQP_OPTIONS = ['queue', 'bind', 'tables']

function eventTables(tables) {
  if (tables === undefined) return undefined
  if (!tables || typeof tables !== 'object') throw new InvalidValueError('tables must be { table: { key?, tags? } }')
  return Object.entries(tables).map(([name, rule]) => {
    const t = { name }
    if (rule && rule.key !== undefined) t.key = rule.key.map(String)
    if (rule && rule.tags !== undefined) t.tags = rule.tags.map(String)
    return t
  })
}

/**
 * A running consumer of invalidation events from a message broker: plain
 * `{"tags": [...], "keys": [...]}` or Debezium change events, acknowledged
 * only after their invalidation reached Redis; a malformed one is counted
 * and rejected for good (terminated on NATS, dead-lettered on RabbitMQ).
 */
class EventListener {
  #n

  /** @param {import('./binding.js').NativeEventListener} native */
  constructor(native) {
    this.#n = native
  }

  static async #start(cache, broker, url, options, known) {
    checkOptions(options, known, broker === 'nats' ? 'EventListener.nats' : 'EventListener.rabbitmq')
    const o = { url: String(url) }
    for (const k of ['stream', 'subjects', 'durable', 'queue', 'bind']) {
      if (options[k] !== undefined) o[k] = options[k]
    }
    const tables = eventTables(options.tables)
    if (tables) o.tables = tables
    try {
      return new EventListener(await cache[kNative]().startEventListener(broker, o))
    } catch (e) {
      throw fromNative(e)
    }
  }

  /** Consume a NATS JetStream durable consumer (stream and consumer created when absent). */
  static nats(cache, url, options = {}) {
    return EventListener.#start(cache, 'nats', url, options, NATS_OPTIONS)
  }

  /** Consume a RabbitMQ queue (declared with its dead-letter exchange `<queue>.dead` when absent). */
  static rabbitmq(cache, url, options = {}) {
    return EventListener.#start(cache, 'amqp', url, options, AMQP_OPTIONS)
  }

  /** Counters: messages, tagsInvalidated, keysDeleted, malformed, errors. */
  stats() {
    return this.#n.stats()
  }

  /** Stop after the message in progress (idempotent). */
  async stop() {
    await this.#n.stop()
  }
}

module.exports = { PgListener, EventListener }
