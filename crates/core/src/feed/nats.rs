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
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use futures_util::StreamExt;
use tokio::sync::watch;

use super::events::{self, TableRule};
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
    /// `schema.table`.
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
        self.tables.insert(table.into(), rule);
        self
    }
}

/// Counters of an event listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventStats {
    /// Messages handled and acknowledged.
    pub messages: u64,
    /// Tags invalidated.
    pub tags_invalidated: u64,
    /// Keys deleted.
    pub keys_deleted: u64,
    /// Messages that were not valid events (terminated).
    pub malformed: u64,
    /// Failures recovered from (a broker or Redis error; the message is
    /// redelivered).
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    messages: AtomicU64,
    tags: AtomicU64,
    keys: AtomicU64,
    malformed: AtomicU64,
    errors: AtomicU64,
}

/// A running event consumer; stops on [`EventListener::stop`] or drop.
#[derive(Debug)]
pub struct EventListener {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    counters: Arc<Counters>,
}

fn nats_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("NATS event feed: {what}: {e}"))
}

impl EventListener {
    /// Connect, make the stream and the durable consumer when absent, and
    /// consume in the background on the core's runtime.
    pub async fn start_nats(cache: Cache, feed: NatsFeed) -> Result<EventListener> {
        if feed.subjects.is_empty() || feed.stream.is_empty() || feed.durable.is_empty() {
            return Err(Error::Config(
                "NATS event feed: stream, subjects and durable must not be empty".into(),
            ));
        }
        let rt = crate::runtime::runtime();
        let f = feed.clone();
        let consumer = rt
            .spawn(async move { consumer(&f).await })
            .await
            .map_err(|e| nats_err("start", e))??;
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = watch::channel(false);
        let task = rt.spawn(run(cache, feed, consumer, counters.clone(), stopped));
        Ok(EventListener {
            stop,
            task: Some(task),
            counters,
        })
    }

    /// The listener's counters.
    pub fn stats(&self) -> EventStats {
        let c = &self.counters;
        EventStats {
            messages: c.messages.load(Ordering::Relaxed),
            tags_invalidated: c.tags.load(Ordering::Relaxed),
            keys_deleted: c.keys.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }

    /// Stop after the message in progress.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for EventListener {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

type Consumer = jetstream::consumer::Consumer<pull::Config>;

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

async fn run(
    cache: Cache,
    feed: NatsFeed,
    consumer: Consumer,
    c: Arc<Counters>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(50);
    'outer: while !*stopped.borrow() {
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                failed(&c, &format!("consume: {e}"));
                if pause(&mut stopped, &mut backoff).await {
                    break;
                }
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                m = messages.next() => m,
                _ = stopped.changed() => break 'outer,
            };
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    // Missed heartbeats, a restarting server: pull again.
                    failed(&c, &format!("consume: {e}"));
                    if pause(&mut stopped, &mut backoff).await {
                        break 'outer;
                    }
                    continue 'outer;
                }
                None => continue 'outer,
            };
            backoff = Duration::from_millis(50);
            let inv = match events::decode(&msg.payload, &feed.tables) {
                Ok(inv) => inv,
                Err(why) => {
                    c.malformed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "stratacache event feed: a malformed message on {} terminated: {why}",
                        msg.subject
                    );
                    let _ = msg.ack_with(AckKind::Term).await;
                    continue;
                }
            };
            match apply(&cache, &inv).await {
                Ok(()) => {
                    if let Err(e) = msg.ack().await {
                        failed(&c, &format!("ack: {e}"));
                        continue; // redelivered: invalidating again is harmless
                    }
                    c.messages.fetch_add(1, Ordering::Relaxed);
                    c.tags.fetch_add(inv.tags.len() as u64, Ordering::Relaxed);
                    c.keys.fetch_add(inv.keys.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    failed(&c, &format!("invalidating: {e}"));
                    let _ = msg
                        .ack_with(AckKind::Nak(Some(Duration::from_millis(500))))
                        .await;
                }
            }
        }
    }
}

async fn apply(cache: &Cache, inv: &events::Invalidation) -> Result<()> {
    if !inv.tags.is_empty() {
        let tags: Vec<&str> = inv.tags.iter().map(String::as_str).collect();
        cache.invalidate_tags(&tags).await?;
    }
    for k in &inv.keys {
        cache.delete(k).await?;
    }
    Ok(())
}

fn failed(c: &Counters, what: &str) {
    c.errors.fetch_add(1, Ordering::Relaxed);
    tracing::warn!("stratacache event feed: {what} (retrying)");
}

/// Wait `backoff` (doubling it, to 2 s) unless stopped; true when stopped.
async fn pause(stopped: &mut watch::Receiver<bool>, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(Duration::from_secs(2));
    tokio::select! {
        _ = tokio::time::sleep(wait) => *stopped.borrow(),
        _ = stopped.changed() => true,
    }
}
