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
        if self.bypass {
            return Ok(ScanPage::default());
        }
        let Some(l2) = self.l2() else {
            return Ok(self.scan_l1().await);
        };
        let nodes = l2.scan_nodes().await?;
        // The cursor names its node by address (`host:port#cursor`), not
        // by position, so a change of masters is noticed, not skipped.
        let (node_i, node_cursor) = match cursor {
            "" => (0usize, 0u64),
            c => {
                let (addr, n) = c.rsplit_once('#').ok_or_else(|| {
                    Error::InvalidValue(format!("scan cursor {c:?} is not one this cache returned"))
                })?;
                let n: u64 = n.parse().map_err(|_| {
                    Error::InvalidValue(format!("scan cursor {c:?} is not one this cache returned"))
                })?;
                let i = nodes.iter().position(|node| node.to_string() == addr).ok_or_else(|| {
                    Error::L2(format!(
                        "the masters changed during the listing ({addr} is not one now): start it again"
                    ))
                })?;
                (i, n)
            }
        };
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
        let cursor = match (next, nodes.get(node_i + 1)) {
            (0, None) => String::new(),
            (0, Some(n)) => format!("{n}#0"),
            (c, _) => format!("{node}#{c}"),
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
