//! The bus: one Redis pub/sub subscription per shared cache, on the
//! namespace's channel (`sc:<ns>:bus`).
//!
//! Every fill of a key by a loader is published (from inside the Lua
//! script that stores it, so the notice can never precede the value). Other
//! instances evict their L1 copy of the key and wake the flight leaders
//! waiting on another process's lease for it: a fleet-wide wait ends on a
//! notification, not on a polling loop. An instance ignores its own
//! messages (each carries the sender's random instance id).
//!
//! Pub/sub is fire-and-forget: a message sent while the subscription is
//! down is lost. Waiters therefore also wake when the lease they wait on
//! expires, and every waiter is woken to re-check whenever the
//! subscription is (re)established. On Redis Cluster the subscriber
//! connects to one seed node: a cluster-wide `PUBLISH` reaches every node,
//! so any node will do (this is the documented choice over sharded pub/sub,
//! which would need one subscription per slot owner).
//!
//! # Message format, version 1
//!
//! ```text
//! 0   3  magic "SCB"
//! 3   1  version (1)
//! 4   1  kind: 1 = keys changed (evict L1 copies, wake waiters),
//!           2 = leases released without a change (wake waiters only),
//!           3 = tags invalidated, 4 = namespace generation changed
//! 5  16  origin instance id
//! 21  8  sent-at, ms since the Unix epoch, big-endian (sender's clock;
//!        informational)
//! 29     body, by kind (integers big-endian):
//!        1, 2: u16 n, n x (u16 length, key bytes UTF-8)
//!        3:    u16 n, n x (u16 length, tag bytes UTF-8, u64 new version)
//!        4:    u64 new generation
//! ```
//!
//! Golden vectors: `tests/vectors/bus_v1.json`.
//!
//! Readers ignore messages with another magic or version, or an unknown
//! kind (a newer writer), and never fail on malformed input.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{Notify, watch};

use crate::config::RedisLocation;
use crate::metrics::Metrics;
use crate::runtime::{fork_generation, runtime};

/// How often the subscription is checked with a PING.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// The least time a PING may take before the bus counts as late.
const MIN_PING_WAIT: Duration = Duration::from_secs(1);

/// Milliseconds on a monotonic clock (since its first use in this process).
fn mono_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// Not confirmed yet: the subscription has never been up.
const NEVER: u64 = u64::MAX;

const MAGIC: &[u8; 3] = b"SCB";
const VERSION: u8 = 1;
const KIND_KEYS: u8 = 1;
const KIND_RELEASED: u8 = 2;
const KIND_TAGS: u8 = 3;
const KIND_GENERATION: u8 = 4;
const KIND_TAGS_CREATED: u8 = 5;
const KIND_GENERATION_CREATED: u8 = 6;

/// What a bus message says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BusEvent {
    /// These keys were written or removed: drop L1 copies, wake waiters.
    Keys(Vec<String>),
    /// The fleet leases of these keys were released without changing the
    /// value (a failed or uncached load, a lease taken and given back):
    /// wake waiters so one takes over, keep L1 copies.
    Released(Vec<String>),
    /// These tags have these new versions: every entry built with another
    /// version of one of them is stale.
    Tags(Vec<(String, u64)>),
    /// The namespace has this new generation: every entry built with
    /// another one is stale (`clear()`).
    Generation(u64),
    /// These tags had no version in Redis and were given these: adopt them
    /// only where the tag has no version yet (a late delivery must never
    /// overwrite a newer invalidation).
    TagsCreated(Vec<(String, u64)>),
    /// The namespace had no generation in Redis and was given this one
    /// (adopted only where none is known yet).
    GenerationCreated(u64),
}

/// One decoded bus message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusMessage {
    /// The sending instance.
    pub origin: [u8; 16],
    /// Sender's clock when sent, ms since the Unix epoch.
    pub sent_ms: u64,
    /// What happened.
    pub event: BusEvent,
}

fn put_names<'a>(out: &mut Vec<u8>, names: impl Iterator<Item = (&'a String, Option<u64>)>) {
    // Names longer than 65,535 bytes cannot be framed; they are left out
    // (keys and tags that long are refused by the API anyway).
    let names: Vec<_> = names
        .filter(|(n, _)| n.len() <= u16::MAX as usize)
        .take(u16::MAX as usize)
        .collect();
    out.extend_from_slice(&(names.len() as u16).to_be_bytes());
    for (n, v) in names {
        out.extend_from_slice(&(n.len() as u16).to_be_bytes());
        out.extend_from_slice(n.as_bytes());
        if let Some(v) = v {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<usize> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn name(&mut self) -> Option<String> {
        let len = self.u16()?;
        Some(std::str::from_utf8(self.take(len)?).ok()?.to_owned())
    }
}

impl BusMessage {
    /// Encode (format v1, see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(match &self.event {
            BusEvent::Keys(_) => KIND_KEYS,
            BusEvent::Released(_) => KIND_RELEASED,
            BusEvent::Tags(_) => KIND_TAGS,
            BusEvent::Generation(_) => KIND_GENERATION,
            BusEvent::TagsCreated(_) => KIND_TAGS_CREATED,
            BusEvent::GenerationCreated(_) => KIND_GENERATION_CREATED,
        });
        out.extend_from_slice(&self.origin);
        out.extend_from_slice(&self.sent_ms.to_be_bytes());
        match &self.event {
            BusEvent::Keys(keys) | BusEvent::Released(keys) => {
                put_names(&mut out, keys.iter().map(|k| (k, None)));
            }
            BusEvent::Tags(tags) | BusEvent::TagsCreated(tags) => {
                put_names(&mut out, tags.iter().map(|(t, v)| (t, Some(*v))));
            }
            BusEvent::Generation(g) | BusEvent::GenerationCreated(g) => {
                out.extend_from_slice(&g.to_be_bytes());
            }
        }
        out
    }

    /// Decode; `None` for anything that is not a well-formed v1 message.
    pub fn decode(buf: &[u8]) -> Option<BusMessage> {
        let mut r = Reader(buf);
        if r.take(3)? != MAGIC || r.take(1)?[0] != VERSION {
            return None;
        }
        let kind = r.take(1)?[0];
        let origin: [u8; 16] = r.take(16)?.try_into().ok()?;
        let sent_ms = r.u64()?;
        let event = match kind {
            KIND_KEYS | KIND_RELEASED => {
                let n = r.u16()?;
                let mut keys = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    keys.push(r.name()?);
                }
                if kind == KIND_KEYS {
                    BusEvent::Keys(keys)
                } else {
                    BusEvent::Released(keys)
                }
            }
            KIND_TAGS | KIND_TAGS_CREATED => {
                let n = r.u16()?;
                let mut tags = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let name = r.name()?;
                    tags.push((name, r.u64()?));
                }
                if kind == KIND_TAGS {
                    BusEvent::Tags(tags)
                } else {
                    BusEvent::TagsCreated(tags)
                }
            }
            KIND_GENERATION => BusEvent::Generation(r.u64()?),
            KIND_GENERATION_CREATED => BusEvent::GenerationCreated(r.u64()?),
            _ => return None,
        };
        if !r.0.is_empty() {
            return None;
        }
        Some(BusMessage {
            origin,
            sent_ms,
            event,
        })
    }
}

/// Per-key wake-ups for flight leaders waiting on another process's lease.
#[derive(Default)]
struct Waiters {
    map: HashMap<Arc<str>, (Arc<Notify>, usize)>,
}

/// A registration to be woken when `key` changes; unregisters on drop.
pub(crate) struct WaitHandle<'a> {
    bus: &'a Bus,
    key: Arc<str>,
    pub(crate) notify: Arc<Notify>,
}

impl Drop for WaitHandle<'_> {
    fn drop(&mut self) {
        let mut w = self.bus.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, n)) = w.map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                w.map.remove(&self.key);
            }
        }
    }
}

/// What the subscription reports to the owner of the bus (the engine),
/// which keeps its own state: the bus itself only knows messages, the
/// connection and who waits on which key.
pub(crate) trait Listener: Send + Sync + 'static {
    /// The bus this listener owns.
    fn bus(&self) -> Option<&Bus>;
    /// The subscription is up (again). Whatever was missed while it was
    /// down is unknown: called before any message is delivered. `first`:
    /// the first subscription of this process's subscriber task (in a
    /// forked child, its own first): what was learned before it was never
    /// covered by the bus.
    fn connected(&self, first: bool);
    /// The subscription dropped: messages sent from now on are missed.
    fn disconnected(&self);
    /// Apply an event another instance (or, for version changes, this
    /// one) published. Waiters on the event's keys are woken afterwards.
    fn apply(&self, event: BusEvent) -> impl std::future::Future<Output = ()> + Send;
}

pub(crate) struct Bus {
    pub(crate) origin: [u8; 16],
    pub(crate) channel: String,
    location: RedisLocation,
    connect_timeout: Duration,
    waiters: Mutex<Waiters>,
    connected: AtomicBool,
    /// When (`mono_ms`) the bus last proved it had delivered every message
    /// published before then: the send time of the latest answered PING,
    /// or the time the subscription was made. `NEVER` before the first.
    confirmed_ms: Arc<AtomicU64>,
    /// Fork generation the subscriber task runs in; `u64::MAX`: none.
    started: AtomicU64,
    start_lock: Mutex<Option<watch::Sender<()>>>,
    metrics: Arc<Metrics>,
}

impl Bus {
    pub(crate) fn new(
        namespace: &str,
        location: RedisLocation,
        connect_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Bus {
            metrics,
            origin: rand::random(),
            channel: crate::key::bus_channel(namespace),
            location,
            connect_timeout,
            waiters: Mutex::default(),
            connected: AtomicBool::new(false),
            confirmed_ms: Arc::new(AtomicU64::new(NEVER)),
            started: AtomicU64::new(u64::MAX),
            start_lock: Mutex::new(None),
        }
    }

    /// Whether the subscription is up (messages are being received).
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The staleness bound of L1 while the bus is late: how long after the
    /// bus last proved it was delivering invalidations L1 may still be
    /// served (a heartbeat period plus the longest a PING may take,
    /// `max(connect_timeout, 1 s)`; 2 s by default).
    pub(crate) fn lag_bound(&self) -> Duration {
        HEARTBEAT + self.connect_timeout.max(MIN_PING_WAIT)
    }

    /// Whether the bus has proved recently enough (within
    /// [`Bus::lag_bound`]) that it delivers invalidations; true before the
    /// subscription was ever made (nothing to be late on yet).
    #[inline]
    pub(crate) fn is_current(&self) -> bool {
        let confirmed = self.confirmed_ms.load(Ordering::Acquire);
        confirmed == NEVER
            || mono_ms().saturating_sub(confirmed) <= self.lag_bound().as_millis() as u64
    }

    /// For how many more ms [`Bus::is_current`] holds if the bus proves
    /// nothing more. Before the first proof, the whole bound: the
    /// subscription that starts the clock moves no word.
    pub(crate) fn current_for_ms(&self) -> u64 {
        let bound = self.lag_bound().as_millis() as u64;
        match self.confirmed_ms.load(Ordering::Acquire) {
            NEVER => bound,
            confirmed => bound.saturating_sub(mono_ms().saturating_sub(confirmed)),
        }
    }

    /// A "keys changed" message from this instance.
    pub(crate) fn keys_message(&self, keys: &[&str]) -> Vec<u8> {
        self.message(BusEvent::Keys(
            keys.iter().map(|k| (*k).to_owned()).collect(),
        ))
    }

    /// A "leases released, nothing changed" message from this instance.
    pub(crate) fn released_message(&self, keys: &[&str]) -> Vec<u8> {
        self.message(BusEvent::Released(
            keys.iter().map(|k| (*k).to_owned()).collect(),
        ))
    }

    /// "These tags have these new versions", from this instance.
    pub(crate) fn tags_message(&self, tags: &[(&str, u64)]) -> Vec<u8> {
        self.message(BusEvent::Tags(
            tags.iter().map(|(t, v)| ((*t).to_owned(), *v)).collect(),
        ))
    }

    /// "This tag had no version and got this one", from this instance.
    pub(crate) fn tag_created_message(&self, tag: &str, v: u64) -> Vec<u8> {
        self.message(BusEvent::TagsCreated(vec![(tag.to_owned(), v)]))
    }

    /// "The namespace has this new generation", from this instance.
    pub(crate) fn generation_message(&self, generation: u64) -> Vec<u8> {
        self.message(BusEvent::Generation(generation))
    }

    /// "The namespace had no generation and got this one".
    pub(crate) fn generation_created_message(&self, generation: u64) -> Vec<u8> {
        self.message(BusEvent::GenerationCreated(generation))
    }

    fn message(&self, event: BusEvent) -> Vec<u8> {
        BusMessage {
            origin: self.origin,
            sent_ms: crate::clock::now_ms(),
            event,
        }
        .encode()
    }

    /// Register to be woken when `key` changes.
    pub(crate) fn register(&self, key: &Arc<str>) -> WaitHandle<'_> {
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        let slot = w
            .map
            .entry(key.clone())
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        slot.1 += 1;
        WaitHandle {
            bus: self,
            key: key.clone(),
            notify: slot.0.clone(),
        }
    }

    fn wake(&self, key: &str) {
        let w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((n, _)) = w.map.get(key) {
            n.notify_waiters();
        }
    }

    fn wake_all(&self) {
        let w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        for (n, _) in w.map.values() {
            n.notify_waiters();
        }
    }

    /// Start the subscriber task if it is not running in this process (it
    /// does not survive `fork`). Cheap when it is: one atomic load.
    pub(crate) fn ensure_started<L: Listener>(&self, listener: &Arc<L>) {
        let generation = fork_generation();
        if self.started.load(Ordering::Acquire) == generation {
            return;
        }
        let mut stop = self.start_lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.started.load(Ordering::Acquire) == generation {
            return;
        }
        let (tx, rx) = watch::channel(());
        if let Some(old) = stop.replace(tx) {
            // Only ever the parent's (a forked child's first use): dropping
            // it would notify the parent's task through locks a thread that
            // no longer exists may have held at the fork. Leak it.
            std::mem::forget(old);
        }
        self.connected.store(false, Ordering::Release);
        self.started.store(generation, Ordering::Release);
        let weak = Arc::downgrade(listener);
        let urls = match &self.location {
            RedisLocation::Standalone(u) => vec![u.clone()],
            RedisLocation::Cluster(seeds) => seeds.clone(),
        };
        let timing = Timing {
            connect: self.connect_timeout,
            bound: self.lag_bound(),
            confirmed_ms: self.confirmed_ms.clone(),
        };
        let channel = self.channel.clone();
        runtime().spawn(subscriber(weak, urls, channel, timing, rx));
    }

    /// Stop the subscriber task (the shared cache is going away).
    fn stop(&self) {
        if let Ok(mut g) = self.start_lock.lock() {
            g.take();
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn connect(urls: &[String], channel: &str, timeout: Duration) -> Option<redis::aio::PubSub> {
    for url in urls {
        let client = if crate::l2::sentinel::is_sentinel_url(url) {
            // The master the sentinels name now; asked again on every
            // reconnect, so the bus follows a failover.
            let Ok(spec) = crate::l2::sentinel::SentinelSpec::parse(url) else {
                continue;
            };
            // A sentinel that does not answer holds the lookup up to a
            // connect timeout before the next one is asked.
            let deadline = timeout * (spec.sentinels.len() as u32 + 1);
            match tokio::time::timeout(deadline, crate::l2::sentinel::master_client(&spec)).await {
                Ok(Ok(c)) => c,
                _ => continue,
            }
        } else {
            let Ok(client) = redis::Client::open(url.as_str()) else {
                continue;
            };
            client
        };
        let attempt = async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(ps)
        };
        if let Ok(Ok(ps)) = tokio::time::timeout(timeout, attempt).await {
            return Some(ps);
        }
    }
    None
}

/// The subscriber task's clocks.
struct Timing {
    connect: Duration,
    /// [`Bus::lag_bound`]: also how long a PING may go unanswered before
    /// the connection counts as dead.
    bound: Duration,
    confirmed_ms: Arc<AtomicU64>,
}

async fn subscriber<L: Listener>(
    weak: Weak<L>,
    urls: Vec<String>,
    channel: String,
    timing: Timing,
    mut stop: watch::Receiver<()>,
) {
    let generation = fork_generation();
    let mut backoff = Duration::from_millis(50);
    let mut first = true;
    loop {
        if fork_generation() != generation {
            return;
        }
        let ps = tokio::select! {
            ps = connect(&urls, &channel, timing.connect) => ps,
            _ = stop.changed() => return,
        };
        if let Some(ps) = ps {
            backoff = Duration::from_millis(50);
            let subscribed = mono_ms();
            {
                let Some(owner) = weak.upgrade() else { return };
                let Some(bus) = owner.bus() else { return };
                owner.connected(std::mem::take(&mut first));
                timing.confirmed_ms.store(subscribed, Ordering::Release);
                bus.connected.store(true, Ordering::Release);
                Metrics::inc(&bus.metrics.bus_connects);
                // Messages may have been missed while down: re-check.
                bus.wake_all();
            }
            let (sink, mut stream) = ps.split();
            // Every heartbeat a PING; its answer proves every message
            // published before it was sent has been delivered (pub/sub
            // replies come in order), which keeps L1 trusted. A slow answer
            // is waited for while messages keep being applied: L1 goes
            // untrusted once the last proof is older than the bound, but
            // the connection is kept (reconnecting would lose messages and
            // clear L1). Only a PING unanswered for the whole bound (a
            // frozen server, a silent partition) counts as a drop.
            let mut heartbeat = tokio::time::interval(HEARTBEAT);
            heartbeat.tick().await;
            type Ping = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;
            let mut ping: Option<(u64, Ping)> = None;
            loop {
                let msg = tokio::select! {
                    // Messages first: a PING's answer is only taken once
                    // everything delivered before it has been applied.
                    biased;
                    m = stream.next() => m,
                    answered = async {
                        match ping.as_mut() {
                            Some((_, p)) => p.await,
                            None => std::future::pending().await,
                        }
                    } => {
                        let Some((sent, _)) = ping.take() else { continue };
                        if !answered {
                            None
                        } else {
                            timing.confirmed_ms.fetch_max(sent, Ordering::AcqRel);
                            continue;
                        }
                    }
                    _ = heartbeat.tick() => {
                        if ping.is_none() {
                            let mut sink = sink.clone();
                            let bound = timing.bound;
                            ping = Some((mono_ms(), Box::pin(async move {
                                matches!(
                                    tokio::time::timeout(bound, sink.ping::<redis::Value>()).await,
                                    Ok(Ok(_))
                                )
                            })));
                        }
                        continue;
                    }
                    _ = stop.changed() => return,
                };
                let Some(msg) = msg else { break };
                let Some(owner) = weak.upgrade() else { return };
                on_message(&*owner, msg.get_payload_bytes()).await;
            }
            let Some(owner) = weak.upgrade() else { return };
            if let Some(bus) = owner.bus() {
                owner.disconnected();
                bus.connected.store(false, Ordering::Release);
                Metrics::inc(&bus.metrics.bus_outages);
                bus.wake_all();
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {},
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

async fn on_message<L: Listener>(owner: &L, payload: &[u8]) {
    let Some(bus) = owner.bus() else { return };
    let Some(msg) = BusMessage::decode(payload) else {
        Metrics::inc(&bus.metrics.bus_bad_messages);
        return;
    };
    // Version changes are applied in bus order even when they are our own:
    // an invalidation by another instance published just before ours may
    // be delivered after we set ours locally, and ours must end up last.
    let versions = matches!(msg.event, BusEvent::Tags(_) | BusEvent::Generation(_));
    if msg.origin == bus.origin && !versions {
        return;
    }
    let woken = match &msg.event {
        BusEvent::Keys(keys) | BusEvent::Released(keys) => keys.clone(),
        _ => Vec::new(),
    };
    owner.apply(msg.event).await;
    for k in &woken {
        bus.wake(k);
    }
    // Counted once applied (tests wait on it).
    Metrics::inc(&bus.metrics.bus_received);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let m = BusMessage {
            origin: [7; 16],
            sent_ms: 1_700_000_000_000,
            event: BusEvent::Keys(vec!["a".into(), "ключ".into(), String::new()]),
        };
        let b = m.encode();
        assert_eq!(BusMessage::decode(&b), Some(m));
        for cut in 0..b.len() {
            assert_eq!(BusMessage::decode(&b[..cut]), None, "truncated at {cut}");
        }
        let mut extra = b.clone();
        extra.push(0);
        assert_eq!(BusMessage::decode(&extra), None);
        let mut v2 = b.clone();
        v2[3] = 2;
        assert_eq!(BusMessage::decode(&v2), None, "another version");
        let mut k9 = b;
        k9[4] = 9;
        assert_eq!(BusMessage::decode(&k9), None, "an unknown kind");
        let r = BusMessage {
            origin: [1; 16],
            sent_ms: 5,
            event: BusEvent::Released(vec!["k".into()]),
        };
        assert_eq!(BusMessage::decode(&r.encode()), Some(r));
    }
}
