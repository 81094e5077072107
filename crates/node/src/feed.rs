//! The core's PostgreSQL change feed (`stratacache::feed`) for
//! `node/feed.js`: argument conversion only.

use std::sync::Mutex;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use stratacache::Cache;
use stratacache::feed::{Listener, PgFeed};

use crate::convert::ms;
use crate::error::js_err;

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
    inner: Mutex<Option<Listener>>,
}

/// Start the feed of `o` into `cache` (the body of `NativeCache.startPgListener`).
pub(crate) async fn start(cache: Cache, o: PgFeedOptions) -> Result<NativePgListener> {
    let mut feed = PgFeed::new(o.url);
    for t in o.tables {
        feed = match t.tags {
            None => feed.table(t.name),
            Some(tags) => feed.table_tags(t.name, tags),
        };
    }
    if let Some(s) = o.slot {
        feed = feed.slot(s);
    }
    if let Some(p) = o.publication {
        feed = feed.publication(p);
    }
    if let Some(p) = o.poll_interval_ms {
        feed = feed.poll_interval(ms("pollInterval", p)?);
    }
    if let Some(l) = o.lease_ttl_ms {
        feed = feed.lease_ttl(ms("leaseTtl", l)?);
    }
    let listener = Listener::start(cache, feed).await.map_err(js_err)?;
    Ok(NativePgListener {
        inner: Mutex::new(Some(listener)),
    })
}

#[napi]
impl NativePgListener {
    /// The counters (all zero once stopped).
    #[napi]
    pub fn stats(&self) -> PgFeedStats {
        let s = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(Listener::stats)
            .unwrap_or_default();
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
        let l = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(l) = l {
            l.stop().await;
        }
    }
}
