//! One connection's upstream IdP settings, as validated from `[connections.NAME.sso]` (the
//! validation lives with the rest of the single-sign-on settings in
//! [`crate::oauth::settings`]).

use secrecy::SecretString;

use crate::connections::ConnectionId;

/// Which SCIM attribute the IdP's subject claim is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchAttribute {
    ExternalId,
    UserName,
}

impl MatchAttribute {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchAttribute::ExternalId => "externalId",
            MatchAttribute::UserName => "userName",
        }
    }
}

/// What happens to a person the IdP knows but SCIM never provisioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unprovisioned {
    Deny,
    Create,
}

/// One connection's upstream IdP, validated.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub connection: ConnectionId,
    /// As configured, without a trailing `/`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    /// Always with `openid`.
    pub scopes: Vec<String>,
    pub subject_claim: String,
    pub match_attribute: MatchAttribute,
    pub unprovisioned: Unprovisioned,
    pub groups_claim: String,
    /// Lowercase.
    pub domains: Vec<String>,
    pub tenants: Vec<String>,
    /// `{public_url}/sso/NAME/callback`.
    pub redirect_uri: String,
}
