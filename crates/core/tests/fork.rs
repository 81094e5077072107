//! Fork safety: a cache used in a parent keeps working in a child made by
//! `fork()` (gunicorn `--preload`, celery prefork). The child's first call
//! finds the parent's runtime and connections dead and rebuilds them.
//!
//! A plain `#[test]` (no tokio runtime of the test's own): the cache is
//! driven through `stratacache::runtime::block_on` as a binding would.

mod common;

use std::time::Duration;

use bytes::Bytes;
use stratacache::runtime::block_on;
use stratacache::{Cache, Lookup, LookupPolicy, WriteOptions};

fn child_work(cache: &Cache) -> Result<(), String> {
    block_on(async {
        let e = cache
            .get("from-parent")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("parent value missing")?;
        if &e.payload[..] != b"parent" {
            return Err("wrong value".into());
        }
        // Redis round trips on a connection rebuilt in the child.
        cache
            .set(
                "from-child",
                Bytes::from_static(b"child"),
                &WriteOptions::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
        // A flight the parent left open (its leader is not in the child) is
        // forgotten: the child can lead the key itself.
        match cache
            .lookup(
                "open-in-parent",
                &LookupPolicy::default().wait_timeout(Duration::from_secs(2)),
            )
            .await
        {
            Ok(Lookup::Lead(lease)) => {
                lease
                    .complete(Bytes::from_static(b"child-load"), &WriteOptions::default())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            }
            other => Err(format!("expected to lead, got {other:?}")),
        }
    })
}

#[test]
fn cache_keeps_working_in_a_forked_child() {
    let ns = common::unique_ns("fork");
    let cache = common::redis_builder(&ns).build().expect("cache");
    let l2_view = common::redis_builder(&ns)
        .l1_enabled(false)
        .build()
        .expect("cache");
    let _open_lease = block_on(async {
        cache
            .set(
                "from-parent",
                Bytes::from_static(b"parent"),
                &WriteOptions::default(),
            )
            .await
            .expect("set");
        match cache
            .lookup("open-in-parent", &LookupPolicy::default())
            .await
            .expect("lookup")
        {
            Lookup::Lead(lease) => lease,
            other => panic!("expected lead, got {other:?}"),
        }
    });

    // SAFETY: the child only runs the cache code below and then _exit()s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // A hung child must not hang the test: SIGALRM kills it.
        unsafe { libc::alarm(20) };
        let code = match child_work(&cache) {
            Ok(()) => 0,
            Err(msg) => {
                eprintln!("child: {msg}");
                1
            }
        };
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "child failed (see its stderr)"
    );

    // The parent still works, and sees what the child wrote.
    block_on(async {
        let e = l2_view
            .get("from-child")
            .await
            .expect("get")
            .expect("child's write reached Redis");
        assert_eq!(&e.payload[..], b"child");
        assert_eq!(
            &l2_view
                .get("open-in-parent")
                .await
                .expect("get")
                .expect("hit")
                .payload[..],
            b"child-load"
        );
        assert!(cache.get("from-parent").await.expect("get").is_some());
    });
}
