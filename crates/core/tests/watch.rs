//! Watch boards (`Cache::get_local_watched`): a hit holds while its words
//! are unchanged and until its deadline, and every change to what L1 would
//! answer moves a word it was judged with: writes, deletes and counters of
//! its key (in this process and, through the bus, in another), tag
//! invalidations, clears, a simulated Redis outage.

#[macro_use]
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::Target;
use stratacache::watch::{Board, GLOBAL, Watched};
use stratacache::{Cache, Format, Ttl, WriteOptions};

fn opts(ttl_s: u64, tags: &[&str]) -> WriteOptions {
    WriteOptions::new(Ttl::After(Duration::from_secs(ttl_s)), Format::RAW)
        .with_tags(tags.iter().map(|t| (*t).to_owned()).collect())
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// The hold of an L1 hit of `key` (which must be one), judged with `board`.
fn watched(c: &Cache, board: &Board, key: &str) -> Watched {
    let (_, w) = c
        .get_local_watched(key, board)
        .expect("read")
        .expect("an L1 hit");
    w.expect("a hold")
}

/// Whether `w` still holds on `board` (the clock aside).
fn holds(board: &Board, w: &Watched) -> bool {
    board.word(GLOBAL) == w.global && board.word(w.slot as usize) == w.word
}

/// A key whose stripe is not `slot`'s.
fn elsewhere(c: &Cache, board: &Board, slot: u32) -> String {
    (0..1000)
        .map(|i| format!("other-{i}"))
        .find(|k| {
            block_on(c.set(k, b("o"), &opts(60, &[]))).expect("set");
            watched(c, board, k).slot != slot
        })
        .expect("a key of another stripe")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_to_an_answer_moves_a_word_it_was_judged_with() {
    let c = Cache::builder()
        .namespace(common::unique_ns("watch-l1"))
        .build()
        .expect("cache");
    let board = c.watch_board();
    let second = c.watch_board();
    assert_eq!(c.get_local_watched("k", &board).expect("read"), None);

    c.set("k", b("v1"), &opts(60, &["t"])).await.expect("set");
    let (e, w) = c
        .get_local_watched("k", &board)
        .expect("read")
        .expect("hit");
    let w = w.expect("a hold");
    assert_eq!(&e.payload[..], b"v1");
    assert_eq!(
        w.until_ms, e.meta.fresh_until_ms,
        "L1 alone: until the entry's freshness"
    );
    assert!(holds(&board, &w));
    // A write of a key of another stripe leaves the hold alone.
    let other = elsewhere(&c, &board, w.slot);
    assert!(holds(&board, &w), "{other} is in another stripe");

    // Each change: it moves this board's word and every other board's.
    type Change<'a> = Box<dyn Fn() + 'a>;
    let changes: Vec<(&str, Change)> = vec![
        (
            "a write of the key",
            Box::new(|| block_on(c.set("k", b("v2"), &opts(60, &["t"]))).expect("set")),
        ),
        (
            "a delete of the key",
            Box::new(|| assert!(block_on(c.delete("k")).expect("delete"))),
        ),
        (
            "an invalidation of its tag",
            Box::new(|| block_on(c.invalidate_tags(&["t"])).expect("invalidate")),
        ),
        ("a clear", Box::new(|| block_on(c.clear()).expect("clear"))),
    ];
    for (what, change) in &changes {
        block_on(c.set("k", b("v"), &opts(60, &["t"]))).expect("set");
        let w = watched(&c, &board, "k");
        let w2 = watched(&c, &second, "k");
        assert!(holds(&board, &w) && holds(&second, &w2));
        change();
        assert!(!holds(&board, &w), "{what} must move a word");
        assert!(!holds(&second, &w2), "{what} must move every board's word");
    }

    // Counters too (an L1-only counter is changed in place).
    c.set("n", b("0"), &WriteOptions::new(Ttl::Never, Format::INT))
        .await
        .expect("set");
    let w = watched(&c, &board, "n");
    c.incr("n", 1).await.expect("incr");
    assert!(!holds(&board, &w), "an increment must move a word");

    // A deadline moves the global word once it has passed (the ticker):
    // a binding never reads the clock.
    c.set(
        "brief",
        b("v"),
        &WriteOptions::new(Ttl::After(Duration::from_millis(100)), Format::RAW),
    )
    .await
    .expect("set");
    let w = watched(&c, &board, "brief");
    until(|| !holds(&board, &w)).await;
    assert!(
        stratacache::clock::now_ms() >= w.until_ms,
        "moved before the deadline"
    );
    assert_eq!(c.get_local_watched("brief", &board).expect("read"), None);

    // No expiry: held until something changes.
    c.set(
        "forever",
        b("v"),
        &WriteOptions::new(Ttl::Never, Format::RAW),
    )
    .await
    .expect("set");
    assert_eq!(watched(&c, &board, "forever").until_ms, u64::MAX);
}

async fn the_fleet_moves_the_words(t: Target) {
    let ns = common::unique_ns("watch-fleet");
    let a = t.builder(&ns).isolated(true).build().expect("cache");
    let bb = t.builder(&ns).isolated(true).build().expect("cache");
    let board = bb.watch_board();
    a.set("k", b("v1"), &opts(60, &["t"])).await.expect("set");
    // bb reads it into its L1 (through Redis), then holds it.
    let hold = loop {
        bb.get("k").await.expect("get").expect("value");
        if let Some((_, Some(w))) = bb.get_local_watched("k", &board).expect("read") {
            break w;
        }
    };
    assert!(holds(&board, &hold));
    let now = stratacache::clock::now_ms();
    // With a bus, no longer than L1 stays trusted if the bus goes quiet
    // (its lag bound: a heartbeat and the connect timeout, 1 + 5 s here),
    // well before the entry's 60 s.
    assert!(
        hold.until_ms <= now + 6_000,
        "until {} at {now}",
        hold.until_ms
    );

    a.set("k", b("v2"), &opts(60, &["t"])).await.expect("set");
    until(|| !holds(&board, &hold)).await;

    let hold = loop {
        bb.get("k").await.expect("get").expect("value");
        if let Some((e, Some(w))) = bb.get_local_watched("k", &board).expect("read")
            && &e.payload[..] == b"v2"
        {
            break w;
        }
    };
    a.invalidate_tags(&["t"]).await.expect("invalidate");
    until(|| board.word(GLOBAL) != hold.global).await;

    // A simulated Redis outage: L1 is not trusted, so nothing held holds.
    bb.set("j", b("v"), &opts(60, &[])).await.expect("set");
    let hold = watched(&bb, &board, "j");
    bb.simulate_outage(true);
    assert!(!holds(&board, &hold), "an outage must move the global word");
    assert_eq!(bb.get_local_watched("j", &board).expect("read"), None);
    bb.simulate_outage(false);
}

async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..5000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("timed out waiting for a word to move");
}

on_both!(the_fleet_moves_the_words);
