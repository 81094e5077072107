//! Invalidation events from NATS JetStream: a durable pull consumer on a
//! stream (both created when absent) whose messages are [`events`]
//! (plain or Debezium). Every listener of the fleet binds the same durable
//! consumer, so each message is handled once.
//!
//! - **At least once**: a message is acknowledged only after its tags and
//!   keys reached Redis; when that fails it is negatively acknowledged
//!   (redelivered after a delay) and the failure counted.
//! - **Poison messages**: a message that is not a valid event is logged,
//!   counted and terminated (never redelivered, never blocking the
//!   consumer).
//! - **Restarts**: the client reconnects by itself; a consumer stream that
//!   breaks (server restart, missed heartbeats) is made again after a
//!   backoff.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use futures_util::StreamExt;

use super::consume::{Ctx, EventListener, Outcome};
use super::events::TableRule;
use crate::Cache;
use crate::error::{Error, Result};

/// What to consume, and how.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NatsFeed {
    /// The server (`nats://127.0.0.1:4222`).
    pub url: String,
    /// The JetStream stream (created with `subjects` when absent).
    /// Default `STRATACACHE`.
    pub stream: String,
    /// Subjects of the stream. Default `["stratacache.>"]`.
    pub subjects: Vec<String>,
    /// The durable consumer every listener binds. Default `stratacache`.
    pub durable: String,
    /// Per-table key columns and templates for Debezium events, by
    /// `schema.table` (a bare name is in `public`).
    pub tables: HashMap<String, TableRule>,
}

impl NatsFeed {
    /// A feed of `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        NatsFeed {
            url: url.into(),
            stream: "STRATACACHE".into(),
            subjects: vec!["stratacache.>".into()],
            durable: "stratacache".into(),
            tables: HashMap::new(),
        }
    }

    /// A feed from options a binding may leave unset (`None`: the
    /// default).
    pub fn from_options(
        url: impl Into<String>,
        stream: Option<String>,
        subjects: Option<Vec<String>>,
        durable: Option<String>,
        tables: Vec<(String, TableRule)>,
    ) -> Self {
        let d = NatsFeed::new(url);
        NatsFeed {
            stream: stream.unwrap_or(d.stream),
            subjects: subjects.unwrap_or(d.subjects),
            durable: durable.unwrap_or(d.durable),
            tables: tables
                .into_iter()
                .map(|(t, r)| (super::qualified(&t), r))
                .collect(),
            ..d
        }
    }

    /// See [`NatsFeed::stream`] and [`NatsFeed::subjects`].
    pub fn stream(mut self, name: impl Into<String>, subjects: Vec<String>) -> Self {
        self.stream = name.into();
        self.subjects = subjects;
        self
    }

    /// See [`NatsFeed::durable`].
    pub fn durable(mut self, name: impl Into<String>) -> Self {
        self.durable = name.into();
        self
    }

    /// Key columns and templates of `table`'s Debezium events.
    pub fn table(mut self, table: impl Into<String>, rule: TableRule) -> Self {
        self.tables.insert(super::qualified(&table.into()), rule);
        self
    }
}

type Consumer = jetstream::consumer::Consumer<pull::Config>;

fn nats_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("NATS event feed: {what}: {e}"))
}

impl EventListener {
    /// Connect to NATS, make the stream and the durable consumer when
    /// absent, and consume in the background on the core's runtime.
    pub async fn start_nats(cache: Cache, feed: NatsFeed) -> Result<EventListener> {
        if feed.subjects.is_empty() || feed.stream.is_empty() || feed.durable.is_empty() {
            return Err(Error::Config(
                "NATS event feed: stream, subjects and durable must not be empty".into(),
            ));
        }
        let f = feed.clone();
        let consumer = crate::runtime::runtime()
            .spawn(async move { consumer(&f).await })
            .await
            .map_err(|e| nats_err("start", e))??;
        Ok(EventListener::spawn(cache, feed.tables, move |ctx| {
            run(ctx, consumer)
        }))
    }
}

async fn consumer(feed: &NatsFeed) -> Result<Consumer> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(feed.url.as_str())
        .await
        .map_err(|e| nats_err(&format!("cannot connect to {}", feed.url), e))?;
    let js = jetstream::new(client);
    let stream = js
        .get_or_create_stream(stream::Config {
            name: feed.stream.clone(),
            subjects: feed.subjects.clone(),
            // A message is kept until every consumer acknowledged it (the
            // listeners share one), not forever.
            retention: stream::RetentionPolicy::Interest,
            ..Default::default()
        })
        .await
        .map_err(|e| nats_err(&format!("stream {:?}", feed.stream), e))?;
    stream
        .get_or_create_consumer(
            &feed.durable,
            pull::Config {
                durable_name: Some(feed.durable.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| nats_err(&format!("consumer {:?}", feed.durable), e))
}

async fn run(mut ctx: Ctx, consumer: Consumer) {
    'outer: while !ctx.stopping() {
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                ctx.failed(&format!("consume: {e}"));
                if ctx.pause().await {
                    break;
                }
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                m = messages.next() => m,
                _ = ctx.stopped.changed() => break 'outer,
            };
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    // Missed heartbeats, a restarting server: pull again.
                    ctx.failed(&format!("consume: {e}"));
                    if ctx.pause().await {
                        break 'outer;
                    }
                    continue 'outer;
                }
                None => continue 'outer,
            };
            let from = msg.subject.to_string();
            let r = match ctx.handle(&msg.payload, &from).await {
                Outcome::Done => msg.ack().await,
                Outcome::Malformed => msg.ack_with(AckKind::Term).await,
                Outcome::Retry => {
                    msg.ack_with(AckKind::Nak(Some(Duration::from_millis(500))))
                        .await
                }
            };
            if let Err(e) = r {
                // Not acknowledged: redelivered, invalidated again (harmless).
                ctx.failed(&format!("ack: {e}"));
            }
        }
    }
}
