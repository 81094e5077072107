//! Dependencies tracked while a loader runs: what a value was built from
//! (entries read, their tags, keys found missing, tags named) invalidates
//! it, in every instance, transitively; a load whose input changed while
//! it ran is not stored. Each `isolated` handle stands in for a separate
//! process.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Target, until};
use stratacache::{
    Cache, Deps, Format, LoadOutcome, Lookup, LookupPolicy, MAX_DEPENDENCIES, Settled, Ttl,
    WriteOptions,
};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn opts(tags: &[&str]) -> WriteOptions {
    WriteOptions::new(Ttl::After(Duration::from_secs(60)), Format::RAW)
        .with_tags(tags.iter().map(|t| (*t).to_owned()).collect())
}

async fn pair(t: Target, prefix: &str) -> (Cache, Cache) {
    let ns = common::unique_ns(prefix);
    let a = t.builder(&ns).isolated(true).build().expect("cache");
    let bb = t.builder(&ns).isolated(true).build().expect("cache");
    for c in [&a, &bb] {
        c.get("bus-probe").await.expect("get");
        until("the bus subscription", || async {
            c.stats().await.bus_connects > 0
        })
        .await;
    }
    (a, bb)
}

/// Lead a load of `key` on `c`: the lease and the collector its loader
/// fills (with a parent: tracked as a read of the parent's load).
async fn lead(c: &Cache, key: &str, parent: Option<&Arc<Deps>>) -> (stratacache::Lease, Arc<Deps>) {
    let p = LookupPolicy::default();
    let found = match parent {
        Some(d) => c.lookup_tracked(key, &p, d).await,
        None => c.lookup(key, &p).await,
    };
    match found.expect("lookup") {
        Lookup::Lead(lease) => (lease, Arc::new(Deps::new())),
        other => panic!("{key}: expected to lead a load, got {other:?}"),
    }
}

async fn settle(lease: stratacache::Lease, deps: Arc<Deps>, value: &str) -> Bytes {
    match lease
        .settle(LoadOutcome::Value(b(value)), &opts(&[]).with_deps(deps))
        .await
        .expect("settle")
    {
        Settled::Loaded(e) | Settled::Stale(e) => e.payload.clone(),
    }
}

/// Build "page" from "product" (read with `get`) and "absent" (a key
/// that holds nothing), as a loader would.
async fn build_page(c: &Cache) {
    let (lease, d) = lead(c, "page", None).await;
    let product = c.get_tracked("product", &d).await.expect("get");
    assert!(product.is_some());
    assert!(c.get_tracked("absent", &d).await.expect("get").is_none());
    settle(lease, d, "page-v").await;
}

async fn fresh(c: &Cache, key: &str) -> bool {
    c.get(key).await.expect("get").is_some()
}

async fn every_input_invalidates_the_output_everywhere(t: Target) {
    let (a, other) = pair(t, "deps-inputs").await;
    a.set("product", b("p1"), &opts(&["product:1"]))
        .await
        .expect("set");
    a.set(
        "counter",
        Bytes::from_static(b"1"),
        &WriteOptions::new(Ttl::Never, Format::INT),
    )
    .await
    .expect("set");

    // Each way of changing an input, made by the other instance.
    for change in ["tag", "set", "delete", "add absent", "incr counter"] {
        a.set("product", b("p1"), &opts(&["product:1"]))
            .await
            .expect("set");
        let (lease, d) = lead(&a, "page", None).await;
        a.get_tracked("product", &d)
            .await
            .expect("get")
            .expect("product");
        // A key of its own each round: a previous round's change of it may
        // still be on its way over the bus (a load using a version the
        // fleet has since dropped stores a value that is never fresh).
        let absent = format!("absent:{change}");
        assert!(a.get_tracked(&absent, &d).await.expect("get").is_none());
        a.get_tracked("counter", &d)
            .await
            .expect("get")
            .expect("counter");
        settle(lease, d, "page-v").await;
        assert!(fresh(&a, "page").await, "{change}: page stored");
        until("the other instance reads the page", || async {
            fresh(&other, "page").await
        })
        .await;

        match change {
            "tag" => other.invalidate_tags(&["product:1"]).await.expect("tags"),
            "set" => other
                .set("product", b("p2"), &opts(&["product:1"]))
                .await
                .expect("set"),
            "delete" => assert!(other.delete("product").await.expect("delete")),
            "add absent" => {
                assert!(other.add(&absent, b("now"), &opts(&[])).await.expect("add"));
            }
            _ => assert_eq!(other.incr("counter", 1).await.expect("incr"), 2),
        }
        // The changing instance at once; the other through the bus.
        assert!(
            !fresh(&other, "page").await,
            "{change}: writer still reads the page"
        );
        until("the page is stale in the other instance", || async {
            !fresh(&a, "page").await
        })
        .await;
    }
}

async fn a_load_whose_input_changes_meanwhile_is_not_stored(t: Target) {
    let (a, other) = pair(t, "deps-fence").await;
    a.set("product", b("p1"), &opts(&[])).await.expect("set");

    // Changed by another instance while the load runs.
    let (lease, d) = lead(&a, "page", None).await;
    a.get_tracked("product", &d)
        .await
        .expect("get")
        .expect("product");
    other
        .set("product", b("p2"), &opts(&[]))
        .await
        .expect("set");
    until("the change reaches the loading instance", || async {
        a.get("product")
            .await
            .expect("get")
            .map(|e| e.payload.clone())
            == Some(b("p2"))
    })
    .await;
    let refused = a.stats().await.deps_refused;
    // The caller still gets its value.
    assert_eq!(settle(lease, d, "built-from-p1").await, b("built-from-p1"));
    assert_eq!(a.stats().await.deps_refused, refused + 1);
    assert!(!fresh(&a, "page").await);
    assert!(!fresh(&other, "page").await);

    // Changed by the loading instance itself.
    let (lease, d) = lead(&a, "page", None).await;
    a.get_tracked("product", &d)
        .await
        .expect("get")
        .expect("product");
    a.delete("product").await.expect("delete");
    settle(lease, d, "built-from-p2").await;
    assert_eq!(a.stats().await.deps_refused, refused + 2);
    assert!(!fresh(&a, "page").await);

    // Unchanged: stored.
    a.set("product", b("p3"), &opts(&[])).await.expect("set");
    build_page(&a).await;
    assert!(fresh(&a, "page").await);
    assert_eq!(a.stats().await.deps_refused, refused + 2);
}

async fn nested_loads_are_transitive(t: Target) {
    let (a, other) = pair(t, "deps-nested").await;
    a.set("product", b("p1"), &opts(&["product:1"]))
        .await
        .expect("set");
    // page's loader reads "section" through a read-through whose own
    // loader reads "product".
    let (page, page_deps) = lead(&a, "page", None).await;
    let (section, section_deps) = lead(&a, "section", Some(&page_deps)).await;
    a.get_tracked("product", &section_deps)
        .await
        .expect("get")
        .expect("product");
    settle(section, section_deps, "section-v").await;
    settle(page, page_deps, "page-v").await;
    assert!(fresh(&a, "page").await && fresh(&a, "section").await);

    other.invalidate_tags(&["product:1"]).await.expect("tags");
    until("section and page are stale", || async {
        !fresh(&a, "section").await && !fresh(&a, "page").await
    })
    .await;

    // A second page read of a fresh section records the section's tags,
    // which carry the product's.
    a.set("product", b("p2"), &opts(&["product:1"]))
        .await
        .expect("set");
    let (section, section_deps) = lead(&a, "section", None).await;
    a.get_tracked("product", &section_deps)
        .await
        .expect("get")
        .expect("product");
    settle(section, section_deps, "section-v2").await;
    let (page, page_deps) = lead(&a, "page", None).await;
    match a
        .lookup_tracked("section", &LookupPolicy::default(), &page_deps)
        .await
        .expect("lookup")
    {
        Lookup::Fresh(_, _) => {}
        other => panic!("expected the stored section, got {other:?}"),
    }
    settle(page, page_deps, "page-v2").await;
    assert!(fresh(&a, "page").await);
    other
        .set("product", b("p3"), &opts(&["product:1"]))
        .await
        .expect("set");
    until(
        "page is stale after its section's input was written",
        || async { !fresh(&a, "page").await },
    )
    .await;
}

async fn named_tags_and_the_bound(t: Target) {
    let (a, other) = pair(t, "deps-named").await;
    let (lease, d) = lead(&a, "report", None).await;
    a.track_tags(&d, &["orders"]).await.expect("track");
    settle(lease, d, "r").await;
    assert!(fresh(&a, "report").await);
    other.invalidate_tags(&["orders"]).await.expect("tags");
    until("report is stale", || async { !fresh(&a, "report").await }).await;

    // One dependency too many: served, not stored.
    let keys: Vec<String> = (0..MAX_DEPENDENCIES).map(|i| format!("item:{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (lease, d) = lead(&a, "all", None).await;
    a.get_many_tracked(&refs, &d).await.expect("get_many");
    a.track_tags(&d, &["one-more"]).await.expect("track");
    let refused = a.stats().await.deps_refused;
    assert_eq!(settle(lease, d, "all-v").await, b("all-v"));
    assert_eq!(a.stats().await.deps_refused, refused + 1);
    assert!(!fresh(&a, "all").await);

    // At the bound: stored.
    let (lease, d) = lead(&a, "all", None).await;
    a.get_many_tracked(&refs, &d).await.expect("get_many");
    settle(lease, d, "all-v").await;
    assert!(fresh(&a, "all").await);
}

on_both!(
    every_input_invalidates_the_output_everywhere,
    a_load_whose_input_changes_meanwhile_is_not_stored,
    nested_loads_are_transitive,
    named_tags_and_the_bound,
);

/// A nested read-through that answers its caller with a stale fallback at
/// its soft deadline hands that value's tags to the caller's load: a page
/// built from a section invalidated meanwhile is not stored.
#[tokio::test]
async fn a_fallback_served_at_a_deadline_is_an_input() {
    let c = Cache::builder().build().expect("cache");
    c.set(
        "section",
        b("old"),
        &opts(&["s"]).with_grace(Duration::from_secs(60)),
    )
    .await
    .expect("set");
    c.invalidate_tags(&["s"]).await.expect("tags");
    let (page, page_deps) = lead(&c, "page", None).await;
    let mut p = LookupPolicy::default();
    p.fail_safe = true;
    p.soft_timeout = Some(Duration::from_millis(1));
    let section = match c
        .lookup_tracked("section", &p, &page_deps)
        .await
        .expect("lookup")
    {
        Lookup::Lead(lease) => lease,
        other => panic!("expected to lead the section's load, got {other:?}"),
    };
    let clock = section.clock();
    let d = clock.deadline(0).expect("a soft deadline");
    assert!(!d.hard);
    let served = clock.passed(false).expect("passed").expect("the fallback");
    assert_eq!(served.payload, b("old"));
    let refused = c.stats().await.deps_refused;
    settle(page, page_deps, "page from the old section").await;
    assert_eq!(c.stats().await.deps_refused, refused + 1);
    assert!(!fresh(&c, "page").await);
    drop(section);
}

/// Without Redis the same rules hold in the one process.
#[tokio::test]
async fn in_process_only() {
    let c = Cache::builder().build().expect("cache");
    c.set("product", b("p1"), &opts(&["product:1"]))
        .await
        .expect("set");
    for change in ["tag", "set", "delete"] {
        c.set("product", b("p1"), &opts(&["product:1"]))
            .await
            .expect("set");
        build_page(&c).await;
        assert!(fresh(&c, "page").await, "{change}: stored");
        match change {
            "tag" => c.invalidate_tags(&["product:1"]).await.expect("tags"),
            "set" => c.set("product", b("p2"), &opts(&[])).await.expect("set"),
            _ => {
                c.delete("product").await.expect("delete");
            }
        }
        assert!(!fresh(&c, "page").await, "{change}: page still fresh");
    }
}
