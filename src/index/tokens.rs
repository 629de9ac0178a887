//! API tokens in the index: `tokens`, keyed by the BLAKE3 of a token's secret (the secret itself
//! is never stored).

use super::records::TokenRec;
use super::tables::TOKENS;
use super::{Index, IndexWriter, Mutation};
use crate::error::{Error, Object, Result};

/// The BLAKE3 of a token's secret: the key of its record.
pub type TokenHash = [u8; 32];

impl Index {
    /// The token whose secret hashes to `hash`.
    pub fn token(&self, hash: &TokenHash) -> Result<Option<TokenRec>> {
        TOKENS.get(self.trees(), hash)
    }

    /// Every token as (hash, record).
    pub fn tokens(&self) -> Result<Vec<(TokenHash, TokenRec)>> {
        TOKENS
            .scan(self.trees(), [])
            .map(|item| {
                let (k, rec) = item?;
                let h: TokenHash = k
                    .as_ref()
                    .try_into()
                    .map_err(|_| Error::corrupt(Object::Index("token index"), "malformed key"))?;
                Ok((h, rec))
            })
            .collect()
    }
}

/// Stores an API token record under the hash of its secret. Durable before it is acknowledged
/// whatever the store's durability: its secret is shown once, and must work.
#[derive(Debug)]
pub struct PutToken<'a> {
    /// The hash of the secret.
    pub hash: TokenHash,
    /// The record.
    pub rec: &'a TokenRec,
}

impl Mutation for PutToken<'_> {
    type Output = ();
    const ALWAYS_DURABLE: bool = true;

    fn apply(&self, ix: &IndexWriter) -> Result<()> {
        ix.transact("store token", |t| t.put(TOKENS, self.hash, self.rec))?;
        Ok(())
    }
}

/// Removes the token with this hash; true if it existed. Durable before it is acknowledged
/// whatever the store's durability: a revoked secret must stay revoked.
#[derive(Debug)]
pub struct RemoveToken(pub TokenHash);

impl Mutation for RemoveToken {
    type Output = bool;
    const ALWAYS_DURABLE: bool = true;

    fn apply(&self, ix: &IndexWriter) -> Result<bool> {
        Ok(ix
            .transact("revoke token", |t| t.remove(TOKENS, self.0))?
            .expect("no retry"))
    }
}
