//! The tokens pimgate issues to the PIM: ID tokens (OIDC Core §2) and access tokens in the
//! JWT profile of RFC 9068 (`typ: at+jwt`), both signed with the active key of
//! [`super::keys`]. They carry the user's access compactly: role and user-group `Uid`s, the
//! connection, the access model's version, and the permissions as a bitset over the
//! permission catalogue's order ([`permission_order`]), so even a user holding every
//! permission gets a token of a few hundred bytes. The full claims document is at userinfo.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::Header;
use serde::{Deserialize, Serialize};

use super::keys::{KeyError, SigningKeys};
use crate::access::catalogue;
use crate::access::claims::Claims;
use crate::access::model::AccessModel;
use crate::clock::Timestamp;

/// The `typ` of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The order permissions take in the bitset: the built-in catalogue in its published order,
/// then custom permissions by key. Built-ins never move; a custom permission added later
/// can shift only the custom ones after it, and tokens carry `configVersion` to say which
/// order they use (`/oauth/permissions` serves the current one).
pub fn permission_order(model: &AccessModel) -> Vec<String> {
    let builtin: Vec<String> = catalogue::builtin()
        .into_iter()
        .map(|p| p.key.as_str().to_owned())
        .collect();
    let mut custom: Vec<String> = model
        .permissions()
        .map(|p| p.key.as_str().to_owned())
        .filter(|k| !builtin.contains(k))
        .collect();
    custom.sort();
    let mut all = builtin;
    all.extend(custom);
    all
}

/// The permissions as base64url (no padding) of a bitset: permission `i` of
/// [`permission_order`] is bit `7 - i % 8` of byte `i / 8` (most significant bit first).
pub fn permission_bits(order: &[String], held: &std::collections::BTreeSet<String>) -> String {
    let mut bytes = vec![0u8; order.len().div_ceil(8)];
    for (i, key) in order.iter().enumerate() {
        if held.contains(key) {
            bytes[i / 8] |= 0x80 >> (i % 8);
        }
    }
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    B64.encode(bytes)
}

/// The access claims every token carries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessClaims {
    pub connection: String,
    /// PIM `Uid`s of the user's roles.
    pub roles: Vec<String>,
    /// PIM `Uid`s of the user's user groups.
    pub user_groups: Vec<String>,
    /// See [`permission_bits`].
    pub permissions: String,
    pub config_version: String,
}

impl AccessClaims {
    pub fn of(claims: &Claims, model: &AccessModel) -> Self {
        Self {
            connection: claims.connection.clone(),
            roles: claims.roles.iter().map(|r| r.id.clone()).collect(),
            user_groups: claims.user_groups.iter().map(|g| g.id.clone()).collect(),
            permissions: permission_bits(&permission_order(model), &claims.permissions),
            config_version: claims.config_version.clone(),
        }
    }
}

/// An ID token's claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub azp: String,
    /// The grant (sign-in) the token belongs to.
    pub sid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(flatten)]
    pub access: AccessClaims,
}

/// An access token's claims (RFC 9068 §2.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    /// The client the token was issued to: the PIM is the resource server it is for.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    pub sid: String,
    #[serde(flatten)]
    pub access: AccessClaims,
}

/// Seconds since the epoch.
pub fn seconds(t: Timestamp) -> i64 {
    t.0.div_euclid(1000)
}

/// Signs `claims` with the active key; `typ` goes in the header.
pub async fn sign<T: Serialize>(
    keys: &SigningKeys,
    typ: &str,
    claims: &T,
) -> Result<String, KeyError> {
    keys.with_signer(|s| {
        let mut header = Header::new(s.alg);
        header.kid = Some(s.kid.to_owned());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, s.key)
    })
    .await?
    .map_err(|e| KeyError::Generate(format!("signing failed: {e}")))
}

/// The `typ` of back-channel logout tokens (Back-Channel Logout 1.0 §2.4).
pub const LOGOUT_TOKEN_TYP: &str = "logout+jwt";

/// A back-channel logout token's claims (Back-Channel Logout 1.0 §2.4).
#[derive(Debug, Clone, Serialize)]
pub struct LogoutTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// The grant (sign-in) that ended, as its tokens named it.
    pub sid: String,
    pub events: serde_json::Value,
}

/// What an `id_token_hint` says, once its signature and issuer are checked.
#[derive(Debug, Clone, Deserialize)]
pub struct IdTokenHint {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub sid: String,
}

/// Why a presented access token is refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenRejected {
    #[error("malformed token")]
    Malformed,
    #[error("not an access token")]
    WrongType,
    #[error("signed by an unknown key")]
    UnknownKey,
    #[error("bad signature or claims: {0}")]
    Invalid(String),
    #[error("expired")]
    Expired,
    #[error("issued by someone else")]
    WrongIssuer,
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// Decodes one of pimgate's own JWTs of header `typ`: a published key (by `kid`) and its
/// signature. Expiry, audience and issuer are the caller's checks.
async fn decode_own<T: serde::de::DeserializeOwned>(
    keys: &SigningKeys,
    typ: &str,
    token: &str,
) -> Result<T, TokenRejected> {
    if token.len() > 8 * 1024 {
        return Err(TokenRejected::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejected::Malformed)?;
    if header.typ.as_deref() != Some(typ) {
        return Err(TokenRejected::WrongType);
    }
    let kid = header.kid.ok_or(TokenRejected::UnknownKey)?;
    let (alg, key) = keys
        .verifier(&kid)
        .await?
        .ok_or(TokenRejected::UnknownKey)?;
    let mut v = jsonwebtoken::Validation::new(alg);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<T>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| TokenRejected::Invalid(e.to_string()))
}

/// Verifies one of pimgate's own access tokens: header `typ`, a published key, the
/// signature, the issuer and (on the injected clock) the expiry.
pub async fn verify_access_token(
    keys: &SigningKeys,
    issuer: &str,
    token: &str,
    now: Timestamp,
) -> Result<AccessTokenClaims, TokenRejected> {
    let c: AccessTokenClaims = decode_own(keys, ACCESS_TOKEN_TYP, token).await?;
    if c.iss != issuer {
        return Err(TokenRejected::WrongIssuer);
    }
    if c.exp <= seconds(now) {
        return Err(TokenRejected::Expired);
    }
    Ok(c)
}

/// Verifies an `id_token_hint`: one of pimgate's own ID tokens, by a published key, from
/// this issuer. An expired one is still a good hint (RP-Initiated Logout 1.0 §2).
pub async fn verify_id_token_hint(
    keys: &SigningKeys,
    issuer: &str,
    token: &str,
) -> Result<IdTokenHint, TokenRejected> {
    let h: IdTokenHint = decode_own(keys, "JWT", token).await?;
    if h.iss != issuer {
        return Err(TokenRejected::WrongIssuer);
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_permission_fits_in_a_few_bytes() {
        let model = AccessModel::default();
        let order = permission_order(&model);
        let all: std::collections::BTreeSet<String> = order.iter().cloned().collect();
        let bits = permission_bits(&order, &all);
        assert!(bits.len() <= order.len().div_ceil(6) + 4, "{}", bits.len());
        let none = permission_bits(&order, &Default::default());
        assert_eq!(none, "");
        let first: std::collections::BTreeSet<String> = [order[0].clone()].into();
        assert_eq!(
            B64.decode(permission_bits(&order, &first)).unwrap(),
            vec![0x80]
        );
    }
}
