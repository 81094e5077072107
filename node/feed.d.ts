import type { Cache, Ttl } from './index'

/** A table's tag templates (`{column}` stands for the column's value), or `null` for the default tags. */
export type TagTemplates = string[] | null

export interface PgListenerOptions {
  /** The replication slot the listener reads (created when absent). Default `'stratacache'`. */
  slot?: string
  /** The publication of the tables (created or updated). Default `'stratacache'`. */
  publication?: string
  /** How often an idle feed looks for changes. Default 20 ms. */
  pollInterval?: Ttl
  /** How long a dead listener holds the fleet's lease (a standby then takes over). Default 5 s. */
  leaseTtl?: Ttl
}

export interface PgFeedStats {
  /** Whether this listener holds the fleet lease (reads the slot). */
  active: boolean
  transactions: number
  changes: number
  tagsInvalidated: number
  /** Failures (PostgreSQL or Redis) recovered from by retrying. */
  errors: number
  /** Commit to invalidation of the last transaction, in ms. */
  lagMs: number
}

/**
 * Invalidation from PostgreSQL: every committed row change in `tables`
 * invalidates `table:schema.table` and `table:schema.table:<primary key>`
 * (or the table's own templates), in every process. Needs
 * `wal_level=logical` and a role with `REPLICATION`. Changes made while
 * no listener runs are invalidated when one starts; rolled-back ones
 * never. One listener per slot is active across the fleet.
 */
export declare class PgListener {
  static start(
    cache: Cache,
    postgresUrl: string,
    tables: string | string[] | Record<string, TagTemplates>,
    options?: PgListenerOptions,
  ): Promise<PgListener>
  stats(): PgFeedStats
  stop(): Promise<void>
}

/** How a table's Debezium events map to tags. */
export interface EventTableRule {
  /** Key columns (default `['id']`). */
  key?: string[]
  /** Tag templates instead of `table:schema.table` and `table:schema.table:<key>`. */
  tags?: string[]
}

export interface NatsOptions {
  /** The JetStream stream (created with `subjects` when absent). Default `'STRATACACHE'`. */
  stream?: string
  /** Default `['stratacache.>']`. */
  subjects?: string[]
  /** The durable consumer every listener shares. Default `'stratacache'`. */
  durable?: string
  tables?: Record<string, EventTableRule>
}

export interface RabbitmqOptions {
  /** The durable queue every listener shares. Default `'stratacache'`. */
  queue?: string
  /** `[exchange, routingKey]` to bind the queue to. */
  bind?: [string, string]
  tables?: Record<string, EventTableRule>
}

export interface EventFeedStats {
  messages: number
  tagsInvalidated: number
  keysDeleted: number
  /** Messages that were not valid events (terminated / dead-lettered). */
  malformed: number
  /** Failures recovered from (the message is redelivered). */
  errors: number
}

/**
 * Invalidation events from a message broker: plain `{"tags": [...],
 * "keys": [...]}` or Debezium change events (with or without the schema
 * envelope), acknowledged only after their invalidation reached Redis.
 */
export declare class EventListener {
  static nats(cache: Cache, url: string, options?: NatsOptions): Promise<EventListener>
  static rabbitmq(cache: Cache, url: string, options?: RabbitmqOptions): Promise<EventListener>
  stats(): EventFeedStats
  stop(): Promise<void>
}
