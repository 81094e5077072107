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
//!           2 = leases released without a change (wake waiters only)
//! 5  16  origin instance id
//! 21  8  sent-at, ms since the Unix epoch, big-endian (sender's clock;
//!        informational)
//! 29  2  key count n, big-endian
//! 31     n x (u16 big-endian length, key bytes UTF-8)
//! ```
//!
//! Readers ignore messages with another magic or version, or an unknown
//! kind (a newer writer), and never fail on malformed input.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{Notify, watch};

use crate::cache::Shared;
use crate::config::RedisLocation;
use crate::metrics::Metrics;
use crate::runtime::{fork_generation, runtime};

const MAGIC: &[u8; 3] = b"SCB";
const VERSION: u8 = 1;
const KIND_KEYS: u8 = 1;
const KIND_RELEASED: u8 = 2;
const HEADER: usize = 31;

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
}

impl BusEvent {
    fn kind_and_keys(&self) -> (u8, &[String]) {
        match self {
            BusEvent::Keys(k) => (KIND_KEYS, k),
            BusEvent::Released(k) => (KIND_RELEASED, k),
        }
    }
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

impl BusMessage {
    /// Encode. Keys longer than 65,535 bytes cannot occur (the core hashes
    /// long keys for Redis, but bus messages carry the caller's key), so
    /// such keys are truncated out: the message then names fewer keys.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, keys) = self.event.kind_and_keys();
        let keys: Vec<&String> = keys
            .iter()
            .filter(|k| k.len() <= u16::MAX as usize)
            .take(u16::MAX as usize)
            .collect();
        let mut out = Vec::with_capacity(HEADER + keys.iter().map(|k| 2 + k.len()).sum::<usize>());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(kind);
        out.extend_from_slice(&self.origin);
        out.extend_from_slice(&self.sent_ms.to_be_bytes());
        out.extend_from_slice(&(keys.len() as u16).to_be_bytes());
        for k in keys {
            out.extend_from_slice(&(k.len() as u16).to_be_bytes());
            out.extend_from_slice(k.as_bytes());
        }
        out
    }

    /// Decode; `None` for anything that is not a well-formed v1 message.
    pub fn decode(buf: &[u8]) -> Option<BusMessage> {
        if buf.len() < HEADER || &buf[..3] != MAGIC || buf[3] != VERSION {
            return None;
        }
        let kind = buf[4];
        if kind != KIND_KEYS && kind != KIND_RELEASED {
            return None;
        }
        let origin: [u8; 16] = buf[5..21].try_into().ok()?;
        let sent_ms = u64::from_be_bytes(buf[21..29].try_into().ok()?);
        let n = u16::from_be_bytes([buf[29], buf[30]]) as usize;
        let mut keys = Vec::with_capacity(n.min(1024));
        let mut rest = &buf[HEADER..];
        for _ in 0..n {
            if rest.len() < 2 {
                return None;
            }
            let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            let body = rest.get(2..2 + len)?;
            keys.push(std::str::from_utf8(body).ok()?.to_owned());
            rest = &rest[2 + len..];
        }
        if !rest.is_empty() {
            return None;
        }
        Some(BusMessage {
            origin,
            sent_ms,
            event: if kind == KIND_KEYS {
                BusEvent::Keys(keys)
            } else {
                BusEvent::Released(keys)
            },
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

pub(crate) struct Bus {
    pub(crate) origin: [u8; 16],
    pub(crate) channel: String,
    location: RedisLocation,
    connect_timeout: Duration,
    waiters: Mutex<Waiters>,
    connected: AtomicBool,
    /// Fork generation the subscriber task runs in; `u64::MAX`: none.
    started: AtomicU64,
    start_lock: Mutex<Option<watch::Sender<()>>>,
}

impl Bus {
    pub(crate) fn new(namespace: &str, location: RedisLocation, connect_timeout: Duration) -> Self {
        Bus {
            origin: rand::random(),
            channel: crate::key::bus_channel(namespace),
            location,
            connect_timeout,
            waiters: Mutex::default(),
            connected: AtomicBool::new(false),
            started: AtomicU64::new(u64::MAX),
            start_lock: Mutex::new(None),
        }
    }

    /// Whether the subscription is up (messages are being received).
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
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
    pub(crate) fn ensure_started(&self, shared: &Arc<Shared>) {
        let generation = fork_generation();
        if self.started.load(Ordering::Acquire) == generation {
            return;
        }
        let mut stop = self.start_lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.started.load(Ordering::Acquire) == generation {
            return;
        }
        // Dropping the old sender stops a task of the same process; in a
        // forked child the old task does not exist any more.
        let (tx, rx) = watch::channel(());
        *stop = Some(tx);
        self.connected.store(false, Ordering::Release);
        self.started.store(generation, Ordering::Release);
        let weak = Arc::downgrade(shared);
        let urls = match &self.location {
            RedisLocation::Standalone(u) => vec![u.clone()],
            RedisLocation::Cluster(seeds) => seeds.clone(),
        };
        let connect_timeout = self.connect_timeout;
        let channel = self.channel.clone();
        runtime().spawn(subscriber(weak, urls, channel, connect_timeout, rx));
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
        let Ok(client) = redis::Client::open(url.as_str()) else {
            continue;
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

async fn subscriber(
    weak: Weak<Shared>,
    urls: Vec<String>,
    channel: String,
    connect_timeout: Duration,
    mut stop: watch::Receiver<()>,
) {
    let generation = fork_generation();
    let mut backoff = Duration::from_millis(50);
    loop {
        if fork_generation() != generation {
            return;
        }
        let ps = tokio::select! {
            ps = connect(&urls, &channel, connect_timeout) => ps,
            _ = stop.changed() => return,
        };
        if let Some(ps) = ps {
            backoff = Duration::from_millis(50);
            {
                let Some(sh) = weak.upgrade() else { return };
                let Some(bus) = &sh.bus else { return };
                bus.connected.store(true, Ordering::Release);
                Metrics::inc(&sh.metrics.bus_connects);
                // Messages may have been missed while down: re-check.
                bus.wake_all();
            }
            let mut stream = ps.into_on_message();
            loop {
                let msg = tokio::select! {
                    m = stream.next() => m,
                    _ = stop.changed() => return,
                };
                let Some(msg) = msg else { break };
                let Some(sh) = weak.upgrade() else { return };
                on_message(&sh, msg.get_payload_bytes()).await;
            }
            let Some(sh) = weak.upgrade() else { return };
            if let Some(bus) = &sh.bus {
                bus.connected.store(false, Ordering::Release);
                bus.wake_all();
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {},
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

async fn on_message(sh: &Arc<Shared>, payload: &[u8]) {
    let Some(bus) = &sh.bus else { return };
    let Some(msg) = BusMessage::decode(payload) else {
        Metrics::inc(&sh.metrics.bus_bad_messages);
        return;
    };
    if msg.origin == bus.origin {
        return;
    }
    Metrics::inc(&sh.metrics.bus_received);
    match msg.event {
        BusEvent::Keys(keys) => {
            for k in &keys {
                if let Some(l1) = &sh.l1 {
                    l1.remove(k).await;
                }
                bus.wake(k);
            }
        }
        BusEvent::Released(keys) => {
            for k in &keys {
                bus.wake(k);
            }
        }
    }
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
