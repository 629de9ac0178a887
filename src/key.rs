//! Typed keys, their byte encoding, and every rule on input the store accepts: the only place
//! that turns names into index keys, and the only place that says which names, versions, dists
//! and headers are valid (the bundle reader and every store verb call in here).
//!
//! A key is a sequence of string parts. Each part is written with every `0x00` byte escaped as
//! `0x00 0xFF` and closed by the terminator `0x00 0x01`. This encoding is
//! - unambiguous: the terminator cannot occur inside an escaped part, so decoding is unique;
//! - order-preserving: comparing two encodings byte by byte compares their parts in order, each by
//!   bytes (a shorter part ends with `0x00 0x01`, smaller than any continuation `0x00 0xFF` or
//!   `0x01..`), so a release's files form one contiguous, name-sorted range.
//!
//! File keys are ordered `org ‖ project ‖ release ‖ name ‖ dist`. The optional parts (project,
//! dist) encode "none" as the empty part, which no valid slug or dist can be.

use crate::error::{Error, Object, Result};

const ESC: u8 = 0x00;
const ESCAPED_ZERO: u8 = 0xFF;
const TERMINATOR: u8 = 0x01;

/// Longest accepted file name, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;
/// Longest accepted dist, in characters.
pub const MAX_DIST_CHARS: usize = 64;
/// Longest accepted organization or project slug, in characters.
pub const MAX_SLUG_CHARS: usize = 100;
/// Longest accepted release version, in characters (Sentry's limit).
pub const MAX_VERSION_CHARS: usize = 200;
/// Most headers a file may carry.
pub const MAX_HEADERS: usize = 64;
/// Largest total size of a file's header names and values, bytes.
pub const MAX_HEADER_BYTES: usize = 16 << 10;

/// Identifies one release file: `(org, project, release, dist, name)`.
///
/// `project: None` is the organization-wide scope (files uploaded at the organization level);
/// `dist: None` is "no dist". Keys order as their encodings do: `org ‖ project ‖ release ‖ name
/// ‖ dist` (see [`FileKey::encode`]), which is the order of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FileKey {
    /// Organization slug.
    pub org: String,
    /// Project slug, or `None` for the organization-wide scope.
    pub project: Option<String>,
    /// Release version.
    pub release: String,
    /// Distribution, or `None`.
    pub dist: Option<String>,
    /// File name (usually a URL such as `~/static/app.js`).
    pub name: String,
}

/// The files of one release in one scope: a project, or the organization-wide scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReleaseScope {
    /// Organization slug.
    pub org: String,
    /// Project slug, or `None` for the organization-wide scope.
    pub project: Option<String>,
    /// Release version.
    pub release: String,
}

impl ReleaseScope {
    /// A scope of one project's files of a release.
    pub fn project(org: &str, project: &str, release: &str) -> Self {
        ReleaseScope {
            org: org.into(),
            project: Some(project.into()),
            release: release.into(),
        }
    }

    /// The organization-wide scope of a release.
    pub fn org_wide(org: &str, release: &str) -> Self {
        ReleaseScope {
            org: org.into(),
            project: None,
            release: release.into(),
        }
    }

    /// The key of `name` (and `dist`) in this scope.
    pub fn file(&self, name: &str, dist: Option<&str>) -> FileKey {
        FileKey {
            org: self.org.clone(),
            project: self.project.clone(),
            release: self.release.clone(),
            dist: dist.filter(|d| !d.is_empty()).map(str::to_owned),
            name: name.into(),
        }
    }

    /// The byte prefix shared by every file key of this scope.
    pub fn encode_prefix(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        push_part(&mut out, &self.org);
        push_part(&mut out, self.project.as_deref().unwrap_or(""));
        push_part(&mut out, &self.release);
        out
    }
}

impl FileKey {
    /// The scope (org, project, release) this file belongs to.
    pub fn scope(&self) -> ReleaseScope {
        ReleaseScope {
            org: self.org.clone(),
            project: self.project.clone(),
            release: self.release.clone(),
        }
    }

    /// The order-preserving byte encoding `org ‖ project ‖ release ‖ name ‖ dist`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.scope().encode_prefix();
        push_part(&mut out, &self.name);
        push_part(&mut out, self.dist.as_deref().unwrap_or(""));
        out
    }

    /// Decodes [`FileKey::encode`]'s output; any other input is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<FileKey> {
        let parts = decode_parts(bytes, 5)?;
        let [org, project, release, name, dist]: [String; 5] = parts
            .try_into()
            .map_err(|_| Error::corrupt(Object::Index("file key"), "wrong number of parts"))?;
        let opt = |s: String| if s.is_empty() { None } else { Some(s) };
        Ok(FileKey {
            org,
            project: opt(project),
            release,
            dist: opt(dist),
            name,
        })
    }

    /// Checks every part against the store's rules (see [`validate_name`] and friends).
    pub fn validate(&self) -> Result<()> {
        validate_slug("org", &self.org)?;
        if let Some(p) = &self.project {
            validate_slug("project", p)?;
        }
        validate_version(&self.release)?;
        validate_name(&self.name)?;
        if let Some(d) = &self.dist {
            validate_dist(d)?;
        }
        Ok(())
    }
}

impl FileKey {
    /// The parts in encoding order, `None` as the empty part.
    fn parts(&self) -> [&str; 5] {
        [
            &self.org,
            self.project.as_deref().unwrap_or(""),
            &self.release,
            &self.name,
            self.dist.as_deref().unwrap_or(""),
        ]
    }
}

impl Ord for FileKey {
    /// The order of the encoded keys (the index's order), not the fields' declaration order.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.parts()
            .map(str::as_bytes)
            .cmp(&other.parts().map(str::as_bytes))
    }
}

impl PartialOrd for FileKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}@{}:{}",
            self.org,
            self.project.as_deref().unwrap_or("*"),
            self.release,
            self.name
        )?;
        if let Some(d) = &self.dist {
            write!(f, " (dist {d})")?;
        }
        Ok(())
    }
}

/// Encodes a sequence of parts with the key encoding (used for release and project keys).
pub fn encode_parts(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        push_part(&mut out, p);
    }
    out
}

/// Decodes exactly `count` parts; trailing bytes, bad escapes or invalid UTF-8 are errors.
pub fn decode_parts(bytes: &[u8], count: usize) -> Result<Vec<String>> {
    let bad = |d: &str| Error::corrupt(Object::Index("key"), d);
    let mut parts = Vec::with_capacity(count);
    let mut cur = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == ESC {
            match bytes.get(i + 1) {
                Some(&ESCAPED_ZERO) => cur.push(0),
                Some(&TERMINATOR) => {
                    if parts.len() == count {
                        return Err(bad("too many parts"));
                    }
                    let s = String::from_utf8(std::mem::take(&mut cur))
                        .map_err(|_| bad("part is not UTF-8"))?;
                    parts.push(s);
                }
                _ => return Err(bad("bad escape")),
            }
            i += 2;
        } else {
            cur.push(b);
            i += 1;
        }
    }
    if !cur.is_empty() || parts.len() != count {
        return Err(bad("truncated key"));
    }
    Ok(parts)
}

fn push_part(out: &mut Vec<u8>, part: &str) {
    for &b in part.as_bytes() {
        if b == 0 {
            out.extend_from_slice(&[ESC, ESCAPED_ZERO]);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&[ESC, TERMINATOR]);
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Organization and project slugs: 1..=100 characters, no control characters, no `/`.
pub fn validate_slug(field: &'static str, s: &str) -> Result<()> {
    if s.is_empty() || s.chars().count() > MAX_SLUG_CHARS {
        return Err(Error::invalid(
            field,
            format!("must be 1 to {MAX_SLUG_CHARS} characters"),
        ));
    }
    if has_control(s) || s.contains('/') {
        return Err(Error::invalid(
            field,
            "must not contain '/' or control characters",
        ));
    }
    Ok(())
}

/// Release versions, as Sentry accepts them: 1..=200 characters, not `.` or `..`, no `/`, no
/// leading or trailing whitespace, no whitespace but plain spaces, no control characters.
pub fn validate_version(v: &str) -> Result<()> {
    let n = v.chars().count();
    if n == 0 || n > MAX_VERSION_CHARS {
        return Err(Error::invalid(
            "version",
            format!("must be 1 to {MAX_VERSION_CHARS} characters"),
        ));
    }
    if v == "." || v == ".." || v.contains('/') {
        return Err(Error::invalid(
            "version",
            "must not be '.' or '..' and must not contain '/'",
        ));
    }
    if v.trim() != v {
        return Err(Error::invalid(
            "version",
            "must not start or end with whitespace",
        ));
    }
    if v.chars()
        .any(|c| c.is_control() || (c.is_whitespace() && c != ' '))
    {
        return Err(Error::invalid(
            "version",
            "must not contain control characters or whitespace other than spaces",
        ));
    }
    Ok(())
}

/// File names: 1..=1024 bytes, no control characters anywhere, and no `\` in the last path segment
/// (Sentry's rule, which keeps download file names sane).
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid("name", "must not be empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(Error::invalid(
            "name",
            format!("is {} bytes, the limit is {MAX_NAME_BYTES}", name.len()),
        ));
    }
    if has_control(name) {
        return Err(Error::invalid(
            "name",
            "must not contain control characters (including tabs and newlines)",
        ));
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains('\\') {
        return Err(Error::invalid(
            "name",
            "the last path segment must not contain '\\'",
        ));
    }
    Ok(())
}

/// Dists: at most 64 characters, no control characters (empty means none and is normalised away).
pub fn validate_dist(dist: &str) -> Result<()> {
    if dist.chars().count() > MAX_DIST_CHARS {
        return Err(Error::invalid(
            "dist",
            format!("must be at most {MAX_DIST_CHARS} characters"),
        ));
    }
    if has_control(dist) {
        return Err(Error::invalid(
            "dist",
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Checks and normalises headers: at most [`MAX_HEADERS`], names are HTTP tokens, values carry
/// no control characters, a later header replaces an earlier one of the same name, at most
/// [`MAX_HEADER_BYTES`] in all.
pub fn validate_headers(headers: &[(String, String)]) -> Result<Vec<(String, String)>> {
    if headers.len() > MAX_HEADERS {
        return Err(Error::invalid(
            "headers",
            format!("{} headers, the limit is {MAX_HEADERS}", headers.len()),
        ));
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(headers.len());
    let mut total = 0;
    for (k, v) in headers {
        let token = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(Error::invalid(
                "header",
                format!("name {k:?} is not an HTTP token"),
            ));
        }
        if v.chars().any(char::is_control) {
            return Err(Error::invalid(
                "header",
                format!("value of {k} contains control characters (CR, LF, tab...)"),
            ));
        }
        total += k.len() + v.len();
        match out.iter_mut().find(|(ek, _)| ek == k) {
            Some(e) => e.1 = v.clone(),
            None => out.push((k.clone(), v.clone())),
        }
    }
    if total > MAX_HEADER_BYTES {
        return Err(Error::invalid(
            "headers",
            format!("{total} bytes in all, the limit is {MAX_HEADER_BYTES}"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(parts: (String, Option<String>, String, Option<String>, String)) -> FileKey {
        FileKey {
            org: parts.0,
            project: parts.1.filter(|s| !s.is_empty()),
            release: parts.2,
            dist: parts.3.filter(|s| !s.is_empty()),
            name: parts.4,
        }
    }

    // Small alphabets with NUL, 0x01 and 0xFF-adjacent characters make prefix and escape cases
    // common instead of astronomically rare.
    fn part() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[\\x00\\x01a-c\u{ff}]{0,4}").unwrap()
    }

    fn any_key() -> impl Strategy<Value = FileKey> {
        (
            part(),
            proptest::option::of(part()),
            part(),
            proptest::option::of(part()),
            part(),
        )
            .prop_map(key)
    }

    fn tuple(k: &FileKey) -> (&str, &str, &str, &str, &str) {
        (
            &k.org,
            k.project.as_deref().unwrap_or(""),
            &k.release,
            &k.name,
            k.dist.as_deref().unwrap_or(""),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn encoding_preserves_order(a in any_key(), b in any_key()) {
            let (ta, tb) = (tuple(&a), tuple(&b));
            let parts_order = (ta.0.as_bytes(), ta.1.as_bytes(), ta.2.as_bytes(), ta.3.as_bytes(), ta.4.as_bytes())
                .cmp(&(tb.0.as_bytes(), tb.1.as_bytes(), tb.2.as_bytes(), tb.3.as_bytes(), tb.4.as_bytes()));
            prop_assert_eq!(a.encode().cmp(&b.encode()), parts_order);
        }

        #[test]
        fn key_order_is_the_encoded_order(a in any_key(), b in any_key()) {
            prop_assert_eq!(a.cmp(&b), a.encode().cmp(&b.encode()));
        }

        #[test]
        fn encoding_round_trips_and_never_confuses(a in any_key(), b in any_key()) {
            prop_assert_eq!(FileKey::decode(&a.encode()).unwrap(), a.clone());
            if a != b {
                prop_assert_ne!(a.encode(), b.encode());
            }
        }

        #[test]
        fn scope_prefix_covers_exactly_its_files(a in any_key(), b in any_key()) {
            let in_scope = a.encode().starts_with(&b.scope().encode_prefix());
            prop_assert_eq!(in_scope, a.scope() == b.scope());
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = FileKey::decode(&bytes);
        }
    }

    #[test]
    fn validation_rejects_what_sentry_rejects() {
        assert!(validate_version("1.0.0").is_ok());
        for bad in ["", ".", "..", "a/b", " a", "a ", "a\tb", "a\nb"] {
            assert!(validate_version(bad).is_err(), "{bad:?}");
        }
        assert!(validate_name("~/static/app.js").is_ok());
        assert!(validate_name("a\\b/c.js").is_ok());
        for bad in ["", "a\nb", "x\ty", "dir/a\\b"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_name(&"a".repeat(1025)).is_err());
        assert!(validate_dist(&"d".repeat(64)).is_ok());
        assert!(validate_dist(&"d".repeat(65)).is_err());
    }
}
