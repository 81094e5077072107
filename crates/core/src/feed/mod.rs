//! A change feed from PostgreSQL: every committed row change in chosen
//! tables becomes tag invalidations, whoever made it (`psql`, another
//! service, a migration).
//!
//! The feed reads PostgreSQL's logical decoding (the built-in `pgoutput`
//! plugin) through a replication slot with the SQL functions
//! `pg_logical_slot_peek_binary_changes` and `pg_replication_slot_advance`:
//! it peeks committed transactions, invalidates their tags (in Redis and on
//! the bus, so every process's L1 drops them), and only then advances the
//! slot past them. So:
//!
//! - **Durable, at least once**: the slot keeps every change until the
//!   feed has invalidated it. A listener killed between a commit and its
//!   invalidation invalidates it when it (or another) starts again; one
//!   killed after invalidating but before advancing invalidates again
//!   (harmless: an invalidation is idempotent).
//! - **Committed only**: logical decoding emits transactions at commit;
//!   a rolled-back one produces nothing.
//! - **One active listener per fleet**: a lease in Redis (renewed while
//!   active, taken over by a standby within its TTL when the active one
//!   dies) decides which listener reads the slot, so every app instance may
//!   run one. Without Redis the listener is always active.
//! - **Polling**: an idle feed peeks every `poll_interval` (20 ms by
//!   default), which bounds the added latency.
//!
//! What a change invalidates is [`tags`]' rule. Start-up checks give clear
//! configuration errors: PostgreSQL unreachable or refusing the login,
//! `wal_level` not `logical`, a role without the `REPLICATION` attribute,
//! an unknown table, a template naming an unknown column.

pub mod amqp;
pub mod config;
mod consume;
pub mod events;
pub mod nats;
pub mod pgoutput;
mod running;
pub mod tags;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio_postgres::{Client, NoTls};

use crate::Cache;
use crate::error::{Error, Result};
pub use consume::{EventListener, EventStats};
use pgoutput::{Message, Relation};

/// What to listen to, and how.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PgFeed {
    /// A libpq URL or key-value string (`postgresql://user@host:5432/db`).
    pub url: String,
    /// `schema.table` (a bare name means `public`) and its tag templates
    /// (`None`: the default tags).
    pub tables: Vec<(String, Option<Vec<String>>)>,
    /// The replication slot (created when absent). Default `stratacache`.
    pub slot: String,
    /// The publication (created or updated to the tables). Default
    /// `stratacache`.
    pub publication: String,
    /// How often an idle feed looks for changes. Default 20 ms.
    pub poll_interval: Duration,
    /// How long the fleet lease lasts without renewal (a standby takes
    /// over within it). Default 5 s.
    pub lease_ttl: Duration,
    /// Most row changes read per peek (whole transactions are kept
    /// together). Default 10,000.
    pub batch: u32,
}

impl PgFeed {
    /// A feed of `url` with the defaults and no tables yet.
    pub fn new(url: impl Into<String>) -> Self {
        PgFeed {
            url: url.into(),
            tables: Vec::new(),
            slot: "stratacache".into(),
            publication: "stratacache".into(),
            poll_interval: Duration::from_millis(20),
            lease_ttl: Duration::from_secs(5),
            batch: 10_000,
        }
    }

    /// A feed from options a binding may leave unset (`None`: the
    /// default); `tables` as `(table, templates)`.
    pub fn from_options(
        url: impl Into<String>,
        tables: Vec<(String, Option<Vec<String>>)>,
        slot: Option<String>,
        publication: Option<String>,
        poll_interval: Option<Duration>,
        lease_ttl: Option<Duration>,
    ) -> Self {
        let d = PgFeed::new(url);
        PgFeed {
            tables,
            slot: slot.unwrap_or(d.slot),
            publication: publication.unwrap_or(d.publication),
            poll_interval: poll_interval.unwrap_or(d.poll_interval),
            lease_ttl: lease_ttl.unwrap_or(d.lease_ttl),
            ..d
        }
    }

    /// Listen to `table` with the default tags.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.tables.push((table.into(), None));
        self
    }

    /// Listen to `table`, invalidating `templates` (`{column}` stands for
    /// the column's value) instead of the default tags.
    pub fn table_tags(mut self, table: impl Into<String>, templates: Vec<String>) -> Self {
        self.tables.push((table.into(), Some(templates)));
        self
    }

    /// See [`PgFeed::slot`].
    pub fn slot(mut self, slot: impl Into<String>) -> Self {
        self.slot = slot.into();
        self
    }

    /// See [`PgFeed::publication`].
    pub fn publication(mut self, publication: impl Into<String>) -> Self {
        self.publication = publication.into();
        self
    }

    /// See [`PgFeed::poll_interval`].
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// See [`PgFeed::lease_ttl`].
    pub fn lease_ttl(mut self, d: Duration) -> Self {
        self.lease_ttl = d;
        self
    }

    fn check(&self) -> Result<()> {
        let ident = |what: &str, s: &str| {
            let ok = !s.is_empty()
                && s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if ok {
                Ok(())
            } else {
                Err(Error::Config(format!(
                    "{what} {s:?}: use 1-63 lower-case letters, digits and '_'"
                )))
            }
        };
        ident("slot", &self.slot)?;
        ident("publication", &self.publication)?;
        if self.tables.is_empty() {
            return Err(Error::Config(
                "the change feed needs at least one table".into(),
            ));
        }
        for (_, templates) in &self.tables {
            for t in templates.iter().flatten() {
                tags::template_columns(t).map_err(Error::Config)?;
            }
        }
        if self.poll_interval.is_zero() || self.lease_ttl < Duration::from_millis(100) {
            return Err(Error::Config(
                "poll_interval must be > 0 and lease_ttl >= 100 ms".into(),
            ));
        }
        Ok(())
    }
}

/// Counters of a running listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedStats {
    /// Whether this listener holds the fleet lease (reads the slot).
    pub active: bool,
    /// Committed transactions processed.
    pub transactions: u64,
    /// Row changes (and truncated tables) processed.
    pub changes: u64,
    /// Tags invalidated (after de-duplication within a peek).
    pub tags_invalidated: u64,
    /// Failures (PostgreSQL or Redis) it recovered from by retrying.
    pub errors: u64,
    /// Commit to invalidation of the last transaction, in ms.
    pub lag_ms: i64,
}

#[derive(Debug, Default)]
struct Counters {
    active: AtomicBool,
    transactions: AtomicU64,
    changes: AtomicU64,
    tags: AtomicU64,
    errors: AtomicU64,
    lag_ms: AtomicI64,
}

/// A running change feed; stops when [`Listener::stop`] is called or it is
/// dropped.
#[derive(Debug)]
pub struct Listener {
    running: running::Running,
    counters: Arc<Counters>,
}

impl Listener {
    /// Check the configuration against PostgreSQL (creating the
    /// publication and the slot when absent), then listen in the
    /// background on the core's runtime.
    pub async fn start(cache: Cache, feed: PgFeed) -> Result<Listener> {
        feed.check()?;
        let rt = crate::runtime::runtime();
        let client = rt
            .spawn(connect(feed.url.clone()))
            .await
            .map_err(join_err)??;
        let tables = prepare(&client, &feed).await?;
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = running::Running::channel();
        let run = Run {
            cache,
            feed,
            tables,
            counters: counters.clone(),
            token: format!("{:032x}", rand::random::<u128>()),
        };
        let task = rt.spawn(run.run(client, stopped));
        Ok(Listener {
            running: running::Running::new(stop, task),
            counters,
        })
    }

    /// The listener's counters.
    pub fn stats(&self) -> FeedStats {
        let c = &self.counters;
        FeedStats {
            active: c.active.load(Ordering::Relaxed),
            transactions: c.transactions.load(Ordering::Relaxed),
            changes: c.changes.load(Ordering::Relaxed),
            tags_invalidated: c.tags.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            lag_ms: c.lag_ms.load(Ordering::Relaxed),
        }
    }

    /// Stop (a step in progress is interrupted before it advances the
    /// slot) and give up the fleet lease. Idempotent.
    pub async fn stop(&self) {
        self.running.stop().await;
    }

    /// End at once, as a crashed process would: the batch in progress is
    /// dropped unadvanced and the fleet lease is kept until it expires.
    /// For tests of the takeover; use [`Listener::stop`].
    #[doc(hidden)]
    pub fn kill(self) {
        self.running.kill();
    }
}

fn join_err(e: tokio::task::JoinError) -> Error {
    Error::Config(format!("change feed task failed: {e}"))
}

fn pg_err(what: &str, e: &tokio_postgres::Error) -> Error {
    let detail = e
        .as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_owned());
    Error::Config(format!("PostgreSQL change feed: {what}: {detail}"))
}

async fn connect(url: String) -> Result<Client> {
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|e| pg_err("the PostgreSQL URL", &e))?;
    // A server that stops answering (a half-open connection) is noticed
    // within about a minute, not hours: the step fails, the listener
    // reconnects, and a stop never waits on it.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(4);
    let (client, conn) = config.connect(NoTls).await.map_err(|e| {
        pg_err(
            "cannot connect (check the URL, the server and the login)",
            &e,
        )
    })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!("stratacache change feed: PostgreSQL connection closed: {e}");
        }
    });
    Ok(client)
}

/// `schema.table` of a name given as `table` (in `public`) or
/// `schema.table`.
pub(crate) fn qualified(name: &str) -> String {
    if name.contains('.') {
        name.to_owned()
    } else {
        format!("public.{name}")
    }
}

/// Check the server and the tables; make the publication and the slot.
/// Returns each table's templates by `schema.table`.
/// A table of the feed as the listener uses it.
struct TableInfo {
    /// The columns of a row's key tag (empty: the table tag only).
    key: Vec<String>,
    /// The table's own tags, or `None` for the default ones.
    templates: Option<Vec<String>>,
}

async fn prepare(client: &Client, feed: &PgFeed) -> Result<HashMap<String, TableInfo>> {
    let row = client
        .query_one("SHOW wal_level", &[])
        .await
        .map_err(|e| pg_err("SHOW wal_level", &e))?;
    let level: String = row.get(0);
    if level != "logical" {
        return Err(Error::Config(format!(
            "PostgreSQL's wal_level is '{level}': the change feed needs 'logical' \
             (ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL)"
        )));
    }
    let row = client
        .query_one(
            "SELECT current_user::text, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| pg_err("reading the role", &e))?;
    let (role, may): (String, bool) = (row.get(0), row.get(1));
    if !may {
        return Err(Error::Config(format!(
            "PostgreSQL role '{role}' may not use replication slots: \
             ALTER ROLE {role} WITH REPLICATION (or use a superuser)"
        )));
    }
    let mut tables = HashMap::new();
    let mut idents = Vec::new();
    let mut canonicals = Vec::new();
    for (name, templates) in &feed.tables {
        let q = qualified(name);
        let row = client
            .query_one(
                "SELECT c.oid IS NOT NULL, quote_ident(n.nspname) || '.' || quote_ident(c.relname), \
                 n.nspname::text || '.' || c.relname::text, \
                 COALESCE((SELECT array_agg(attname::text) FROM pg_attribute \
                           WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped), '{}') \
                 FROM (SELECT to_regclass($1) AS oid) r LEFT JOIN pg_class c ON c.oid = r.oid \
                 LEFT JOIN pg_namespace n ON n.oid = c.relnamespace",
                &[&q],
            )
            .await
            .map_err(|e| pg_err(&format!("looking up table {q:?}"), &e))?;
        let exists: Option<bool> = row.get(0);
        if exists != Some(true) {
            return Err(Error::Config(format!(
                "PostgreSQL change feed: table {q:?} does not exist"
            )));
        }
        let ident: String = row.get(1);
        let canonical: String = row.get(2);
        let columns: Vec<String> = row.get(3);
        // The row's key (its primary key, or the replica identity index),
        // and what the old row of an update or a delete carries: every
        // column with REPLICA IDENTITY FULL, else only the key.
        let identity = client
            .query_one(
                "SELECT c.relreplident::text = 'f', \
                 COALESCE((SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum)) \
                 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = c.oid AND ((c.relreplident IN ('d', 'f') AND i.indisprimary) \
                 OR (c.relreplident = 'i' AND i.indisreplident))), '{}') \
                 FROM pg_class c WHERE c.oid = to_regclass($1)",
                &[&q],
            )
            .await
            .map_err(|e| pg_err(&format!("reading the replica identity of {q:?}"), &e))?;
        let (full, key): (bool, Vec<String>) = (identity.get(0), identity.get(1));
        for t in templates.iter().flatten() {
            for col in tags::template_columns(t).map_err(Error::Config)? {
                if !columns.iter().any(|c| c == col) {
                    return Err(Error::Config(format!(
                        "tag template {t:?} of {q}: no column {col:?} (columns: {})",
                        columns.join(", ")
                    )));
                }
                if !full && !key.iter().any(|c| c == col) {
                    return Err(Error::Config(format!(
                        "tag template {t:?} of {q} names {col:?}, which PostgreSQL logs for the \
                         old row of an update or a delete only with ALTER TABLE {ident} \
                         REPLICA IDENTITY FULL (without it the old value's tag would never be \
                         invalidated)"
                    )));
                }
            }
        }
        idents.push(ident);
        canonicals.push(canonical.clone());
        tables.insert(
            canonical,
            TableInfo {
                key,
                templates: templates.clone(),
            },
        );
    }
    // The publication gains the tables it lacks and loses none: during a
    // rolling deploy an instance with an older table list must not drop
    // a table newer instances listen to. Instances starting together may
    // race to create the publication and the slot: "already exists" is
    // success.
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&feed.publication],
        )
        .await
        .map_err(|e| pg_err("reading publications", &e))?
        .is_some();
    let already = |e: &tokio_postgres::Error| {
        e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT)
    };
    if !exists {
        // Names are checked identifiers; tables are quoted by PostgreSQL.
        let ddl = format!(
            "CREATE PUBLICATION {} FOR TABLE {}",
            feed.publication,
            idents.join(", ")
        );
        if let Err(e) = client.batch_execute(&ddl).await
            && !already(&e)
        {
            return Err(pg_err("creating the publication", &e));
        }
    }
    let published: Vec<String> = client
        .query(
            "SELECT schemaname::text || '.' || tablename::text FROM pg_publication_tables WHERE pubname = $1",
            &[&feed.publication],
        )
        .await
        .map_err(|e| pg_err("reading the publication's tables", &e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing: Vec<&String> = canonicals
        .iter()
        .zip(&idents)
        .filter(|(c, _)| !published.contains(c))
        .map(|(_, i)| i)
        .collect();
    if !missing.is_empty() {
        let ddl = format!(
            "ALTER PUBLICATION {} ADD TABLE {}",
            feed.publication,
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Err(e) = client.batch_execute(&ddl).await
            && !already(&e)
        {
            return Err(pg_err("adding tables to the publication", &e));
        }
    }
    let plugin = |row: Option<tokio_postgres::Row>| row.map(|r| r.get::<_, Option<String>>(0));
    let slot_plugin = || async {
        client
            .query_opt(
                "SELECT plugin::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&feed.slot],
            )
            .await
            .map_err(|e| pg_err("reading replication slots", &e))
    };
    let mut found = plugin(slot_plugin().await?);
    if found.is_none() {
        if let Err(e) = client
            .query_one(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&feed.slot],
            )
            .await
            && !already(&e)
        {
            return Err(pg_err("creating the replication slot", &e));
        }
        found = plugin(slot_plugin().await?);
    }
    let plugin = found.flatten();
    if plugin.as_deref() != Some("pgoutput") {
        return Err(Error::Config(format!(
            "replication slot {:?} exists with plugin {plugin:?}, not pgoutput: \
             choose another slot name",
            feed.slot
        )));
    }
    Ok(tables)
}

struct Run {
    cache: Cache,
    feed: PgFeed,
    tables: HashMap<String, TableInfo>,
    counters: Arc<Counters>,
    token: String,
}

/// Tags of one peek, and how far it lets the slot advance.
#[derive(Default)]
struct Batch {
    tags: BTreeSet<String>,
    pending: Vec<String>,
    end_lsn: Option<u64>,
    commit_time: i64,
    transactions: u64,
    changes: u64,
}

impl Run {
    async fn run(self, client: Client, mut stopped: watch::Receiver<bool>) {
        let mut client = Some(client);
        let mut relations: HashMap<u32, Relation> = HashMap::new();
        let mut active = false;
        let mut renewed = tokio::time::Instant::now();
        let renew_every = self.feed.lease_ttl / 3;
        let max_backoff = renew_every.min(Duration::from_secs(2));
        let mut backoff = Duration::from_millis(50);
        // While active and failing: since when (held longer than the lease,
        // the lease is given up so a standby that can progress takes over).
        let mut failing_since: Option<tokio::time::Instant> = None;
        let mut advanced: Option<u64> = None;
        loop {
            if *stopped.borrow() {
                break;
            }
            // The fleet lease: taken when free, renewed while active.
            if !active || renewed.elapsed() >= renew_every {
                match self.hold().await {
                    Ok(held) => {
                        active = held;
                        renewed = tokio::time::Instant::now();
                    }
                    Err(e) => {
                        self.failed(&format!("fleet lease: {e}"));
                        active = false;
                    }
                }
                self.counters.active.store(active, Ordering::Relaxed);
            }
            let wait = if !active {
                failing_since = None;
                renew_every
            } else {
                if client.is_none() {
                    match connect(self.feed.url.clone()).await {
                        Ok(c) => client = Some(c),
                        Err(e) => self.failed(&e.to_string()),
                    }
                }
                let outcome = match &client {
                    None => Err(Error::Config("PostgreSQL unreachable".into())),
                    // A stop interrupts a step: nothing was advanced that
                    // was not invalidated.
                    Some(c) => tokio::select! {
                        r = self.step(c, &mut relations, &mut advanced) => r,
                        _ = stopped.changed() => break,
                    },
                };
                match outcome {
                    Ok(more) => {
                        backoff = Duration::from_millis(50);
                        failing_since = None;
                        if more {
                            continue;
                        }
                        self.feed.poll_interval
                    }
                    Err(Error::Closed) => {
                        tracing::warn!(
                            "stratacache change feed: the cache was closed; the listener stops"
                        );
                        break;
                    }
                    Err(e) => {
                        self.failed(&e.to_string());
                        if client.as_ref().is_some_and(Client::is_closed) {
                            client = None;
                        }
                        let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                        if since.elapsed() >= self.feed.lease_ttl {
                            // Another listener may reach what this one cannot.
                            if let Some(l2) = self.cache.l2() {
                                let _ = l2.let_go(&self.lease_key(), &self.token).await;
                            }
                            active = false;
                            self.counters.active.store(false, Ordering::Relaxed);
                            failing_since = None;
                            self.feed.lease_ttl
                        } else {
                            backoff = (backoff * 2).min(max_backoff);
                            backoff
                        }
                    }
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped.changed() => {}
            }
        }
        if let (true, Some(l2)) = (active, self.cache.l2()) {
            let _ = l2.let_go(&self.lease_key(), &self.token).await;
        }
        self.counters.active.store(false, Ordering::Relaxed);
    }

    fn failed(&self, what: &str) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("stratacache change feed: {what} (retrying)");
    }

    fn lease_key(&self) -> String {
        crate::key::feed_lease_key(self.cache.namespace(), &self.feed.slot)
    }

    /// Take or renew the fleet lease; true when this listener holds it.
    async fn hold(&self) -> Result<bool> {
        match self.cache.l2() {
            None => Ok(true),
            Some(l2) => {
                let px = self.feed.lease_ttl.as_millis().min(u128::from(u64::MAX)) as u64;
                l2.hold(&self.lease_key(), &self.token, px).await
            }
        }
    }

    /// Peek, invalidate, advance. True when the peek was full (more may
    /// be waiting). The peek stops at the WAL position read first, and
    /// the slot advances to it when nothing of the tables committed
    /// before it: PostgreSQL sends no empty transactions, so without this
    /// a slot whose tables are idle would keep the whole WAL of a busy
    /// server.
    async fn step(
        &self,
        client: &Client,
        relations: &mut HashMap<u32, Relation>,
        advanced: &mut Option<u64>,
    ) -> Result<bool> {
        let upto: String = client
            .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
            .await
            .map_err(|e| pg_err("reading the WAL position", &e))?
            .get(0);
        let batch = i32::try_from(self.feed.batch).unwrap_or(i32::MAX);
        let rows = client
            .query(
                "SELECT data FROM pg_logical_slot_peek_binary_changes($1, $2::text::pg_lsn, $3, \
                 'proto_version', '1', 'publication_names', $4)",
                &[&self.feed.slot, &upto, &batch, &self.feed.publication],
            )
            .await
            .map_err(|e| pg_err("reading the slot", &e))?;
        let full = rows.len() >= self.feed.batch as usize;
        let mut b = Batch::default();
        for row in &rows {
            let data: &[u8] = row.get(0);
            match pgoutput::decode(data) {
                Ok(m) => self.apply(m, relations, &mut b),
                Err(e) => {
                    // Cannot happen with pgoutput v1; if it does, the
                    // coarse answer, kept whatever comes next: every table
                    // of the feed.
                    self.failed(&e.to_string());
                    b.tags
                        .extend(self.tables.keys().map(|t| tags::table_tag(t)));
                }
            }
        }
        let tags: Vec<&str> = b.tags.iter().map(String::as_str).collect();
        for chunk in tags.chunks(5_000) {
            self.cache.invalidate_tags(chunk).await?;
            // A long step keeps its lease; one that lost it stops here
            // (what it invalidated is invalidated again by the new holder).
            if !self.hold().await? {
                return Err(Error::Config(
                    "the fleet lease went to another listener".into(),
                ));
            }
        }
        // Where the slot may go: past the last commit read; past the WAL
        // position read first when the peek was not cut short.
        let target = if full {
            b.end_lsn
        } else {
            pgoutput::parse_lsn(&upto).max(b.end_lsn)
        };
        if let Some(target) = target.filter(|t| advanced.is_none_or(|a| *t > a)) {
            client
                .query_one(
                    "SELECT pg_replication_slot_advance($1, GREATEST($2::text::pg_lsn, confirmed_flush_lsn)) \
                     FROM pg_replication_slots WHERE slot_name = $1",
                    &[&self.feed.slot, &pgoutput::lsn_text(target)],
                )
                .await
                .map_err(|e| pg_err("advancing the slot", &e))?;
            *advanced = Some(target);
        }
        if b.end_lsn.is_none() {
            return Ok(false);
        }
        let c = &self.counters;
        c.transactions.fetch_add(b.transactions, Ordering::Relaxed);
        c.changes.fetch_add(b.changes, Ordering::Relaxed);
        c.tags.fetch_add(tags.len() as u64, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        c.lag_ms
            .store(now - pgoutput::unix_ms(b.commit_time), Ordering::Relaxed);
        Ok(full)
    }

    fn apply(&self, m: Message, relations: &mut HashMap<u32, Relation>, b: &mut Batch) {
        match m {
            Message::Begin { .. } => b.pending.clear(),
            Message::Relation(r) => {
                relations.insert(r.id, r);
            }
            Message::Change {
                relation,
                update,
                old,
                new,
            } => {
                b.changes += 1;
                let Some(rel) = relations.get(&relation) else {
                    // pgoutput sends a relation before its first change;
                    // without it, every table of the feed.
                    for t in self.tables.keys() {
                        b.pending.push(tags::table_tag(t));
                    }
                    return;
                };
                let table = format!("{}.{}", rel.schema, rel.name);
                let info = self.tables.get(&table);
                let templates = info.and_then(|i| i.templates.as_deref());
                let key = info.map_or(&[][..], |i| &i.key[..]);
                for tuple in old.iter().chain(new.iter()) {
                    tags::row_tags(rel, key, templates, tuple, &mut b.pending);
                }
                // An update without the old row (the table logs only its
                // key): a template over another column cannot name what
                // the row was, so the table tag stands for it.
                if update && old.is_none() && templates.is_some() {
                    b.pending.push(tags::table_tag(&table));
                }
            }
            Message::Truncate { relations: ids } => {
                for id in ids {
                    b.changes += 1;
                    match relations.get(&id) {
                        Some(rel) => b
                            .pending
                            .push(tags::table_tag(&format!("{}.{}", rel.schema, rel.name))),
                        None => b
                            .pending
                            .extend(self.tables.keys().map(|t| tags::table_tag(t))),
                    }
                }
            }
            Message::Commit {
                end_lsn,
                commit_time,
            } => {
                b.tags.extend(b.pending.drain(..));
                b.end_lsn = Some(end_lsn);
                b.commit_time = commit_time;
                b.transactions += 1;
            }
            Message::Other => {}
        }
    }
}
