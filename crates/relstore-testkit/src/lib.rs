//! Test support shared by the workspace's integration tests: one seeded pseudo-random generator
//! (sequential and random-access), hex and SHA-1 hex as the tests' independent expectation, the
//! locator for the public SHA-1 collision pairs, and a reader of this process's memory figures in
//! `/proc/self/status`.
//!
//! It holds only what several test binaries of different crates need in the same form; helpers
//! tied to one crate's API stay in that crate's `tests/`. It depends on no workspace crate, so
//! engine changes never rebuild it, and it needs nothing outside the workspace and crates.io.

use std::path::PathBuf;
use std::process::Command;

/// splitmix64's output function applied to `x + γ`: a tiny, well-mixed hash the tests use for
/// reproducible bits, not security. `splitmix(x)` differs for every `x`.
pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// splitmix64, a sequential pseudo-random stream seeded by its field: `Rng(seed)` always yields
/// the same numbers, and its first is `splitmix(seed)`. Its state advances by γ, not by one, so
/// neighbouring seeds give unrelated streams rather than one stream shifted.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let v = splitmix(self.0);
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        v
    }

    /// A number in `0..n`; `0` when `n` is `0`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// One of `items` (not empty).
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// Fills `buf` with the next random bytes, eight per number drawn.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            word.copy_from_slice(&v[..word.len()]);
        }
    }
}

/// A random-access pseudo-random byte stream: byte `i` of stream `seed` depends only on
/// `(seed, i)`, so any range can be regenerated without what precedes it and a large stream
/// can be produced piece by piece without being held. Writes bytes `offset..` into `out`.
pub fn random_bytes_at(seed: u64, offset: u64, out: &mut [u8]) {
    let mut pos = offset;
    let mut i = 0;
    while i < out.len() {
        let word = splitmix(seed ^ (pos / 8).wrapping_mul(0xA24B_AED4_963E_E407)).to_le_bytes();
        let within = (pos % 8) as usize;
        let n = (8 - within).min(out.len() - i);
        out[i..i + n].copy_from_slice(&word[within..within + n]);
        i += n;
        pos += n as u64;
    }
}

/// The first `len` bytes of stream `seed` of [`random_bytes_at`]: incompressible, different
/// for every seed, and a shorter `len` gives a prefix.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    random_bytes_at(seed, 0, &mut out);
    out
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex string (either case); panics on anything else (test input).
pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|_| panic!("hex {s:?}")))
        .collect()
}

/// The SHA-1 of `bytes` as 40 lower-case hex characters, computed by the `sha1` crate: the
/// tests' expectation, independent of the code under test.
pub fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::Digest;
    hex(&sha1::Sha1::digest(bytes))
}

/// The `tests/data` folder of the `sha1-checked` 0.10.0 package, which ships the two public
/// SHA-1 collision pairs (SHAttered's `shattered-{1,2}.pdf`, Shambles' `sha-mbles-{1,2}.bin`).
/// The package is a dependency of this crate, so `cargo metadata` on this crate's manifest
/// always lists it. Fails the test (never skips) when it cannot be found.
pub fn collision_data() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let out = Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--manifest-path",
            manifest,
        ])
        .output()
        .unwrap_or_else(|e| panic!("running {cargo:?} metadata: {e}"));
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let pkg = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "sha1-checked" && p["version"] == "0.10.0")
        .expect("sha1-checked 0.10.0 is a dependency; cargo metadata does not list it");
    let manifest = PathBuf::from(pkg["manifest_path"].as_str().expect("manifest_path"));
    let data = manifest
        .parent()
        .expect("package folder")
        .join("tests/data");
    assert!(data.is_dir(), "{} is missing", data.display());
    data
}

/// Fields of `/proc/self/status` (`VmHWM:`, `VmRSS:`, `RssAnon:`, ...) in bytes, all from one
/// read of the file so they describe the same instant. Fails the test when a field is missing.
pub fn proc_status<const N: usize>(fields: [&str; N]) -> [u64; N] {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    fields.map(|field| {
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_else(|| panic!("{field} missing from /proc/self/status"));
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("unparsable line {line:?}"));
        kib << 10
    })
}

/// One field of `/proc/self/status` (`VmHWM:`, `VmRSS:`) in bytes.
pub fn status_bytes(field: &str) -> u64 {
    let [v] = proc_status([field]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_access_matches_the_whole_stream() {
        let whole = random_bytes(9, 100);
        for start in [0usize, 1, 7, 8, 13, 64] {
            let mut part = vec![0u8; 100 - start];
            random_bytes_at(9, start as u64, &mut part);
            assert_eq!(part, whole[start..], "from {start}");
        }
        assert_ne!(random_bytes(10, 100), whole, "seeds give different streams");
    }

    #[test]
    fn rng_is_splitmix64_and_neighbouring_seeds_do_not_overlap() {
        // The first outputs of splitmix64 seeded with 0 (Vigna's reference implementation).
        let mut r = Rng(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(Rng(41).next_u64(), splitmix(41));
        let a: Vec<u64> = (0..64).scan(Rng(7), |r, _| Some(r.next_u64())).collect();
        let b: Vec<u64> = (0..64).scan(Rng(8), |r, _| Some(r.next_u64())).collect();
        assert!(
            a.iter().all(|x| !b.contains(x)),
            "Rng(7) and Rng(8) share outputs"
        );
    }

    #[test]
    fn rng_is_reproducible_and_stays_in_range() {
        let (mut a, mut b) = (Rng(5), Rng(5));
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            assert!(a.below(7) < 7);
            b.below(7);
        }
        assert_eq!(Rng(1).below(0), 0);
        let (mut x, mut y) = ([0u8; 13], [0u8; 13]);
        Rng(3).fill(&mut x);
        let mut r = Rng(3);
        y[..8].copy_from_slice(&r.next_u64().to_le_bytes());
        y[8..].copy_from_slice(&r.next_u64().to_le_bytes()[..5]);
        assert_eq!(x, y);
    }

    #[test]
    fn status_reads_memory_figures() {
        let [hwm, rss] = proc_status(["VmHWM:", "VmRSS:"]);
        assert!(rss > 0 && hwm >= rss, "VmHWM {hwm} VmRSS {rss}");
        assert!(status_bytes("VmHWM:") >= hwm);
    }

    #[test]
    fn hex_round_trips_and_sha1_is_the_known_one() {
        assert_eq!(hex(&[0, 0xAB, 0x10]), "00ab10");
        assert_eq!(unhex("00AB10"), [0, 0xAB, 0x10]);
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn collision_pairs_are_found() {
        let dir = collision_data();
        for f in [
            "shattered-1.pdf",
            "shattered-2.pdf",
            "sha-mbles-1.bin",
            "sha-mbles-2.bin",
        ] {
            assert!(dir.join(f).is_file(), "{f} in {}", dir.display());
        }
    }
}
