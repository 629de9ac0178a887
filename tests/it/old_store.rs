//! Stores of other format versions are refused with a typed error, from committed fixtures
//! (`tests/fixtures/`), and opening them changes nothing in their directory.

use std::path::Path;

use relstore::{Error, Store, StoreOptions, FORMAT_VERSION};

/// Copies the fixture `name` to a fresh directory and opens it; returns the error and the
/// directory.
fn open_fixture(name: &str) -> (Error, tempfile::TempDir) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&fixture).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let err = Store::open(StoreOptions::new(dir.path())).expect_err("an old store opens");
    (err, dir)
}

#[test]
fn stores_of_format_1_and_2_are_refused_untouched() {
    for (name, version) in [("store-format-1", 1), ("store-format-2", 2)] {
        let before = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name)
                .join("FORMAT"),
        )
        .unwrap();
        let (err, dir) = open_fixture(name);
        match &err {
            Error::UnsupportedVersion {
                what,
                found,
                supported,
            } => {
                assert_eq!(*what, "store format", "{name}");
                assert_eq!(*found, version, "{name}");
                assert_eq!(*supported, u64::from(FORMAT_VERSION), "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(
            err.to_string().contains(&format!("version {version}")),
            "{name}: the message names the version: {err}"
        );
        assert_eq!(
            std::fs::read(dir.path().join("FORMAT")).unwrap(),
            before,
            "{name}: FORMAT unchanged"
        );
        for made in ["index", "segments"] {
            assert!(
                !dir.path().join(made).exists(),
                "{name}: opening created {made}/"
            );
        }
    }
}

#[test]
fn a_newer_format_is_refused_and_a_foreign_file_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("FORMAT"),
        format!(
            r#"{{"format": "relstore", "version": {}, "chunking": {{"min": 2048, "avg": 4096, "max": 32768}}}}"#,
            FORMAT_VERSION + 1
        ),
    )
    .unwrap();
    let err = Store::open(StoreOptions::new(dir.path())).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedVersion { found, .. } if found == u64::from(FORMAT_VERSION) + 1),
        "{err:?}"
    );
    std::fs::write(dir.path().join("FORMAT"), "{\"format\": \"other\"}").unwrap();
    let err = Store::open(StoreOptions::new(dir.path())).unwrap_err();
    assert!(matches!(err, Error::Format { .. }), "{err:?}");
}
