//! Listing a namespace's live entries, a page at a time
//! ([`Cache::scan_page`]): what Keyv's `iterator()` needs. With Redis, a
//! `SCAN` over every master; without, this process's L1. Every entry is
//! judged as a read would judge it (expired, invalidated by a tag or a
//! `clear()`: left out).

use std::sync::Arc;

use crate::cache::Cache;
use crate::engine::Judged;
use crate::envelope::Entry;
use crate::error::{Error, Result};
use crate::key::{RedisKeys, entry_key_of};

/// One page of [`Cache::scan_page`].
#[derive(Debug, Default)]
pub struct ScanPage {
    /// Pass it to the next call; empty when the listing is complete.
    pub cursor: String,
    /// Live entries with their key; the key is `None` for a key stored
    /// under its hash (see [`crate::key::is_hashed`]): whoever wants it back
    /// keeps it in the value.
    pub entries: Vec<(Option<String>, Arc<Entry>)>,
}

impl Cache {
    /// The next page of the namespace's live entries, from `cursor` (`""`
    /// to start). A key written or removed during the listing may or may
    /// not appear; one that lives throughout appears once.
    pub async fn scan_page(&self, cursor: &str) -> Result<ScanPage> {
        if self.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        let Some(l2) = self.l2() else {
            return Ok(self.scan_l1().await);
        };
        let (node_i, node_cursor) = match cursor {
            "" => (0usize, 0u64),
            c => c
                .split_once(':')
                .and_then(|(n, c)| Some((n.parse().ok()?, c.parse().ok()?)))
                .ok_or_else(|| {
                    Error::InvalidValue(format!("scan cursor {c:?} is not one this cache returned"))
                })?,
        };
        let nodes = l2.scan_nodes().await?;
        let Some(node) = nodes.get(node_i) else {
            return Ok(ScanPage::default());
        };
        let ns = &self.shared.namespace;
        let pattern = crate::key::namespace_pattern(ns);
        let (next, names) = l2.scan_page(node, node_cursor, &pattern).await?;
        let mut keys = Vec::new();
        let mut rkeys = Vec::new();
        for name in names {
            if let Some(k) = entry_key_of(ns, &name)
                && let Ok(value) = String::from_utf8(name)
            {
                keys.push(k);
                rkeys.push(RedisKeys { value });
            }
        }
        let mut entries = Vec::with_capacity(keys.len());
        for (k, bytes) in keys.into_iter().zip(l2.mget(&rkeys).await?) {
            if let Some(e) = self.shared.fresh(bytes, self.accepted).await {
                entries.push((k, e));
            }
        }
        let cursor = match (next, node_i + 1 < nodes.len()) {
            (0, false) => String::new(),
            (0, true) => format!("{}:0", node_i + 1),
            (c, _) => format!("{node_i}:{c}"),
        };
        Ok(ScanPage { cursor, entries })
    }

    /// L1 alone: every live entry in one page.
    async fn scan_l1(&self) -> ScanPage {
        let mut entries = Vec::new();
        if let Some(l1) = &self.shared.l1 {
            for (k, e) in l1.snapshot() {
                if let Judged::Fresh(e) = self.shared.judge(e, self.accepted).await {
                    entries.push((Some(k.to_string()), e));
                }
            }
        }
        ScanPage {
            cursor: String::new(),
            entries,
        }
    }
}
