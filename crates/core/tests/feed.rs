//! The PostgreSQL change feed against a real PostgreSQL with
//! `wal_level=logical` (`STRATACACHE_PG_URL`, set by
//! `scripts/with-postgres.sh`) and a real Redis: committed changes evict
//! every process's L1, rolled-back ones nothing; changes made while no
//! listener runs are invalidated when one starts; one listener of a fleet
//! is active and a standby takes over; a thousand changes in one
//! transaction; clear configuration errors.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use stratacache::feed::{Listener, PgFeed};
use stratacache::{Cache, WriteOptions};
use tokio_postgres::{Client, NoTls};

fn pg_url() -> String {
    std::env::var("STRATACACHE_PG_URL").expect(
        "STRATACACHE_PG_URL: run the tests through scripts/with-postgres.sh (make test does)",
    )
}

async fn sql() -> Client {
    let (client, conn) = tokio_postgres::connect(&pg_url(), NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client
}

/// A table `name` with rows 1..=n, and slot/publication names of its own.
struct Fixture {
    sql: Client,
    table: String,
    slot: String,
}

impl Fixture {
    async fn new(rows: i32) -> Fixture {
        let sql = sql().await;
        let id = common::rand_u64() % 1_000_000_000;
        let table = format!("feed_t{id}");
        sql.batch_execute(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, name text, category int);
             INSERT INTO {table} SELECT g, 'row ' || g, g % 3 FROM generate_series(1, {rows}) g;"
        ))
        .await
        .expect("create table");
        Fixture {
            sql,
            slot: format!("sc_{id}"),
            table,
        }
    }

    fn feed(&self) -> PgFeed {
        PgFeed::new(pg_url())
            .table(self.table.clone())
            .slot(self.slot.clone())
            .publication(self.slot.clone())
            .lease_ttl(Duration::from_millis(600))
    }

    fn row_tag(&self, id: i32) -> String {
        format!("table:public.{}:{id}", self.table)
    }

    async fn drop(self) {
        let _ = self
            .sql
            .batch_execute(&format!(
                "SELECT pg_drop_replication_slot('{s}') FROM pg_replication_slots WHERE slot_name = '{s}';
                 DROP PUBLICATION IF EXISTS {s}; DROP TABLE {t};",
                s = self.slot,
                t = self.table
            ))
            .await;
    }
}

fn cache(ns: &str) -> Cache {
    common::process_cache(ns)
}

fn tagged(tag: &str) -> WriteOptions {
    common::tagged_for_5m(&[tag])
}

use common::until_within as until;

/// `c` holds `key` as an L1 hit (the writer's own bus message may evict
/// the first copy).
async fn held(c: &Cache, key: &str) {
    until("the key is held in L1", Duration::from_secs(10), || async {
        c.get(key).await.expect("get").expect("value");
        let before = c.stats().await.l1_hits;
        c.get(key).await.expect("get").expect("value");
        c.stats().await.l1_hits == before + 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_changes_evict_every_l1_and_rolled_back_ones_nothing() {
    let f = Fixture::new(3).await;
    let ns = common::unique_ns("feed");
    let (a, b) = (cache(&ns), cache(&ns));
    let listener = Listener::start(a.clone(), f.feed()).await.expect("start");
    until(
        "the listener is active",
        Duration::from_secs(10),
        || async { listener.stats().active },
    )
    .await;
    for c in [&a, &b] {
        c.set("p1", Bytes::from_static(b"one"), &tagged(&f.row_tag(1)))
            .await
            .expect("set");
        c.set("p2", Bytes::from_static(b"two"), &tagged(&f.row_tag(2)))
            .await
            .expect("set");
    }
    for c in [&a, &b] {
        held(c, "p1").await;
        held(c, "p2").await;
    }

    // A rolled-back update, then a committed one of another row: once the
    // second is processed, the first produced nothing.
    f.sql
        .batch_execute(&format!(
            "BEGIN; UPDATE {t} SET name = 'x' WHERE id = 1; ROLLBACK;
             UPDATE {t} SET name = 'y' WHERE id = 2;",
            t = f.table
        ))
        .await
        .expect("sql");
    until(
        "row 2's change evicts p2 everywhere",
        Duration::from_secs(10),
        || async {
            a.get("p2").await.expect("get").is_none() && b.get("p2").await.expect("get").is_none()
        },
    )
    .await;
    // Counted once the transaction is done (just after its invalidation).
    until("counted", Duration::from_secs(10), || async {
        listener.stats().transactions == 1
    })
    .await;
    let s = listener.stats();
    assert_eq!((s.transactions, s.changes), (1, 1), "{s:?}");
    for c in [&a, &b] {
        assert!(
            c.get("p1").await.expect("get").is_some(),
            "the rollback invalidated nothing"
        );
    }

    // A committed update of row 1 (from another connection, as psql would).
    let t0 = Instant::now();
    f.sql
        .batch_execute(&format!("UPDATE {} SET name = 'z' WHERE id = 1", f.table))
        .await
        .expect("sql");
    until(
        "p1 evicted in both processes",
        Duration::from_secs(10),
        || async {
            a.get("p1").await.expect("get").is_none() && b.get("p1").await.expect("get").is_none()
        },
    )
    .await;
    eprintln!("commit -> both L1s evicted: {:?}", t0.elapsed());
    until("counted", Duration::from_secs(10), || async {
        listener.stats().transactions == 2
    })
    .await;
    let s = listener.stats();
    assert_eq!((s.transactions, s.changes, s.errors), (2, 2, 0), "{s:?}");
    assert!(s.lag_ms >= 0 && s.lag_ms < 10_000, "{s:?}");

    // TRUNCATE invalidates the table tag.
    a.set(
        "all",
        Bytes::from_static(b"list"),
        &tagged(&format!("table:public.{}", f.table)),
    )
    .await
    .expect("set");
    held(&b, "all").await;
    f.sql
        .batch_execute(&format!("TRUNCATE {}", f.table))
        .await
        .expect("sql");
    until(
        "the table tag evicts 'all'",
        Duration::from_secs(10),
        || async { b.get("all").await.expect("get").is_none() },
    )
    .await;
    listener.stop().await;
    f.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_committed_while_no_listener_runs_are_invalidated_when_one_starts() {
    let f = Fixture::new(2).await;
    let ns = common::unique_ns("feed-durable");
    let a = cache(&ns);
    // The first start creates the slot; from then on changes are kept.
    Listener::start(a.clone(), f.feed())
        .await
        .expect("start")
        .stop()
        .await;
    a.set("p1", Bytes::from_static(b"one"), &tagged(&f.row_tag(1)))
        .await
        .expect("set");
    held(&a, "p1").await;
    // Committed while no listener runs (as after a crash).
    f.sql
        .batch_execute(&format!("UPDATE {} SET name = 'z' WHERE id = 1", f.table))
        .await
        .expect("sql");
    assert!(a.get("p1").await.expect("get").is_some());
    let listener = Listener::start(a.clone(), f.feed()).await.expect("start");
    until(
        "p1 invalidated by the restarted listener",
        Duration::from_secs(10),
        || async { a.get("p1").await.expect("get").is_none() },
    )
    .await;
    until("counted", Duration::from_secs(10), || async {
        listener.stats().changes == 1
    })
    .await;
    listener.stop().await;
    f.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_listener_of_a_fleet_is_active_and_a_standby_takes_over() {
    let f = Fixture::new(2).await;
    let ns = common::unique_ns("feed-fleet");
    let (a, b) = (cache(&ns), cache(&ns));
    let first = Listener::start(a.clone(), f.feed()).await.expect("start");
    until(
        "the first listener is active",
        Duration::from_secs(10),
        || async { first.stats().active },
    )
    .await;
    let second = Listener::start(b.clone(), f.feed()).await.expect("start");
    // The standby keeps trying the lease: it stays inactive while the
    // first renews it (several lease periods).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(first.stats().active && !second.stats().active);

    // The active one dies without giving the lease up (a crash).
    let died = Instant::now();
    first.kill();
    until(
        "the standby takes over",
        Duration::from_secs(10),
        || async { second.stats().active },
    )
    .await;
    let took = died.elapsed();
    eprintln!("standby took over after {took:?} (lease 600 ms)");
    // Within the lease and one retry period (200 ms), with slack for a
    // loaded machine.
    assert!(took < Duration::from_millis(600 + 200 + 1000), "{took:?}");
    b.set("p1", Bytes::from_static(b"one"), &tagged(&f.row_tag(1)))
        .await
        .expect("set");
    held(&b, "p1").await;
    f.sql
        .batch_execute(&format!("UPDATE {} SET name = 'z' WHERE id = 1", f.table))
        .await
        .expect("sql");
    until(
        "the new active listener invalidates",
        Duration::from_secs(10),
        || async { b.get("p1").await.expect("get").is_none() },
    )
    .await;
    second.stop().await;
    f.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slot_keeps_up_with_the_wal_while_its_tables_are_idle() {
    let f = Fixture::new(1).await;
    let other = Fixture::new(1).await;
    let listener = Listener::start(cache(&common::unique_ns("feed-idle")), f.feed())
        .await
        .expect("start");
    // Another table is busy; the listened one is not (PostgreSQL sends no
    // empty transactions for it).
    for i in 0..50 {
        other
            .sql
            .batch_execute(&format!("UPDATE {} SET name = 'n{i}'", other.table))
            .await
            .expect("sql");
    }
    let written: String = f
        .sql
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("lsn")
        .get(0);
    let (sql, slot) = (&f.sql, &f.slot);
    until("the slot confirmed past the busy table's WAL", Duration::from_secs(10), || async {
        sql.query_one(
            "SELECT confirmed_flush_lsn >= $2::text::pg_lsn FROM pg_replication_slots WHERE slot_name = $1",
            &[slot, &written],
        )
        .await
        .expect("slot")
        .get::<_, bool>(0)
    })
    .await;
    assert_eq!(listener.stats().transactions, 0);
    listener.stop().await;
    other.drop().await;
    f.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_changes_in_one_transaction() {
    let f = Fixture::new(1000).await;
    let ns = common::unique_ns("feed-bulk");
    let a = cache(&ns);
    let feed = f.feed();
    let listener = Listener::start(a.clone(), feed).await.expect("start");
    for id in [1, 500, 1000] {
        a.set(
            &format!("p{id}"),
            Bytes::from_static(b"v"),
            &tagged(&f.row_tag(id)),
        )
        .await
        .expect("set");
    }
    f.sql
        .batch_execute(&format!("UPDATE {} SET name = name || '!'", f.table))
        .await
        .expect("sql");
    until(
        "all 1,000 changes processed",
        Duration::from_secs(30),
        || async { listener.stats().changes == 1000 },
    )
    .await;
    let s = listener.stats();
    assert_eq!((s.transactions, s.tags_invalidated), (1, 1001), "{s:?}");
    for id in [1, 500, 1000] {
        assert!(
            a.get(&format!("p{id}")).await.expect("get").is_none(),
            "p{id}"
        );
    }
    listener.stop().await;
    f.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_give_the_tables_own_tags() {
    let f = Fixture::new(3).await;
    // A template over a non-key column needs the old row's value.
    f.sql
        .batch_execute(&format!("ALTER TABLE {} REPLICA IDENTITY FULL", f.table))
        .await
        .expect("sql");
    let ns = common::unique_ns("feed-tpl");
    let a = cache(&ns);
    let feed = PgFeed::new(pg_url())
        .table_tags(
            format!("public.{}", f.table),
            vec!["product:{id}".into(), "category:{category}".into()],
        )
        .slot(f.slot.clone())
        .publication(f.slot.clone());
    let listener = Listener::start(a.clone(), feed).await.expect("start");
    a.set("c2", Bytes::from_static(b"v"), &tagged("category:2"))
        .await
        .expect("set");
    a.set("p1", Bytes::from_static(b"v"), &tagged("product:1"))
        .await
        .expect("set");
    // Row 2 moves from category 2 to 5: the old category's entry goes.
    f.sql
        .batch_execute(&format!("UPDATE {} SET category = 5 WHERE id = 2", f.table))
        .await
        .expect("sql");
    until(
        "category 2's entry invalidated",
        Duration::from_secs(10),
        || async { a.get("c2").await.expect("get").is_none() },
    )
    .await;
    assert!(a.get("p1").await.expect("get").is_some());
    listener.stop().await;
    f.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_are_clear() {
    let f = Fixture::new(1).await;
    let a = cache(&common::unique_ns("feed-bad"));
    let err = |feed: PgFeed| {
        let a = a.clone();
        async move {
            match Listener::start(a, feed).await {
                Ok(_) => panic!("started"),
                Err(e) => (e.code(), e.to_string()),
            }
        }
    };
    let (code, msg) = err(f.feed().table("no_such_table")).await;
    assert_eq!(code, "E_CONFIG");
    assert!(
        msg.contains("\"public.no_such_table\" does not exist"),
        "{msg}"
    );
    let (_, msg) = err(PgFeed::new(pg_url())
        .table_tags(f.table.clone(), vec!["p:{nope}".into()])
        .slot(f.slot.clone()))
    .await;
    assert!(msg.contains("no column \"nope\""), "{msg}");
    let (_, msg) = err(PgFeed::new("postgresql://postgres@127.0.0.1:1/postgres").table("t")).await;
    assert!(msg.contains("cannot connect"), "{msg}");
    let (_, msg) = err(f.feed().slot("Bad-Name")).await;
    assert!(msg.contains("slot \"Bad-Name\""), "{msg}");
    let (_, msg) = err(PgFeed::new(pg_url())).await;
    assert!(msg.contains("at least one table"), "{msg}");
    // A template over a non-key column of a table that logs only its key.
    let (_, msg) = err(PgFeed::new(pg_url())
        .table_tags(f.table.clone(), vec!["c:{category}".into()])
        .slot(f.slot.clone()))
    .await;
    assert!(msg.contains("REPLICA IDENTITY FULL"), "{msg}");
    f.drop().await;
}
