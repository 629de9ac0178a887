//! API tokens: 64 lower-case hex characters (the format sentry-cli recognises), scoped to one
//! organization. Only the BLAKE3 hash of a token is stored; the secret is shown once, at creation.

use super::Store;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::id::hex;
use crate::index::records::TokenRec;
use crate::index::tokens::{PutToken, RemoveToken, TokenHash};
use crate::key::validate_slug;

/// Every scope a token can hold (Sentry's names).
pub const ALL_SCOPES: &[&str] = &[
    "org:ci",
    "project:read",
    "project:write",
    "project:admin",
    "project:releases",
];

/// A stored token, without its secret.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    /// Public identifier: the first 16 hex characters of the secret's hash.
    pub id: String,
    /// Organization the token belongs to.
    pub org: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Free-form label.
    pub label: String,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
}

impl TokenInfo {
    fn new(hash: &TokenHash, rec: TokenRec) -> TokenInfo {
        TokenInfo {
            id: token_id(hash),
            org: rec.org,
            scopes: rec.scopes,
            label: rec.label,
            created_ms: rec.created_ms,
        }
    }

    /// True when the token holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

fn hash(secret: &str) -> TokenHash {
    *blake3::hash(secret.as_bytes()).as_bytes()
}

/// A token's public id: the first 16 hex characters of its hash.
fn token_id(hash: &TokenHash) -> String {
    hex(&hash[..8])
}

impl Store {
    /// Creates a token for `org` with `scopes` (all scopes when empty). Returns the secret, which
    /// is not stored and cannot be shown again, and the token's record.
    pub fn create_token(
        &self,
        org: &str,
        scopes: &[String],
        label: &str,
    ) -> Result<(String, TokenInfo)> {
        validate_slug("org", org)?;
        for s in scopes {
            if !ALL_SCOPES.contains(&s.as_str()) {
                return Err(Error::invalid(
                    "scope",
                    format!("{s:?} is not one of {}", ALL_SCOPES.join(", ")),
                ));
            }
        }
        let scopes = if scopes.is_empty() {
            ALL_SCOPES.iter().map(|s| s.to_string()).collect()
        } else {
            scopes.to_vec()
        };
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| {
            Error::io(
                "draw random token",
                self.path(),
                std::io::Error::other(e.to_string()),
            )
        })?;
        let secret = hex(&raw);
        let rec = TokenRec {
            org: org.into(),
            scopes,
            label: label.into(),
            created_ms: now_ms(),
        };
        let h = hash(&secret);
        self.engine
            .write()?
            .commit(&PutToken { hash: h, rec: &rec })?;
        Ok((secret, TokenInfo::new(&h, rec)))
    }

    /// The token whose secret is `secret`, if it exists.
    pub fn authenticate(&self, secret: &str) -> Result<Option<TokenInfo>> {
        let h = hash(secret);
        Ok(self
            .engine
            .index()
            .token(&h)?
            .map(|rec| TokenInfo::new(&h, rec)))
    }

    /// Every token (without secrets).
    pub fn tokens(&self) -> Result<Vec<TokenInfo>> {
        Ok(self
            .engine
            .index()
            .tokens()?
            .into_iter()
            .map(|(h, rec)| TokenInfo::new(&h, rec))
            .collect())
    }

    /// Revokes the token whose id (see [`TokenInfo::id`]) is `id`. Returns false if none matches.
    pub fn revoke_token(&self, id: &str) -> Result<bool> {
        let mut write = self.engine.write()?;
        for (h, _) in self.engine.index().tokens()? {
            if token_id(&h) == id {
                return write.commit(&RemoveToken(h));
            }
        }
        Ok(false)
    }
}
