//! Sentry's JSON shapes and texts for what the library returns: the release-file object, its
//! `dateCreated` timestamps, the assemble failure texts, and hex for the server's own cursors.
//! The library knows none of them; the CLI prints the same file JSON through [`FileJson`].

use relstore::{Failure, FileRecord};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

/// A file as Sentry's file JSON: `{id, name, dist, headers, size, sha1, dateCreated}`.
#[derive(Clone, Copy, Debug)]
pub struct FileJson<'a>(pub &'a FileRecord);

/// Every file of `items` as Sentry's file JSON.
pub fn files(items: &[FileRecord]) -> Vec<FileJson<'_>> {
    items.iter().map(FileJson).collect()
}

impl Serialize for FileJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Headers<'a>(&'a [(String, String)]);
        impl Serialize for Headers<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
        let f = self.0;
        let mut st = s.serialize_struct("File", 7)?;
        st.serialize_field("id", &f.id.to_string())?;
        st.serialize_field("name", &f.key.name)?;
        st.serialize_field("dist", &f.key.dist)?;
        st.serialize_field("headers", &Headers(&f.headers))?;
        st.serialize_field("size", &f.size)?;
        st.serialize_field("sha1", &f.sha1_hex())?;
        st.serialize_field("dateCreated", &rfc3339_ms(f.created_ms))?;
        st.end()
    }
}

/// Formats milliseconds since the Unix epoch as RFC 3339 with milliseconds and `Z`
/// (`2018-08-22T18:24:15.908Z`), the shape of Sentry's `dateCreated`.
pub fn rfc3339_ms(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Sentry's `detail` text for an assembly that failed for good.
pub fn assemble_failure(f: Failure) -> &'static str {
    match f {
        Failure::ChecksumMismatch => "Reported checksum mismatch",
        Failure::InvalidBundle => "the bundle is invalid",
        _ => "assembly failed",
    }
}

/// Lower-case hex of `bytes` (the server's own cursors).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses lower- or upper-case hex; `None` for anything else.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use relstore::{ReleaseScope, Store, StoreOptions};

    /// The example of Sentry's release-file docs: 20 bytes uploaded as `/demo/hello.py`.
    #[test]
    fn sentry_seed_example_has_its_documented_sha1_and_shape() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreOptions::new(dir.path()).cache_bytes(4 << 20)).unwrap();
        store.create_release("acme", "2da95dfb", &["demo"]).unwrap();
        let scope = ReleaseScope::project("acme", "demo", "2da95dfb");
        let body = br#"print "Hello World!""#;
        assert_eq!(body.len(), 20);
        let headers = vec![(
            "Content-Type".to_string(),
            "text/plain; encoding=utf-8".to_string(),
        )];
        let f = store
            .upload(
                &scope.file("/demo/hello.py", None),
                &headers,
                &mut &body[..],
                false,
            )
            .unwrap();
        assert_eq!(f.sha1_hex(), "7dc0876d778eae1093028f7bf368d0b95a53ec1a");
        assert_eq!(f.size, 20);

        let text = serde_json::to_string(&FileJson(&f)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let obj = v.as_object().expect("an object");
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        let mut want = vec![
            "id",
            "name",
            "dist",
            "headers",
            "size",
            "sha1",
            "dateCreated",
        ];
        want.sort_unstable();
        let mut got = keys.clone();
        got.sort_unstable();
        assert_eq!(got, want, "exactly Sentry's fields");
        // Field order as Sentry writes it.
        let positions: Vec<usize> = [
            "\"id\"",
            "\"name\"",
            "\"dist\"",
            "\"headers\"",
            "\"size\"",
            "\"sha1\"",
            "\"dateCreated\"",
        ]
        .iter()
        .map(|k| text.find(k).unwrap_or_else(|| panic!("{k} in {text}")))
        .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "field order in {text}"
        );
        assert_eq!(v["id"], serde_json::Value::String(f.id.to_string()));
        assert!(v["id"]
            .as_str()
            .unwrap()
            .bytes()
            .all(|b| b.is_ascii_digit()));
        assert_eq!(v["name"], "/demo/hello.py");
        assert!(v["dist"].is_null());
        assert_eq!(
            v["headers"],
            serde_json::json!({"Content-Type": "text/plain; encoding=utf-8"})
        );
        assert_eq!(v["size"], 20);
        assert_eq!(v["sha1"], "7dc0876d778eae1093028f7bf368d0b95a53ec1a");
        let date = v["dateCreated"].as_str().expect("dateCreated is a string");
        assert_date_shape(date);
        let parsed = humantime::parse_rfc3339(date).expect("RFC 3339");
        let ms = parsed
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert_eq!(
            ms, f.created_ms,
            "dateCreated is the creation time to the millisecond"
        );
        assert_eq!(
            store.open_file(&f).unwrap().read_to_vec().unwrap(),
            body,
            "the seed file reads back"
        );

        // With a dist, `dist` is its string.
        let g: FileRecord = store
            .upload(
                &scope.file("/demo/hello.py", Some("42")),
                &[],
                &mut &body[..],
                false,
            )
            .unwrap();
        let v = serde_json::to_value(FileJson(&g)).unwrap();
        assert_eq!(v["dist"], "42");
        assert_eq!(v["headers"], serde_json::json!({}));
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    fn assert_date_shape(d: &str) {
        let b = d.as_bytes();
        assert_eq!(b.len(), 24, "{d}");
        for (i, c) in b.iter().enumerate() {
            let ok = match i {
                4 | 7 => *c == b'-',
                10 => *c == b'T',
                13 | 16 => *c == b':',
                19 => *c == b'.',
                23 => *c == b'Z',
                _ => c.is_ascii_digit(),
            };
            assert!(ok, "{d}: unexpected {:?} at {i}", *c as char);
        }
    }
}
