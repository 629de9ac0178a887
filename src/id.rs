//! Typed identities: [`ContentId`] and [`ChunkId`] (BLAKE3-256 of a content's or a chunk's
//! bytes) and [`Sha1`] (the SHA-1 of a content, the public checksum of the Sentry API).
//!
//! Each is a fixed-size byte array with a lower-case hex `Display`, a hex `FromStr` (either
//! case), and `serde` support that writes hex to human-readable formats and the raw bytes
//! otherwise. Keeping them distinct types means a chunk id can never be looked up as a content,
//! and every error or report names an object the same way. This module also holds the crate's
//! private hex helpers for byte strings that are not identities (cursors, token secrets).

use std::fmt;
use std::str::FromStr;

/// A hex string that is not an identity of the expected kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a {expected}-character hex {kind}")]
pub struct ParseIdError {
    kind: &'static str,
    expected: usize,
}

macro_rules! identity {
    ($(#[$doc:meta])* $name:ident, $len:expr, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// The identity with these bytes.
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                $name(bytes)
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// The identity held in `bytes`, when it has exactly the right length.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                bytes.try_into().ok().map($name)
            }
        }

        impl From<[u8; $len]> for $name {
            fn from(bytes: [u8; $len]) -> Self {
                $name(bytes)
            }
        }

        impl From<$name> for [u8; $len] {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            /// Parses `2 × LEN` hex digits, lower- or upper-case.
            fn from_str(s: &str) -> Result<Self, ParseIdError> {
                unhex(s)
                    .and_then(|v| Self::from_slice(&v))
                    .ok_or(ParseIdError {
                        kind: $kind,
                        expected: 2 * $len,
                    })
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    self.0.serialize(s)
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    <[u8; $len]>::deserialize(d).map($name)
                }
            }
        }
    };
}

identity!(
    /// A content's identity: the BLAKE3-256 of its whole bytes. Two files with equal bytes share
    /// one content.
    ContentId,
    32,
    "content id"
);

identity!(
    /// A chunk's identity: the BLAKE3-256 of its bytes.
    ChunkId,
    32,
    "chunk id"
);

identity!(
    /// The SHA-1 of a content: the checksum the Sentry API names files and upload pieces by. Not
    /// an identity inside the store (SHA-1 collides; see [`ContentId`]).
    Sha1,
    20,
    "SHA-1"
);

impl ContentId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> ContentId {
        ContentId(*blake3::hash(bytes).as_bytes())
    }
}

impl ChunkId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> ChunkId {
        ChunkId(*blake3::hash(bytes).as_bytes())
    }
}

impl Sha1 {
    /// The SHA-1 of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha1 {
        use sha1::Digest;
        Sha1(sha1::Sha1::digest(bytes).into())
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Parses lower- or upper-case hex; `None` for anything else.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_in_either_case_and_refuses_the_rest() {
        let id = Sha1::of(b"abc");
        let s = id.to_string();
        assert_eq!(s, "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(s.parse::<Sha1>(), Ok(id));
        assert_eq!(s.to_uppercase().parse::<Sha1>(), Ok(id));
        for bad in ["", "a9", &s[1..], &format!("{s}00"), &s.replace('a', "g")] {
            assert!(bad.parse::<Sha1>().is_err(), "{bad:?}");
        }
        assert!(
            s.parse::<ContentId>().is_err(),
            "a SHA-1 is not a content id"
        );
        let c = ContentId::of(b"abc");
        assert_eq!(c.to_string().parse::<ContentId>(), Ok(c));
        assert_eq!(format!("{c:?}"), format!("ContentId({c})"));
    }

    #[test]
    fn serde_writes_hex_to_json_and_raw_bytes_to_bincode() {
        let id = ChunkId::of(b"x");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<ChunkId>(&json).unwrap(), id);
        let raw = bincode::serde::encode_to_vec(id, bincode::config::standard()).unwrap();
        assert_eq!(raw, id.as_bytes());
        let (back, _): (ChunkId, usize) =
            bincode::serde::decode_from_slice(&raw, bincode::config::standard()).unwrap();
        assert_eq!(back, id);
    }
}
