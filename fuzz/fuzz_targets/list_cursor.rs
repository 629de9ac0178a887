//! List cursors: an arbitrary client string against a small store opened once.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use relstore::{ListQuery, ReleaseScope, Store, StoreOptions};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
}

fn scope() -> ReleaseScope {
    ReleaseScope::project("acme", "web", "1.0")
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreOptions::new(dir.path()).cache_bytes(1 << 20)).expect("open");
        store
            .create_release("acme", "1.0", &["web"])
            .expect("release");
        store
            .create_release("acme", "2.0", &["web", "api"])
            .expect("release");
        for (i, name) in ["~/a.js", "~/a.js.map", "~/b.js", "~/z/é.js", "~/c.js"]
            .iter()
            .enumerate()
        {
            let body = format!("file {i}");
            for (rel, project) in [("1.0", "web"), ("2.0", "api")] {
                let key = ReleaseScope::project("acme", project, rel).file(name, None);
                store
                    .upload(&key, &[], &mut body.as_bytes(), false)
                    .expect("upload");
            }
            let key = scope().file(name, Some("dist1"));
            store
                .upload(&key, &[], &mut body.as_bytes(), false)
                .expect("upload");
        }
        Fixture { _dir: dir, store }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let cursor = String::from_utf8_lossy(data).into_owned();
    let limit = data.first().map_or(1, |b| usize::from(b % 5));
    let q = ListQuery {
        limit,
        cursor: Some(cursor),
        ..Default::default()
    };
    if let Ok(page) = f.store.list_files(&scope(), &q) {
        let prefix = scope();
        let mut last: Option<Vec<u8>> = None;
        for item in &page.items {
            // A cursor never leads out of the listed scope, and pages stay in key order.
            assert_eq!(item.key.scope(), prefix);
            let k = item.key.encode();
            assert!(last.as_ref().is_none_or(|l| *l < k));
            last = Some(k);
        }
        assert!(page.items.len() <= limit.max(1));
    }
});
