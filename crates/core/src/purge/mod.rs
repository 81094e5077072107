//! Purges pushed to the edges in front of the app (Varnish, Fastly,
//! Cloudflare, CloudFront, Akamai, a webhook) when tags are invalidated.
//!
//! **Who sends.** The process that invalidates: [`Cache::invalidate_tags`]
//! (called by the app, by an HTTP unsafe method's settlement, or by the
//! change-feed or broker listener that holds its lease) queues the tags
//! once the new versions are in Redis. The rest of the fleet learns of the
//! invalidation from the bus and sends nothing, so each invalidation is
//! purged once per fleet, not once per process.
//!
//! **How.** One queue and one task per edge, on the core's runtime.
//! Queuing never waits: it adds the tag's edge form ([`EdgePurge`]'s
//! header rules, the same string the response's tag header carried) to a
//! deduplicated set. The task gathers for `linger` (which also lets the
//! bus reach the other processes before the edge asks them again), then
//! sends the set, with [`OVERFLOW_TAG`] (the tag of responses whose tags
//! did not fit their header), as the vendor's requests within its limits,
//! one request at a time. A request is retried on a network error, a
//! timeout, 408, 425, 429 (after its `Retry-After`, at most a minute) or
//! a 5xx, with exponential backoff and jitter, up to `max_attempts`;
//! another 4xx (bad credentials, a malformed tag) is given up at once.
//! Tags invalidated while a batch is in flight go in the next one.
//! Counted: `edge_purges`, `edge_purge_tags`, `edge_purge_retries`,
//! `edge_purge_failures`, `edge_purge_dropped` (a queue past
//! [`MAX_PENDING`] tags), gauge `edge_purge_pending`. Logs name the vendor
//! and the endpoint's origin, never a credential.
//!
//! After `fork` the child starts its own tasks with empty queues (the
//! parent still sends what it had queued).

mod sign;
mod target;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

pub use target::{EdgePurge, PurgeRequest, Vendor};

use crate::http::edge::OVERFLOW_TAG;
use crate::metrics::Metrics;

/// Tags one edge's queue holds at most; more are dropped and counted in
/// `edge_purge_dropped` (an edge down for long, under a storm of distinct
/// tags).
pub const MAX_PENDING: usize = 100_000;

/// The purge queues of one cache state, one per configured edge.
pub(crate) struct Purger {
    namespace: Arc<str>,
    targets: Vec<EdgePurge>,
    /// This process's queues and the fork generation they belong to. A
    /// forked child never touches its parent's (their wakers belong to
    /// the parent's runtime, dead in the child): it leaks them and makes
    /// its own, empty (what was queued is the parent's to send).
    queues: Mutex<(u64, Vec<Arc<Queue>>)>,
    metrics: Arc<Metrics>,
}

struct Queue {
    target: EdgePurge,
    state: Mutex<QueueState>,
    /// Work was queued (or the purger closed).
    wake: Notify,
    /// A batch was settled: sent, or given up.
    settled: Notify,
    /// Tags queued and not yet taken into a batch.
    pending_gauge: AtomicU64,
}

#[derive(Default)]
struct QueueState {
    pending: Vec<String>,
    seen: HashSet<String>,
    /// A batch is being sent.
    busy: bool,
    /// The task is running.
    started: bool,
    closed: bool,
}

fn queues_for(targets: &[EdgePurge]) -> Vec<Arc<Queue>> {
    targets
        .iter()
        .map(|t| {
            Arc::new(Queue {
                target: t.clone(),
                state: Mutex::default(),
                wake: Notify::new(),
                settled: Notify::new(),
                pending_gauge: AtomicU64::new(0),
            })
        })
        .collect()
}

impl Purger {
    pub(crate) fn new(namespace: &str, targets: &[EdgePurge], metrics: Arc<Metrics>) -> Self {
        Purger {
            namespace: namespace.into(),
            targets: targets.to_vec(),
            queues: Mutex::new((crate::runtime::fork_generation(), queues_for(targets))),
            metrics,
        }
    }

    /// This process's queues (new ones after a fork).
    fn current(&self) -> Vec<Arc<Queue>> {
        let generation = crate::runtime::fork_generation();
        let mut g = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 != generation {
            let parents = std::mem::replace(&mut g.1, queues_for(&self.targets));
            std::mem::forget(parents);
            g.0 = generation;
        }
        g.1.clone()
    }

    /// Queue a purge of `tags` on every edge; returns at once.
    pub(crate) fn enqueue(&self, tags: &[&str]) {
        for q in self.current() {
            let mut st = q.state.lock().unwrap_or_else(|e| e.into_inner());
            if !st.started {
                st.started = true;
                crate::runtime::runtime().spawn(run(
                    q.clone(),
                    self.namespace.clone(),
                    self.metrics.clone(),
                ));
            }
            let mut dropped = 0u64;
            for t in tags {
                let form = q.target.edge_form(t);
                if st.seen.contains(&form) {
                    continue;
                }
                if st.pending.len() >= MAX_PENDING {
                    dropped += 1;
                    continue;
                }
                st.seen.insert(form.clone());
                st.pending.push(form);
            }
            q.pending_gauge
                .store(st.pending.len() as u64, Ordering::Relaxed);
            drop(st);
            if dropped > 0 {
                Metrics::add(&self.metrics.edge_purge_dropped, dropped);
                tracing::warn!(
                    edge = q.target.kind(),
                    endpoint = %q.target.label(),
                    dropped,
                    "edge purge queue full: tags dropped"
                );
            }
            q.wake.notify_one();
        }
    }

    /// Tags queued and not yet taken into a batch, over every edge.
    pub(crate) fn pending(&self) -> u64 {
        self.current()
            .iter()
            .map(|q| q.pending_gauge.load(Ordering::Relaxed))
            .sum()
    }

    /// Wait until every queue is empty and no batch is in flight (sent,
    /// or given up after its retries), or `timeout`. `true` when settled.
    pub(crate) async fn flush(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        for q in self.current() {
            loop {
                let settled = q.settled.notified();
                tokio::pin!(settled);
                settled.as_mut().enable();
                {
                    let st = q.state.lock().unwrap_or_else(|e| e.into_inner());
                    if st.pending.is_empty() && !st.busy {
                        break;
                    }
                }
                if tokio::time::timeout_at(deadline, settled).await.is_err() {
                    return false;
                }
            }
        }
        true
    }
}

impl Drop for Purger {
    fn drop(&mut self) {
        // The tasks send what is queued, then end (a forked child's
        // inherited queues are left alone: see `current`).
        for q in self.current() {
            q.state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
            q.wake.notify_one();
        }
    }
}

impl EdgePurge {
    /// How `tag` is named to this edge: its header's form, or the tag
    /// itself for a webhook (a key dependency as `k:{<key>}`).
    pub fn edge_form(&self, tag: &str) -> String {
        match self.vendor {
            // A key dependency as `k:{<key>}` (`k:{#<hash>}` for a long key).
            Vendor::Webhook { .. } => match tag.strip_prefix(crate::key::KEY_DEP_PREFIX) {
                Some(slot) => format!("k:{slot}"),
                None => tag.to_owned(),
            },
            _ => self.tags.edge_tag(tag),
        }
    }
}

/// One edge's task: wait for tags, gather for `linger`, send, repeat.
async fn run(q: Arc<Queue>, namespace: Arc<str>, metrics: Arc<Metrics>) {
    let client = match client() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(edge = q.target.kind(), error = %e, "edge purges disabled: no HTTP client");
            None
        }
    };
    loop {
        loop {
            let woken = q.wake.notified();
            {
                let st = q.state.lock().unwrap_or_else(|e| e.into_inner());
                if !st.pending.is_empty() {
                    break;
                }
                if st.closed {
                    return;
                }
            }
            woken.await;
        }
        tokio::time::sleep(q.target.linger).await;
        let mut batch = {
            let mut st = q.state.lock().unwrap_or_else(|e| e.into_inner());
            st.busy = true;
            st.seen.clear();
            q.pending_gauge.store(0, Ordering::Relaxed);
            std::mem::take(&mut st.pending)
        };
        // Whatever happens to this batch, the queue is not left busy.
        let _settle = Settle(&q);
        let overflow = q.target.edge_form(OVERFLOW_TAG);
        if !batch.contains(&overflow) {
            batch.push(overflow);
        }
        for req in q.target.requests(&namespace, &batch) {
            match &client {
                Some(c) => send(c, &q.target, &req, &metrics).await,
                None => Metrics::inc(&metrics.edge_purge_failures),
            }
        }
    }
}

/// Ends a batch: not busy any more, and `flush` told.
struct Settle<'a>(&'a Queue);

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        let mut st = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        st.busy = false;
        if std::thread::panicking() {
            // The task is ending: the next enqueue starts another.
            st.started = false;
        }
        drop(st);
        self.0.settled.notify_waiters();
    }
}

/// The HTTP client: rustls on ring with the system's roots, no redirects
/// (a purge's credentials go nowhere else).
fn client() -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        tracing::warn!(
            "edge purges: no CA certificates found on this system; https endpoints will fail"
        );
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("stratacache/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// What one attempt came to.
enum Attempt {
    Done,
    /// Why, and the wait the edge asked for.
    Retry(String, Option<Duration>),
    GiveUp(String),
}

/// Send `req`, retrying as the module docs say; counted either way.
async fn send(client: &reqwest::Client, target: &EdgePurge, req: &PurgeRequest, m: &Metrics) {
    let mut last = String::new();
    for attempt in 1..=target.max_attempts {
        let wait = match attempt_once(client, target, req).await {
            Attempt::Done => {
                Metrics::inc(&m.edge_purges);
                Metrics::add(&m.edge_purge_tags, req.tags as u64);
                return;
            }
            Attempt::GiveUp(why) => {
                last = why;
                break;
            }
            Attempt::Retry(why, after) => {
                last = why;
                after
            }
        };
        if attempt == target.max_attempts {
            break;
        }
        Metrics::inc(&m.edge_purge_retries);
        let backoff =
            Duration::from_millis(100u64 << (attempt - 1).min(6)).min(Duration::from_secs(5));
        let jittered = backoff.mul_f64(0.5 + rand::random::<f64>() * 0.5);
        tokio::time::sleep(wait.map_or(jittered, |w| w.max(jittered))).await;
    }
    Metrics::inc(&m.edge_purge_failures);
    tracing::warn!(
        edge = target.kind(),
        endpoint = %target.label(),
        tags = req.tags,
        reason = %last,
        "edge purge given up"
    );
}

async fn attempt_once(client: &reqwest::Client, target: &EdgePurge, req: &PurgeRequest) -> Attempt {
    let Ok(method) = reqwest::Method::from_bytes(req.method.as_bytes()) else {
        return Attempt::GiveUp(format!("bad method {:?}", req.method));
    };
    let mut headers = req.headers.clone();
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match &target.vendor {
        Vendor::CloudFront {
            access_key_id,
            secret_access_key,
            session_token,
            ..
        } => {
            let signed = sign::sigv4(
                &req.method,
                &req.url,
                &headers,
                &req.body,
                access_key_id,
                secret_access_key,
                session_token.as_deref(),
                "us-east-1",
                "cloudfront",
                unix,
            );
            headers.extend(signed);
        }
        Vendor::Akamai {
            client_token,
            client_secret,
            access_token,
            ..
        } => {
            let nonce = crate::key::hex(&rand::random::<[u8; 16]>());
            headers.push((
                "authorization".into(),
                sign::edgegrid(
                    &req.method,
                    &req.url,
                    &req.body,
                    client_token,
                    client_secret,
                    access_token,
                    &sign::edgegrid_timestamp(unix),
                    &nonce,
                ),
            ));
        }
        Vendor::Webhook {
            secret: Some(secret),
            ..
        } => headers.push((
            "x-stratacache-signature".into(),
            sign::webhook(secret, &req.body),
        )),
        _ => {}
    }
    let mut rb = client
        .request(method, &req.url)
        .timeout(target.timeout)
        .body(req.body.clone());
    for (k, v) in &headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    match rb.send().await {
        Err(e) if e.is_builder() => Attempt::GiveUp("the request could not be built".into()),
        // The error's text can name the URL: keep it out of logs.
        Err(e) if e.is_timeout() => Attempt::Retry("timed out".into(), None),
        Err(_) => Attempt::Retry("no connection".into(), None),
        Ok(resp) => {
            let status = resp.status();
            if status.is_success() {
                return Attempt::Done;
            }
            let code = status.as_u16();
            if matches!(code, 408 | 425 | 429)
                || (status.is_server_error() && !matches!(code, 501 | 505))
            {
                let after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(retry_after)
                    // A rate limit without a hint: its bucket refills in
                    // seconds, not in the backoff's milliseconds.
                    .or((code == 429).then_some(Duration::from_secs(5)));
                return Attempt::Retry(format!("HTTP {code}"), after);
            }
            if code == 400 && matches!(target.vendor, Vendor::CloudFront { .. }) {
                // Too many invalidations in progress clears as they finish.
                let body = resp.text().await.unwrap_or_default();
                if body.contains("TooManyInvalidationsInProgress") {
                    return Attempt::Retry("too many invalidations in progress".into(), None);
                }
            }
            Attempt::GiveUp(format!("HTTP {code}"))
        }
    }
}

/// A `Retry-After` value (seconds or an HTTP date) as a wait, at most a
/// minute.
fn retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    let wait = match v.parse::<u64>() {
        Ok(s) => Duration::from_secs(s),
        Err(_) => httpdate::parse_http_date(v)
            .ok()?
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(Duration::from_secs(60)))
}

#[cfg(test)]
mod tests;
