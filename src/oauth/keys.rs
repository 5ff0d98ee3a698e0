//! The keys pimgate signs its tokens with.
//!
//! Keys live in the store, so every replica signs with the same key and publishes the same
//! JWKS. Their private halves are encrypted at rest (AES-256-GCM, the key id as associated
//! data) with a key-encryption key read from `[oidc] key_encryption_key_file`; without one,
//! a key is generated on first start under `./data` and reused.
//!
//! Life of a key (every instant from the injected clock):
//! 1. **published**: in the JWKS from `created`, not signing yet, so verifiers that cache
//!    the JWKS have it before the first token signed with it (`key_publish_lead_seconds`);
//! 2. **active**: the newest key whose `signs_from` has come signs;
//! 3. **retired**: a newer key signs; still published until the last token it signed has
//!    expired (its successor's `signs_from` plus the longest token lifetime);
//! 4. then deleted.
//!
//! Rotation is a new generation: on a schedule (`key_rotation_days`), or on demand
//! (`pimgate keys rotate`). Generations are unique in the store, so replicas racing to
//! rotate make one key, not several.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::settings::SigningAlg;
use crate::clock::{Clock, Timestamp};
use crate::directory::{DirectoryError, KeyStore, SigningKeyRow};

/// Where the generated key-encryption key lives when none is configured.
pub const DEFAULT_KEK_FILE: &str = "data/key-encryption.key";
/// How long a replica serves its copy of the key set before reading the store again. Shorter
/// than the publish lead, so every replica publishes a key before any replica signs with it.
const RELOAD_EVERY_MS: u64 = 30_000;
/// Leeway for verifiers' clocks when deciding a retired key's last token has expired.
const VERIFIER_SKEW_MS: u64 = 5 * 60 * 1000;

/// Why keys could not be read, made or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key-encryption key {path}: {message}")]
    Kek { path: String, message: String },
    #[error(
        "signing key {kid} cannot be decrypted with this key-encryption key (was the key file replaced?)"
    )]
    Decrypt { kid: String },
    #[error("no signing key is active")]
    NoActiveKey,
    #[error("cannot generate a key: {0}")]
    Generate(String),
    #[error(transparent)]
    Store(#[from] DirectoryError),
}

/// The 32-byte key that encrypts private keys at rest.
pub struct Kek(LessSafeKey);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek([redacted])")
    }
}

impl Kek {
    /// Reads the key from `configured`, or from (creating it on first use) the default file.
    /// The file holds 32 bytes as base64url or hex text.
    pub fn load(configured: Option<&Path>) -> Result<(Kek, PathBuf, bool), KeyError> {
        let (path, generated) = match configured {
            Some(p) => (p.to_path_buf(), false),
            None => (PathBuf::from(DEFAULT_KEK_FILE), true),
        };
        let err = |message: String| KeyError::Kek {
            path: path.display().to_string(),
            message,
        };
        if generated && !path.exists() {
            let mut bytes = [0u8; 32];
            SystemRandom::new()
                .fill(&mut bytes)
                .map_err(|_| err("no randomness".into()))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            write_private(&path, &B64.encode(bytes)).map_err(|e| err(e.to_string()))?;
            tracing::warn!(path = %path.display(), "generated a key-encryption key for signing keys; keep this file (and back it up): without it the stored signing keys cannot be used");
        }
        let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
        let t = text.trim();
        let bytes = B64
            .decode(t)
            .ok()
            .filter(|b| b.len() == 32)
            .or_else(|| hex::decode(t).ok().filter(|b| b.len() == 32))
            .ok_or_else(|| err("must hold 32 bytes as base64url or hex text".into()))?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| err("unusable key".into()))?;
        Ok((Kek(LessSafeKey::new(key)), path, generated))
    }

    /// A key from raw bytes (tests and tools).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Kek, KeyError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| KeyError::Generate("unusable key-encryption key".into()))?;
        Ok(Kek(LessSafeKey::new(key)))
    }

    fn seal(&self, kid: &str, plain: &[u8]) -> Result<String, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KeyError::Generate("no randomness".into()))?;
        let mut buf = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut buf,
            )
            .map_err(|_| KeyError::Generate("encryption failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(B64.encode(out))
    }

    fn open(&self, kid: &str, sealed: &str) -> Result<Vec<u8>, KeyError> {
        let fail = || KeyError::Decrypt {
            kid: kid.to_owned(),
        };
        let raw = B64.decode(sealed).map_err(|_| fail())?;
        if raw.len() <= NONCE_LEN {
            return Err(fail());
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail())?;
        let mut buf = body.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| fail())?;
        Ok(plain.to_vec())
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// A freshly generated key: its stored form.
fn generate(
    alg: SigningAlg,
    kek: &Kek,
    generation: i64,
    created: Timestamp,
    signs_from: Timestamp,
) -> Result<SigningKeyRow, KeyError> {
    let rng = SystemRandom::new();
    let gen_err = |e: aws_lc_rs::error::Unspecified| KeyError::Generate(e.to_string());
    let (pkcs8, jwk_core) = match alg {
        SigningAlg::Es256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(gen_err)?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let point = pair.public_key().as_ref();
            if point.len() != 65 || point[0] != 4 {
                return Err(KeyError::Generate(
                    "unexpected P-256 public key form".into(),
                ));
            }
            let (x, y) = (B64.encode(&point[1..33]), B64.encode(&point[33..65]));
            (
                doc.as_ref().to_vec(),
                json!({"crv": "P-256", "kty": "EC", "x": x, "y": y}),
            )
        }
        SigningAlg::EdDsa => {
            let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(gen_err)?;
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let x = B64.encode(pair.public_key().as_ref());
            (
                doc.as_ref().to_vec(),
                json!({"crv": "Ed25519", "kty": "OKP", "x": x}),
            )
        }
    };
    // RFC 7638 thumbprint: SHA-256 of the required members in lexicographic order (the
    // `json!` maps above serialize with sorted keys and no whitespace).
    let kid = B64.encode(Sha256::digest(jwk_core.to_string().as_bytes()));
    let mut jwk = jwk_core;
    if let Some(o) = jwk.as_object_mut() {
        o.insert("kid".into(), json!(kid));
        o.insert("use".into(), json!("sig"));
        o.insert("alg".into(), json!(alg.as_str()));
    }
    Ok(SigningKeyRow {
        private_key: kek.seal(&kid, &pkcs8)?,
        kid,
        generation,
        alg: alg.as_str().to_owned(),
        public_jwk: jwk.to_string(),
        created,
        signs_from,
    })
}

/// What a key is doing at an instant (`pimgate keys list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, signing from `signs_from`.
    Published,
    Active,
    /// Published until the instant given.
    Retired {
        until: Timestamp,
    },
    /// Its last token has expired; removed at the next maintenance.
    Expired,
}

impl std::fmt::Display for KeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyState::Published => f.write_str("published (not signing yet)"),
            KeyState::Active => f.write_str("active (signing)"),
            KeyState::Retired { until } => {
                write!(f, "retired (published until {})", until.to_rfc3339())
            }
            KeyState::Expired => f.write_str("expired (to be removed)"),
        }
    }
}

/// One key, loaded.
struct Loaded {
    row: SigningKeyRow,
    jwk: Value,
    alg: Algorithm,
    /// `None` when the private half could not be decrypted (it cannot sign).
    signing: Option<EncodingKey>,
    verifying: Option<DecodingKey>,
}

struct KeySet {
    loaded_at: Timestamp,
    keys: Vec<Loaded>,
}

/// What a signer needs: the key id, its algorithm and the key.
pub struct Signer<'a> {
    pub kid: &'a str,
    pub alg: Algorithm,
    pub key: &'a EncodingKey,
}

/// Lifetimes and schedule of [`SigningKeys`].
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    pub alg: SigningAlg,
    pub rotation: Duration,
    pub publish_lead: Duration,
    /// The longest lifetime of a token signed by these keys.
    pub max_token_ttl: Duration,
}

/// The signing keys: read from the store, cached per replica, rotated on schedule.
#[derive(Clone)]
pub struct SigningKeys {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn KeyStore>,
    kek: Kek,
    clock: Arc<dyn Clock>,
    policy: KeyPolicy,
    set: RwLock<Arc<KeySet>>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl SigningKeys {
    pub fn new(
        store: Arc<dyn KeyStore>,
        kek: Kek,
        clock: Arc<dyn Clock>,
        policy: KeyPolicy,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                kek,
                clock,
                policy,
                set: RwLock::new(Arc::new(KeySet {
                    loaded_at: Timestamp(i64::MIN),
                    keys: Vec::new(),
                })),
            }),
        }
    }

    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    fn current(&self) -> Arc<KeySet> {
        match self.inner.set.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// When a key stops being published: its successor's start plus the longest token
    /// lifetime and a clock leeway for verifiers.
    fn retired_until(&self, successor_signs_from: Timestamp) -> Timestamp {
        successor_signs_from.plus_millis(ms(self.inner.policy.max_token_ttl) + VERIFIER_SKEW_MS)
    }

    /// Reads the keys from the store into this replica's copy.
    pub async fn reload(&self) -> Result<(), KeyError> {
        let rows = self.inner.store.signing_keys().await?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            let jwk: Value = serde_json::from_str(&row.public_jwk)
                .map_err(|_| DirectoryError::corrupt("signing key JWK"))?;
            let (alg, verifying) = match row.alg.as_str() {
                "ES256" => (
                    Algorithm::ES256,
                    DecodingKey::from_ec_components(
                        jwk["x"].as_str().unwrap_or_default(),
                        jwk["y"].as_str().unwrap_or_default(),
                    )
                    .ok(),
                ),
                "EdDSA" => (
                    Algorithm::EdDSA,
                    DecodingKey::from_ed_components(jwk["x"].as_str().unwrap_or_default()).ok(),
                ),
                other => {
                    tracing::error!(kid = %row.kid, alg = other, "stored signing key of an unknown algorithm; skipped");
                    continue;
                }
            };
            let signing = match self.inner.kek.open(&row.kid, &row.private_key) {
                Ok(der) => Some(match alg {
                    Algorithm::EdDSA => EncodingKey::from_ed_der(&der),
                    _ => EncodingKey::from_ec_der(&der),
                }),
                Err(e) => {
                    tracing::error!(error = %e, "a signing key cannot be used to sign");
                    None
                }
            };
            keys.push(Loaded {
                row,
                jwk,
                alg,
                signing,
                verifying,
            });
        }
        let set = Arc::new(KeySet {
            loaded_at: self.now(),
            keys,
        });
        match self.inner.set.write() {
            Ok(mut s) => *s = set,
            Err(p) => *p.into_inner() = set,
        }
        Ok(())
    }

    /// This replica's copy, read again from the store when it is older than
    /// [`RELOAD_EVERY_MS`].
    async fn fresh(&self) -> Result<Arc<KeySet>, KeyError> {
        let set = self.current();
        if self.now().millis_since(set.loaded_at) < RELOAD_EVERY_MS && set.loaded_at.0 != i64::MIN {
            return Ok(set);
        }
        self.reload().await?;
        Ok(self.current())
    }

    /// The state of each key at `now`, oldest first.
    fn states(&self, set: &KeySet, now: Timestamp) -> Vec<KeyState> {
        let keys = &set.keys;
        // The signer: the newest key whose start has come.
        let active = keys.iter().rposition(|k| k.row.signs_from <= now);
        keys.iter()
            .enumerate()
            .map(|(i, _)| match active {
                Some(a) if i == a => KeyState::Active,
                Some(a) if i < a => {
                    let until = self.retired_until(keys[i + 1].row.signs_from);
                    if until > now {
                        KeyState::Retired { until }
                    } else {
                        KeyState::Expired
                    }
                }
                _ => KeyState::Published,
            })
            .collect()
    }

    /// The key that signs now.
    pub async fn with_signer<T>(&self, f: impl FnOnce(Signer<'_>) -> T) -> Result<T, KeyError> {
        let set = self.fresh().await?;
        let now = self.now();
        let states = self.states(&set, now);
        let k = set
            .keys
            .iter()
            .zip(&states)
            .find(|(_, s)| **s == KeyState::Active)
            .map(|(k, _)| k)
            .ok_or(KeyError::NoActiveKey)?;
        let key = k.signing.as_ref().ok_or_else(|| KeyError::Decrypt {
            kid: k.row.kid.clone(),
        })?;
        Ok(f(Signer {
            kid: &k.row.kid,
            alg: k.alg,
            key,
        }))
    }

    /// The key that verifies tokens of key id `kid`, if it is still published.
    pub async fn verifier(&self, kid: &str) -> Result<Option<(Algorithm, DecodingKey)>, KeyError> {
        let set = self.fresh().await?;
        let now = self.now();
        let states = self.states(&set, now);
        Ok(set
            .keys
            .iter()
            .zip(&states)
            .find(|(k, s)| k.row.kid == kid && **s != KeyState::Expired)
            .and_then(|(k, _)| k.verifying.clone().map(|d| (k.alg, d))))
    }

    /// The JWKS document: every key not expired.
    pub async fn jwks(&self) -> Result<Value, KeyError> {
        let set = self.fresh().await?;
        let states = self.states(&set, self.now());
        let keys: Vec<&Value> = set
            .keys
            .iter()
            .zip(&states)
            .filter(|(_, s)| **s != KeyState::Expired)
            .map(|(k, _)| &k.jwk)
            .collect();
        Ok(json!({ "keys": keys }))
    }

    /// Every stored key with its state (`pimgate keys list`).
    pub async fn list(&self) -> Result<Vec<(SigningKeyRow, KeyState)>, KeyError> {
        self.reload().await?;
        let set = self.current();
        let states = self.states(&set, self.now());
        Ok(set.keys.iter().map(|k| k.row.clone()).zip(states).collect())
    }

    /// The scheduled step, run at start and every minute: makes the first key, the next key
    /// when rotation is due (published `key_publish_lead_seconds` before it signs), and
    /// deletes keys whose last token has expired.
    pub async fn maintain(&self) -> Result<(), KeyError> {
        self.reload().await?;
        let now = self.now();
        let set = self.current();
        let p = &self.inner.policy;
        match set.keys.last() {
            None => {
                self.insert(1, now, now).await?;
            }
            Some(newest) => {
                let due = newest
                    .row
                    .signs_from
                    .plus_millis(ms(p.rotation).saturating_sub(ms(p.publish_lead)));
                // A changed `signing_alg` rotates too, so the advertised algorithm signs soon.
                let alg_changed = newest.row.alg != p.alg.as_str();
                if newest.row.signs_from <= now && (due <= now || alg_changed) {
                    let starts = now.plus_millis(ms(p.publish_lead));
                    self.insert(newest.row.generation + 1, now, starts).await?;
                }
            }
        }
        let states = self.states(&set, now);
        let expired: Vec<String> = set
            .keys
            .iter()
            .zip(&states)
            .filter(|(_, s)| **s == KeyState::Expired)
            .map(|(k, _)| k.row.kid.clone())
            .collect();
        if !expired.is_empty() {
            self.inner.store.delete_signing_keys(&expired).await?;
            tracing::info!(keys = ?expired, "removed signing keys whose last token has expired");
        }
        self.reload().await
    }

    /// Rotation on demand: a new key, published now and signing after the publish lead, or
    /// at once with `immediately` (a key believed compromised). A key already waiting to
    /// sign is brought forward instead of making another. The kid of the next signer.
    pub async fn rotate(&self, immediately: bool) -> Result<String, KeyError> {
        self.reload().await?;
        let now = self.now();
        let set = self.current();
        let starts = if immediately {
            now
        } else {
            now.plus_millis(ms(self.inner.policy.publish_lead))
        };
        if let Some(pending) = set.keys.last().filter(|k| k.row.signs_from > now) {
            if immediately {
                self.inner
                    .store
                    .set_signs_from(&pending.row.kid, now)
                    .await?;
            }
            let kid = pending.row.kid.clone();
            self.reload().await?;
            return Ok(kid);
        }
        let generation = set.keys.last().map_or(1, |k| k.row.generation + 1);
        let kid = self.insert(generation, now, starts).await?;
        self.reload().await?;
        Ok(kid)
    }

    async fn insert(
        &self,
        generation: i64,
        created: Timestamp,
        signs_from: Timestamp,
    ) -> Result<String, KeyError> {
        let row = generate(
            self.inner.policy.alg,
            &self.inner.kek,
            generation,
            created,
            signs_from,
        )?;
        if self.inner.store.insert_signing_key(&row).await? {
            tracing::info!(kid = %row.kid, generation, signs_from = %signs_from.to_rfc3339(), "new signing key published");
        }
        Ok(row.kid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_their_kek_and_kid() {
        let kek = Kek::from_bytes(&[7u8; 32]).unwrap();
        let row = generate(SigningAlg::Es256, &kek, 1, Timestamp(0), Timestamp(0)).unwrap();
        assert!(kek.open(&row.kid, &row.private_key).is_ok());
        assert!(kek.open("another-kid", &row.private_key).is_err());
        let other = Kek::from_bytes(&[8u8; 32]).unwrap();
        assert!(other.open(&row.kid, &row.private_key).is_err());
        assert!(
            !row.public_jwk.contains("\"d\""),
            "no private part in the JWK"
        );
    }
}
