//! The listeners' configuration file (JSON), read once here for every
//! language's `listen --config FILE`:
//!
//! ```json
//! {
//!   "redis": "redis://127.0.0.1:6379", "namespace": "shop",
//!   "postgres": {"url": "postgresql://app@db/shop",
//!                "tables": {"products": null, "categories": ["category:{id}"]},
//!                "slot": "stratacache", "publication": "stratacache",
//!                "poll_interval_ms": 20, "lease_ttl_ms": 5000},
//!   "nats": {"url": "nats://127.0.0.1:4222", "stream": "STRATACACHE",
//!            "subjects": ["stratacache.>"], "durable": "stratacache"},
//!   "amqp": {"url": "amqp://guest:guest@127.0.0.1:5672/%2f", "queue": "stratacache",
//!            "bind": ["exchange", "routing.key"]},
//!   "events": {"shop.items": {"key": ["sku"], "tags": ["item:{sku}"]}}
//! }
//! ```
//!
//! Every section is optional but one source is needed; an unknown field is
//! an error naming it and the fields it could be. [`normalized`] gives the
//! configuration back with every default filled in, as the bindings'
//! command lines consume it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::PgFeed;
use super::amqp::AmqpFeed;
use super::nats::NatsFeed;
use crate::error::{Error, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    redis: Option<String>,
    namespace: Option<String>,
    postgres: Option<PgSection>,
    nats: Option<NatsSection>,
    amqp: Option<AmqpSection>,
    #[serde(default)]
    events: BTreeMap<String, EventRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PgSection {
    url: String,
    tables: BTreeMap<String, Option<Vec<String>>>,
    slot: Option<String>,
    publication: Option<String>,
    poll_interval_ms: Option<u64>,
    lease_ttl_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NatsSection {
    url: String,
    stream: Option<String>,
    subjects: Option<Vec<String>>,
    durable: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AmqpSection {
    url: String,
    queue: Option<String>,
    bind: Option<(String, String)>,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
struct EventRule {
    key: Option<Vec<String>>,
    tags: Option<Vec<String>>,
}

/// A table's Debezium rule: `(table, key columns, templates)`.
pub type NormalizedRule = (String, Option<Vec<String>>, Option<Vec<String>>);

/// The configuration with every default filled in.
#[derive(Debug, Serialize)]
pub struct Normalized {
    pub redis: Option<String>,
    pub namespace: Option<String>,
    pub postgres: Option<NormalizedPg>,
    pub nats: Option<NormalizedNats>,
    pub amqp: Option<NormalizedAmqp>,
    /// `(table, key columns, templates)` for Debezium events.
    pub events: Vec<NormalizedRule>,
}

#[derive(Debug, Serialize)]
pub struct NormalizedPg {
    pub url: String,
    pub tables: Vec<(String, Option<Vec<String>>)>,
    pub slot: String,
    pub publication: String,
    pub poll_interval_ms: u64,
    pub lease_ttl_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct NormalizedNats {
    pub url: String,
    pub stream: String,
    pub subjects: Vec<String>,
    pub durable: String,
}

#[derive(Debug, Serialize)]
pub struct NormalizedAmqp {
    pub url: String,
    pub queue: String,
    pub bind: Option<(String, String)>,
}

/// Read a configuration file's text: errors name the field.
pub fn normalized(text: &str) -> Result<Normalized> {
    let f: File = serde_json::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
    if f.postgres.is_none() && f.nats.is_none() && f.amqp.is_none() {
        return Err(Error::Config(
            "the listen configuration names no source: give \"postgres\", \"nats\" or \"amqp\""
                .into(),
        ));
    }
    let ms = |v: Option<u64>| v.map(Duration::from_millis);
    let postgres = f.postgres.map(|p| {
        let feed = PgFeed::from_options(
            p.url,
            p.tables.into_iter().collect(),
            p.slot,
            p.publication,
            ms(p.poll_interval_ms),
            ms(p.lease_ttl_ms),
        );
        NormalizedPg {
            url: feed.url,
            tables: feed.tables,
            slot: feed.slot,
            publication: feed.publication,
            poll_interval_ms: feed.poll_interval.as_millis() as u64,
            lease_ttl_ms: feed.lease_ttl.as_millis() as u64,
        }
    });
    if postgres.as_ref().is_some_and(|p| p.tables.is_empty()) {
        return Err(Error::Config(
            "postgres.tables of the listen configuration names no table".into(),
        ));
    }
    let nats = f.nats.map(|n| {
        let feed = NatsFeed::from_options(n.url, n.stream, n.subjects, n.durable, Vec::new());
        NormalizedNats {
            url: feed.url,
            stream: feed.stream,
            subjects: feed.subjects,
            durable: feed.durable,
        }
    });
    let amqp = f.amqp.map(|a| {
        let feed = AmqpFeed::from_options(a.url, a.queue, a.bind, Vec::new());
        NormalizedAmqp {
            url: feed.url,
            queue: feed.queue,
            bind: feed.bind,
        }
    });
    Ok(Normalized {
        redis: f.redis,
        namespace: f.namespace,
        postgres,
        nats,
        amqp,
        events: f
            .events
            .into_iter()
            .map(|(t, r)| (t, r.key, r.tags))
            .collect(),
    })
}

/// [`normalized`] as JSON, for the bindings' command lines.
pub fn normalized_json(text: &str) -> Result<String> {
    let n = normalized(text)?;
    serde_json::to_string(&n).map_err(|e| Error::Config(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_defaults_and_names_unknown_fields() {
        let n = normalized(
            r#"{"namespace": "shop", "postgres": {"url": "postgresql://x", "tables": {"products": null,
               "categories": ["category:{id}"]}}, "nats": {"url": "nats://x"},
               "events": {"shop.items": {"key": ["sku"]}}}"#,
        )
        .expect("ok");
        let pg = n.postgres.expect("postgres");
        assert_eq!(
            (pg.slot.as_str(), pg.poll_interval_ms, pg.lease_ttl_ms),
            ("stratacache", 20, 5000)
        );
        assert_eq!(pg.tables.len(), 2);
        let nats = n.nats.expect("nats");
        assert_eq!(
            (nats.stream.as_str(), nats.durable.as_str()),
            ("STRATACACHE", "stratacache")
        );
        assert!(n.amqp.is_none());
        assert_eq!(
            n.events,
            [("shop.items".to_owned(), Some(vec!["sku".to_owned()]), None)]
        );

        let err = |t: &str| normalized(t).expect_err("refused").to_string();
        assert!(
            err(r#"{"postgres": {"url": "u", "tables": {}, "slott": "x"}}"#)
                .contains("unknown field `slott`")
        );
        assert!(err(r#"{"redis": "r"}"#).contains("names no source"));
        assert!(err(r#"{"postgres": {"url": "u", "tables": {}}}"#).contains("names no table"));
        assert!(
            err(r#"{"amqp": {"url": "u", "bind": ["x"]}}"#).contains("amqp")
                || err(r#"{"amqp": {"url": "u", "bind": ["x"]}}"#).contains("invalid length")
        );
        assert!(err("not json").contains("expected ident"));
    }
}
