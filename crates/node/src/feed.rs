//! The core's change feed and broker consumers (`stratacache::feed`) for
//! `node/feed.js`: argument conversion only; unset options reach the core
//! as `None`.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use stratacache::Cache;
use stratacache::feed::amqp::AmqpFeed;
use stratacache::feed::events::TableRule;
use stratacache::feed::nats::NatsFeed;
use stratacache::feed::{EventListener, Listener, PgFeed};

use crate::convert::ms;
use crate::error::{invalid, js_err};

/// A table of the feed and its tag templates (`undefined`: the default tags).
#[napi(object)]
pub struct PgTable {
    pub name: String,
    pub tags: Option<Vec<String>>,
}

/// The feed's options; unset ones take the core's defaults.
#[napi(object)]
pub struct PgFeedOptions {
    pub url: String,
    pub tables: Vec<PgTable>,
    pub slot: Option<String>,
    pub publication: Option<String>,
    pub poll_interval_ms: Option<f64>,
    pub lease_ttl_ms: Option<f64>,
}

/// A listener's counters.
#[napi(object)]
pub struct PgFeedStats {
    pub active: bool,
    pub transactions: f64,
    pub changes: f64,
    pub tags_invalidated: f64,
    pub errors: f64,
    pub lag_ms: f64,
}

/// A running change feed.
#[napi]
pub struct NativePgListener {
    inner: Listener,
}

/// Start the feed of `o` into `cache` (the body of `NativeCache.startPgListener`).
pub(crate) async fn start(cache: Cache, o: PgFeedOptions) -> Result<NativePgListener> {
    let poll = o
        .poll_interval_ms
        .map(|p| ms("pollInterval", p))
        .transpose()?;
    let lease = o.lease_ttl_ms.map(|l| ms("leaseTtl", l)).transpose()?;
    let tables = o.tables.into_iter().map(|t| (t.name, t.tags)).collect();
    let feed = PgFeed::from_options(o.url, tables, o.slot, o.publication, poll, lease);
    let listener = Listener::start(cache, feed).await.map_err(js_err)?;
    Ok(NativePgListener { inner: listener })
}

#[napi]
impl NativePgListener {
    /// The counters.
    #[napi]
    pub fn stats(&self) -> PgFeedStats {
        let s = self.inner.stats();
        PgFeedStats {
            active: s.active,
            transactions: s.transactions as f64,
            changes: s.changes as f64,
            tags_invalidated: s.tags_invalidated as f64,
            errors: s.errors as f64,
            lag_ms: s.lag_ms as f64,
        }
    }

    /// Stop after the batch in progress and give up the fleet lease
    /// (idempotent).
    #[napi]
    pub async fn stop(&self) {
        self.inner.stop().await;
    }
}

/// A table's rule for Debezium events.
#[napi(object)]
pub struct EventTable {
    pub name: String,
    /// Key columns (default `["id"]`).
    pub key: Option<Vec<String>>,
    /// Tag templates instead of the default tags.
    pub tags: Option<Vec<String>>,
}

/// A broker feed's options; unset ones take the core's defaults.
#[napi(object)]
pub struct EventFeedOptions {
    pub url: String,
    /// NATS: the stream, its subjects and the durable consumer.
    pub stream: Option<String>,
    pub subjects: Option<Vec<String>>,
    pub durable: Option<String>,
    /// RabbitMQ: the queue and an `[exchange, routingKey]` to bind it to.
    pub queue: Option<String>,
    pub bind: Option<Vec<String>>,
    pub tables: Option<Vec<EventTable>>,
}

/// A broker listener's counters.
#[napi(object)]
pub struct EventFeedStats {
    pub messages: f64,
    pub tags_invalidated: f64,
    pub keys_deleted: f64,
    pub malformed: f64,
    pub errors: f64,
}

/// A running broker consumer.
#[napi]
pub struct NativeEventListener {
    inner: EventListener,
}

/// Start consuming `broker` (`"nats"` or `"amqp"`) into `cache` (the body
/// of `NativeCache.startEventListener`).
pub(crate) async fn start_events(
    cache: Cache,
    broker: String,
    o: EventFeedOptions,
) -> Result<NativeEventListener> {
    let rules = o
        .tables
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            (
                t.name,
                TableRule {
                    key: t.key,
                    templates: t.tags,
                },
            )
        })
        .collect();
    let listener = match broker.as_str() {
        "nats" => {
            let feed = NatsFeed::from_options(o.url, o.stream, o.subjects, o.durable, rules);
            EventListener::start_nats(cache, feed).await
        }
        "amqp" => {
            let bind = match o.bind.as_deref() {
                None => None,
                Some([exchange, key]) => Some((exchange.clone(), key.clone())),
                Some(_) => return Err(invalid("bind must be [exchange, routingKey]")),
            };
            let feed = AmqpFeed::from_options(o.url, o.queue, bind, rules);
            EventListener::start_amqp(cache, feed).await
        }
        other => return Err(invalid(format!("unknown broker {other:?}"))),
    }
    .map_err(js_err)?;
    Ok(NativeEventListener { inner: listener })
}

#[napi]
impl NativeEventListener {
    /// The counters.
    #[napi]
    pub fn stats(&self) -> EventFeedStats {
        let s = self.inner.stats();
        EventFeedStats {
            messages: s.messages as f64,
            tags_invalidated: s.tags_invalidated as f64,
            keys_deleted: s.keys_deleted as f64,
            malformed: s.malformed as f64,
            errors: s.errors as f64,
        }
    }

    /// Stop after the message in progress (idempotent).
    #[napi]
    pub async fn stop(&self) {
        self.inner.stop().await;
    }
}
