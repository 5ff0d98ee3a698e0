//! SCIM bearer tokens: generation, hashing and constant-time comparison.
//!
//! A token is 32 random bytes, shown once as `pgt_` + 64 hex digits. Only its SHA-256 is
//! kept (in the database for tokens made by `pimgate token create`, in memory for tokens
//! from config). A fast hash is the right tool here: the secret has 256 bits of entropy, so
//! there is nothing for a slow password hash to protect. Hashes are compared with
//! [`subtle::ConstantTimeEq`], so timing reveals nothing about how much of a guess matched.

use rand::RngCore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of generated tokens, so a leaked one is recognisable by secret scanners.
pub const PREFIX: &str = "pgt_";

/// SHA-256 of a presented token.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random token (`pgt_` + 64 hex digits).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{PREFIX}{}", hex::encode(bytes))
}

/// 32 random bytes as base64url without padding: codes, states, cookie values and refresh
/// tokens of sign-ins.
pub fn random_b64url() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The token of an `Authorization: Bearer <token>` header (scheme matched without regard to
/// case), if there is one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<SecretString> {
    let raw = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, rest) = raw.split_once(' ')?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty())
        .then(|| SecretString::from(token.to_owned()))
}

/// Whether `presented` equals one of `known`, in time independent of where they differ.
/// Every candidate is compared, even after a match.
pub fn matches_any(presented: &[u8; 32], known: &[[u8; 32]]) -> bool {
    let mut found = subtle::Choice::from(0u8);
    for k in known {
        found |= presented.ct_eq(k);
    }
    found.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_unique_and_prefixed() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 64);
    }

    #[test]
    fn matching_is_exact() {
        let t = generate();
        let h = hash(&t);
        assert!(matches_any(&h, &[hash("other-token-xxxxxxxx"), h]));
        assert!(!matches_any(&hash(&format!("{t}x")), &[h]));
        assert!(!matches_any(&h, &[]));
    }
}
