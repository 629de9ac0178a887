//! Source bundles: the ZIP files sentry-cli 3.x and the bundler plugins upload, read without
//! trusting a byte of them.
//!
//! A bundle is optionally the 8 bytes `SYSB` + u32 LE version, then a ZIP holding
//! `manifest.json` and the files under `files/`. The manifest maps each ZIP path to the file's URL
//! (its release-file name), its type and its headers. This module validates the container and
//! the manifest and streams each entry out under hard caps; it never holds an entry in memory.
//! Anything off (a corrupt ZIP, a path outside `files/`, an absolute or `..` path, an oversized
//! manifest, a decompression bomb) is [`Error::InvalidBundle`].

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};

use crate::error::{Error, Result};

/// Hard limits applied while reading a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BundleLimits {
    /// Largest `manifest.json`, bytes.
    pub max_manifest_bytes: u64,
    /// Most files in a bundle.
    pub max_entries: usize,
    /// Largest total of decompressed bytes, whatever the bundle's size.
    pub max_total_bytes: u64,
    /// Largest ratio of decompressed bytes to the bundle's size (with a floor of 64 MiB).
    pub max_ratio: u64,
}

impl Default for BundleLimits {
    fn default() -> Self {
        BundleLimits {
            max_manifest_bytes: 16 << 20,
            max_entries: 100_000,
            max_total_bytes: 8 << 30,
            max_ratio: 100,
        }
    }
}

/// One file listed by a bundle's manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestFile {
    /// Path inside the ZIP (`files/...`).
    pub zip_path: String,
    /// Release-file name, e.g. `~/static/app.js`.
    pub url: String,
    /// `minified_source`, `source_map`, `source`, `indexed_ram_bundle`, ...
    pub kind: Option<String>,
    /// Headers (e.g. `sourcemap`, `debug-id`), in manifest order.
    pub headers: Vec<(String, String)>,
}

/// A bundle's manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// `org`, if given.
    pub org: Option<String>,
    /// `release`, if given.
    pub release: Option<String>,
    /// `dist`, if given.
    pub dist: Option<String>,
    /// The files, sorted by ZIP path.
    pub files: Vec<ManifestFile>,
}

fn invalid(why: impl Into<String>) -> Error {
    Error::InvalidBundle(why.into())
}

/// An opened, validated bundle.
pub struct Bundle<R: Read + Seek> {
    archive: zip::ZipArchive<R>,
    /// The validated manifest.
    pub manifest: Manifest,
    budget: u64,
}

impl<R: Read + Seek> std::fmt::Debug for Bundle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("manifest", &self.manifest)
            .finish()
    }
}

/// Checks that a ZIP path is a plain relative path: no absolute path, no `..` or `.`
/// component, no backslash or NUL, no empty component.
fn safe_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\\')
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != ".." && c != ".")
}

impl<R: Read + Seek> Bundle<R> {
    /// Opens the bundle in `reader` (`size` bytes long) and validates its layout and manifest.
    pub fn open(mut reader: R, size: u64, limits: BundleLimits) -> Result<Bundle<R>> {
        // The optional `SYSB` + version header is left in place: the ZIP parser finds the archive
        // after prepended bytes, whether its offsets count them (sentry-cli's do) or not.
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|e| invalid(format!("cannot seek: {e}")))?;
        let archive =
            zip::ZipArchive::new(reader).map_err(|e| invalid(format!("not a ZIP archive: {e}")))?;
        if archive.len() > limits.max_entries + 1 {
            return Err(invalid(format!(
                "{} entries, the limit is {}",
                archive.len(),
                limits.max_entries
            )));
        }
        for name in archive.file_names() {
            if name == "manifest.json"
                || name.ends_with('/') && safe_path(name.trim_end_matches('/'))
            {
                continue;
            }
            if !safe_path(name) || !name.starts_with("files/") {
                return Err(invalid(format!(
                    "entry {name:?} is outside files/ or not a plain relative path"
                )));
            }
        }
        let budget = limits
            .max_total_bytes
            .min(size.saturating_mul(limits.max_ratio).max(64 << 20));
        let mut bundle = Bundle {
            archive,
            manifest: Manifest::default(),
            budget,
        };
        let raw = {
            let entry = bundle
                .archive
                .by_name("manifest.json")
                .map_err(|_| invalid("no manifest.json"))?;
            let mut raw = Vec::new();
            entry
                .take(limits.max_manifest_bytes + 1)
                .read_to_end(&mut raw)
                .map_err(|e| invalid(format!("unreadable manifest: {e}")))?;
            if raw.len() as u64 > limits.max_manifest_bytes {
                return Err(invalid("manifest.json is too large"));
            }
            raw
        };
        bundle.budget = bundle.budget.saturating_sub(raw.len() as u64);
        bundle.manifest = parse_manifest(&raw)?;
        for f in &bundle.manifest.files {
            if bundle.archive.index_for_name(&f.zip_path).is_none() {
                return Err(invalid(format!(
                    "manifest lists {:?}, which the ZIP lacks",
                    f.zip_path
                )));
            }
        }
        Ok(bundle)
    }

    /// Streams the file at `zip_path` into `sink`, counting against the decompression budget.
    pub fn read_entry<T>(
        &mut self,
        zip_path: &str,
        sink: impl FnOnce(&mut dyn Read) -> Result<T>,
    ) -> Result<T> {
        let entry = self
            .archive
            .by_name(zip_path)
            .map_err(|e| invalid(format!("cannot open {zip_path:?}: {e}")))?;
        let mut counted = Budgeted {
            inner: entry,
            left: self.budget,
            over: false,
        };
        let r = sink(&mut counted);
        if counted.over {
            return Err(invalid("decompressed size exceeds the limit (zip bomb?)"));
        }
        self.budget = counted.left;
        r.map_err(|e| match e {
            // The archive's reader failed: the store's own error when the bundle's bytes came
            // out of the store (a damaged chunk stays an integrity error), else the bundle's.
            Error::UploadRead(io) if io.get_ref().is_some_and(|e| e.is::<Error>()) => *io
                .into_inner()
                .and_then(|e| e.downcast::<Error>().ok())
                .expect("checked to hold a store error"),
            Error::UploadRead(io) => invalid(format!("cannot read {zip_path:?}: {io}")),
            other => other,
        })
    }
}

/// Counts bytes read and fails once the budget is spent.
struct Budgeted<R> {
    inner: R,
    left: u64,
    over: bool,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.left.checked_sub(n as u64) {
            Some(l) => self.left = l,
            None => {
                self.over = true;
                return Err(io::Error::other("decompression budget exceeded"));
            }
        }
        Ok(n)
    }
}

#[derive(serde::Deserialize)]
struct RawManifest {
    org: Option<String>,
    release: Option<String>,
    dist: Option<String>,
    #[serde(default)]
    files: BTreeMap<String, RawFile>,
}

#[derive(serde::Deserialize)]
struct RawFile {
    url: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// Parses and validates `manifest.json`.
pub fn parse_manifest(raw: &[u8]) -> Result<Manifest> {
    let m: RawManifest =
        serde_json::from_slice(raw).map_err(|e| invalid(format!("manifest.json: {e}")))?;
    let mut files = Vec::with_capacity(m.files.len());
    for (zip_path, f) in m.files {
        if !safe_path(&zip_path) || !zip_path.starts_with("files/") {
            return Err(invalid(format!(
                "manifest path {zip_path:?} is outside files/"
            )));
        }
        crate::key::validate_name(&f.url).map_err(|e| invalid(format!("url {:?}: {e}", f.url)))?;
        let headers: Vec<(String, String)> = f.headers.into_iter().collect();
        let headers = crate::key::validate_headers(&headers)
            .map_err(|e| invalid(format!("headers of {:?}: {e}", f.url)))?;
        files.push(ManifestFile {
            zip_path,
            url: f.url,
            kind: f.kind,
            headers,
        });
    }
    if let Some(d) = &m.dist {
        crate::key::validate_dist(d).map_err(|e| invalid(e.to_string()))?;
    }
    Ok(Manifest {
        org: m.org,
        release: m.release,
        dist: m.dist.filter(|d| !d.is_empty()),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    const MANIFEST: &[u8] = br#"{"org":"acme","release":"1.0","files":{"files/_/_/app.js":{"url":"~/app.js","type":"minified_source","headers":{"sourcemap":"app.js.map","debug-id":"ABC"}}}}"#;

    fn open(bytes: Vec<u8>) -> Result<Bundle<Cursor<Vec<u8>>>> {
        let n = bytes.len() as u64;
        Bundle::open(Cursor::new(bytes), n, BundleLimits::default())
    }

    #[test]
    fn reads_a_bundle_with_and_without_the_sysb_header() {
        let z = zip_of(&[
            ("manifest.json", MANIFEST),
            ("files/_/_/app.js", b"console.log(1)"),
        ]);
        let mut with = b"SYSB\x02\x00\x00\x00".to_vec();
        with.extend_from_slice(&z);
        for bytes in [z, with] {
            let mut b = open(bytes).unwrap();
            assert_eq!(b.manifest.files.len(), 1);
            assert_eq!(b.manifest.files[0].url, "~/app.js");
            let got = b.read_entry("files/_/_/app.js", |r| {
                let mut v = Vec::new();
                r.read_to_end(&mut v).map_err(Error::UploadRead)?;
                Ok(v)
            });
            assert_eq!(got.unwrap(), b"console.log(1)");
        }
    }

    #[test]
    fn refuses_malicious_layouts() {
        let cases: Vec<Vec<u8>> = vec![
            b"not a zip at all".to_vec(),
            zip_of(&[("files/_/_/app.js", b"x")]),
            zip_of(&[
                ("manifest.json", MANIFEST),
                ("files/_/_/app.js", b"x"),
                ("../evil", b"x"),
            ]),
            zip_of(&[
                ("manifest.json", MANIFEST),
                ("files/_/_/app.js", b"x"),
                ("/etc/passwd", b"x"),
            ]),
            zip_of(&[
                ("manifest.json", MANIFEST),
                ("files/_/_/app.js", b"x"),
                ("other/file", b"x"),
            ]),
            zip_of(&[("manifest.json", MANIFEST), ("files/../../x", b"x")]),
            zip_of(&[("manifest.json", br#"{"files":{"files/a":{"url":"~/a"}}}"#)]),
            zip_of(&[
                ("manifest.json", br#"{"files":{"../a":{"url":"~/a"}}}"#),
                ("files/a", b"x"),
            ]),
            zip_of(&[("manifest.json", b"{not json")]),
        ];
        for (i, c) in cases.into_iter().enumerate() {
            assert!(matches!(open(c), Err(Error::InvalidBundle(_))), "case {i}");
        }
    }

    #[test]
    fn a_decompression_bomb_is_cut_off_at_the_budget() {
        let zeros = vec![0u8; 200 << 20];
        let z = zip_of(&[
            ("manifest.json", br#"{"files":{"files/z":{"url":"~/z"}}}"#),
            ("files/z", &zeros),
        ]);
        assert!(z.len() < 1 << 20, "compresses well: {}", z.len());
        let mut b = open(z).unwrap();
        let mut read = 0u64;
        let r = b.read_entry("files/z", |r| {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match r.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => read += n as u64,
                    Err(e) => return Err(Error::UploadRead(e)),
                }
            }
        });
        assert!(matches!(r, Err(Error::InvalidBundle(_))));
        assert!(read <= 64 << 20, "stopped at the budget: {read}");
    }
}
