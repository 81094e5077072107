//! What every broker consumer shares: the running listener and its
//! counters, and the handling of one message (decode, invalidate, count),
//! whose outcome each broker turns into its own acknowledgement.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::events::{self, TableRule};
use super::running::Running;
use crate::Cache;
use crate::error::Result;

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
    /// Messages that were not valid events (dead-lettered / terminated).
    pub malformed: u64,
    /// Failures recovered from (a broker or Redis error; the message is
    /// redelivered).
    pub errors: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    messages: AtomicU64,
    tags: AtomicU64,
    keys: AtomicU64,
    malformed: AtomicU64,
    errors: AtomicU64,
}

/// A running broker consumer ([`EventListener::start_nats`],
/// [`EventListener::start_amqp`]); stops on [`EventListener::stop`] or drop.
#[derive(Debug)]
pub struct EventListener {
    running: Running,
    counters: Arc<Counters>,
}

/// What became of a message.
pub(super) enum Outcome {
    /// Invalidated: acknowledge it.
    Done,
    /// Not a valid event: reject it for good (dead-letter / terminate).
    Malformed,
    /// Redis failed: redeliver it later.
    Retry,
}

/// The shared state of a consumer's loop.
pub(super) struct Ctx {
    pub cache: Cache,
    pub tables: HashMap<String, TableRule>,
    pub counters: Arc<Counters>,
    pub stopped: watch::Receiver<bool>,
    backoff: Duration,
}

impl EventListener {
    /// Run `body` (the broker's loop) on the core's runtime.
    pub(super) fn spawn<F, Fut>(
        cache: Cache,
        tables: HashMap<String, TableRule>,
        body: F,
    ) -> EventListener
    where
        F: FnOnce(Ctx) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = Running::channel();
        let ctx = Ctx {
            cache,
            tables,
            counters: counters.clone(),
            stopped,
            backoff: Duration::from_millis(50),
        };
        let task = crate::runtime::runtime().spawn(body(ctx));
        EventListener {
            running: Running::new(stop, task),
            counters,
        }
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

    /// Stop after the message in progress. Idempotent.
    pub async fn stop(&self) {
        self.running.stop().await;
    }
}

impl Ctx {
    /// Decode and apply one message body (`from`: where it came from, for
    /// the log).
    pub async fn handle(&mut self, body: &[u8], from: &str) -> Outcome {
        let inv = match events::decode(body, &self.tables) {
            Ok(inv) => inv,
            Err(why) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "stratacache event feed: a malformed message from {from} rejected: {why}"
                );
                return Outcome::Malformed;
            }
        };
        match apply(&self.cache, &inv).await {
            Ok(()) => {
                self.backoff = Duration::from_millis(50);
                let c = &self.counters;
                c.messages.fetch_add(1, Ordering::Relaxed);
                c.tags.fetch_add(inv.tags.len() as u64, Ordering::Relaxed);
                c.keys.fetch_add(inv.keys.len() as u64, Ordering::Relaxed);
                Outcome::Done
            }
            Err(e) => {
                self.failed(&format!("invalidating: {e}"));
                Outcome::Retry
            }
        }
    }

    /// Count and log a failure that will be retried.
    pub fn failed(&self, what: &str) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("stratacache event feed: {what} (retrying)");
    }

    /// Whether the listener was asked to stop.
    pub fn stopping(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Wait the current backoff (doubling it, to 2 s) unless stopped; true
    /// when stopped.
    pub async fn pause(&mut self) -> bool {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(2));
        tokio::select! {
            _ = tokio::time::sleep(wait) => self.stopping(),
            _ = self.stopped.changed() => true,
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
