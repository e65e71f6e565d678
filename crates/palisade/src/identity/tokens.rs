//! Access tokens (claims ID-3, ID-8): EdDSA JWTs signed with keys that carry ids, rotate on
//! a schedule and on demand, are sealed at rest by the platform's data key (`vault::platform`), and stay published in
//! the JWKS until every token they signed has expired.
//!
//! Several instances share the keys through the database: each reloads them every minute,
//! and at once (at most once a second) when a token names a key it does not know.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::store::{IdentityStore, StoredSigningKey};
use crate::config::AuthSettings;
use crate::crypto;
#[cfg(test)]
use crate::crypto::SealingKey;
use crate::ids::{SessionId, TenantId, UserId};
use crate::store::StoreError;
use crate::vault::platform::PlatformSealer;

/// How far a verifier's clock may run behind ours; a retired key stays published this much
/// longer than the tokens it signed live.
const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// An unknown key id triggers at most one reload from the database per this interval.
const RELOAD_GATE: Duration = Duration::from_secs(1);

/// The claims of an access token (RFC 9068 names where they exist).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: UserId,
    /// The tenant the token acts in (claim TEN-1).
    pub tid: TenantId,
    /// The member's role when the token was issued; requests read the current one.
    pub role: String,
    pub sid: SessionId,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// The session's tenant switches when issued: a token from before a switch never
    /// comes back after switching back, however quickly (claim TEN-1). Absent: none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tsw: i64,
    /// How the session was authenticated (RFC 8176): `pwd`, and `mfa` once a second factor
    /// was verified.
    #[serde(default)]
    pub amr: Vec<String>,
    /// The custom role the member held when the token was issued, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_role: Option<String>,
    /// The app role (of the manifest) the member held when the token was issued, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_role: Option<String>,
}

fn is_zero(count: &i64) -> bool {
    *count == 0
}

/// What a caller needs to issue a token: the session's principal as it is now.
pub struct TokenSubject<'a> {
    pub user: UserId,
    pub tenant: TenantId,
    pub role: &'static str,
    pub session: SessionId,
    pub tenant_switches: i64,
    pub mfa: bool,
    pub custom_role: Option<crate::ids::CustomRoleId>,
    pub app_role: Option<&'a str>,
}

impl<'a> TokenSubject<'a> {
    pub fn of(record: &'a super::store::PrincipalRecord) -> Self {
        Self {
            user: record.user,
            tenant: record.tenant,
            role: record.role.as_str(),
            session: record.session,
            tenant_switches: record.tenant_switches,
            mfa: record.mfa,
            custom_role: record.custom_role,
            app_role: record.held.app_role(),
        }
    }
}

pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Malformed, badly signed, expired, or from an unknown key: the caller is not
    /// authenticated. The reason is for logs only.
    #[error("access token refused: {0}")]
    Refused(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing keys: {0}")]
    Keys(String),
}

/// Why a token did not verify against the keys in memory: an unknown key may be one
/// another instance has just created.
enum Unverified {
    UnknownKey,
    Refused(&'static str),
}

impl Unverified {
    fn into_refusal(self) -> TokenError {
        match self {
            Self::UnknownKey => TokenError::Refused("unknown key"),
            Self::Refused(reason) => TokenError::Refused(reason),
        }
    }
}

struct LoadedKey {
    kid: String,
    public_key: Vec<u8>,
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    created_at: OffsetDateTime,
    retired_at: Option<OffsetDateTime>,
}

#[derive(Default)]
struct KeySet {
    keys: Vec<Arc<LoadedKey>>,
}

impl KeySet {
    fn active(&self) -> Option<&Arc<LoadedKey>> {
        self.keys
            .iter()
            .filter(|k| k.retired_at.is_none() && k.encoding.is_some())
            .max_by_key(|k| k.created_at)
    }

    fn published<'a>(
        &'a self,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> impl Iterator<Item = &'a Arc<LoadedKey>> + 'a {
        self.keys.iter().filter(move |k| match k.retired_at {
            None => true,
            Some(retired) => now < retired + ttl + CLOCK_SKEW,
        })
    }
}

/// Tokens whose signature and claims were verified, until they expire: a signature check
/// costs more than the rest of a request. Revocation is checked per request regardless.
const VERIFIED_CACHE_CAPACITY: usize = 16_384;

pub struct AccessTokens {
    verified: Mutex<HashMap<Box<str>, AccessClaims>>,
    sealer: Arc<PlatformSealer>,
    issuer: String,
    audience: String,
    ttl: Duration,
    rotation: Duration,
    keys: RwLock<Arc<KeySet>>,
    /// When (by the injected clock) a token naming an unknown key last made us reload.
    last_forced_reload: Mutex<Option<OffsetDateTime>>,
    validation: Validation,
}

impl AccessTokens {
    /// Loads the keys, creating the first one (or rotating an overdue one).
    pub async fn start(
        store: &dyn IdentityStore,
        sealer: Arc<PlatformSealer>,
        settings: &AuthSettings,
        now: OffsetDateTime,
    ) -> Result<Self, TokenError> {
        let tokens = Self::without_keys(sealer, settings);
        tokens.maintain(store, now).await?;
        Ok(tokens)
    }

    fn without_keys(sealer: Arc<PlatformSealer>, settings: &AuthSettings) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        // Expiry is checked against the injected clock, below.
        validation.validate_exp = false;
        validation.required_spec_claims = ["iss", "aud", "sub", "exp", "iat"]
            .into_iter()
            .map(String::from)
            .collect();
        Self {
            verified: Mutex::new(HashMap::new()),
            sealer,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            ttl: settings.access_token_ttl(),
            rotation: Duration::from_secs(u64::from(settings.signing_key_rotation_days) * 86_400),
            keys: RwLock::new(Arc::default()),
            last_forced_reload: Mutex::new(None),
            validation,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Reloads the keys and rotates when the active one is older than the schedule allows.
    pub async fn maintain(
        &self,
        store: &dyn IdentityStore,
        now: OffsetDateTime,
    ) -> Result<(), TokenError> {
        self.reload(store).await?;
        let due = match self.current().active() {
            None => true,
            Some(active) => now - active.created_at >= self.rotation,
        };
        if due {
            self.rotate(store, now).await?;
        }
        Ok(())
    }

    /// Creates a new signing key and retires the previous one, which stays published until
    /// the tokens it signed have expired. Returns the new key id.
    pub async fn rotate(
        &self,
        store: &dyn IdentityStore,
        now: OffsetDateTime,
    ) -> Result<String, TokenError> {
        let key = generate_key(&self.sealer, now)?;
        let kid = key.kid.clone();
        store.add_signing_key(&key).await?;
        self.reload(store).await?;
        tracing::info!(kid = %kid, "signing key rotated");
        Ok(kid)
    }

    async fn reload(&self, store: &dyn IdentityStore) -> Result<(), TokenError> {
        let stored = store.signing_keys().await?;
        let mut keys = Vec::with_capacity(stored.len());
        for key in stored {
            keys.push(Arc::new(self.load(key)?));
        }
        *self.keys.write().expect("key set lock") = Arc::new(KeySet { keys });
        Ok(())
    }

    fn load(&self, key: StoredSigningKey) -> Result<LoadedKey, TokenError> {
        // A retired key never signs again: its private half is not even opened.
        let encoding = match key.retired_at {
            Some(_) => None,
            None => {
                let private = self
                    .sealer
                    .open(&key.sealed_private_key, &seal_purpose(&key.kid))
                    .map_err(|e| TokenError::Keys(format!("key {}: {e}", key.kid)))?;
                Some(EncodingKey::from_ed_der(&private))
            }
        };
        Ok(LoadedKey {
            decoding: DecodingKey::from_ed_der(&key.public_key),
            kid: key.kid,
            public_key: key.public_key,
            encoding,
            created_at: key.created_at,
            retired_at: key.retired_at,
        })
    }

    fn current(&self) -> Arc<KeySet> {
        self.keys.read().expect("key set lock").clone()
    }

    pub fn issue(
        &self,
        subject: &TokenSubject,
        now: OffsetDateTime,
    ) -> Result<IssuedToken, TokenError> {
        let keys = self.current();
        let active = keys
            .active()
            .ok_or_else(|| TokenError::Keys("no active signing key".into()))?;
        let iat = now.unix_timestamp();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.user,
            tid: subject.tenant,
            role: subject.role.to_owned(),
            sid: subject.session,
            iat,
            exp: iat + self.ttl.as_secs() as i64,
            jti: crypto::base64url(&crypto::random_bytes::<16>()),
            tsw: subject.tenant_switches,
            amr: if subject.mfa {
                vec!["pwd".to_owned(), "mfa".to_owned()]
            } else {
                vec!["pwd".to_owned()]
            },
            custom_role: subject.custom_role.map(|id| id.to_string()),
            app_role: subject.app_role.map(str::to_owned),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(active.kid.clone());
        header.typ = Some("at+jwt".to_owned());
        let encoding = active.encoding.as_ref().expect("the active key can sign");
        let token = jsonwebtoken::encode(&header, &claims, encoding)
            .map_err(|e| TokenError::Keys(e.to_string()))?;
        Ok(IssuedToken {
            token,
            expires_in: self.ttl.as_secs(),
        })
    }

    /// Checks signature, issuer, audience and expiry. Revocation (sessions, revoke-all) is
    /// the caller's next step, against the database.
    pub async fn verify(
        &self,
        token: &str,
        store: &dyn IdentityStore,
        now: OffsetDateTime,
    ) -> Result<AccessClaims, TokenError> {
        if token.len() > 4096 {
            return Err(TokenError::Refused("too long"));
        }
        let cached = self
            .verified
            .lock()
            .expect("cache lock")
            .get(token)
            .cloned();
        if let Some(claims) = cached {
            return check_times(claims, now);
        }
        let claims = self.verify_signature(token, store, now).await?;
        let claims = check_times(claims, now)?;
        let mut verified = self.verified.lock().expect("cache lock");
        if verified.len() >= VERIFIED_CACHE_CAPACITY {
            let now = now.unix_timestamp();
            verified.retain(|_, claims| claims.exp > now);
            if verified.len() >= VERIFIED_CACHE_CAPACITY {
                verified.clear();
            }
        }
        verified.insert(token.into(), claims.clone());
        Ok(claims)
    }

    async fn verify_signature(
        &self,
        token: &str,
        store: &dyn IdentityStore,
        now: OffsetDateTime,
    ) -> Result<AccessClaims, TokenError> {
        match self.verify_with_loaded_keys(token, now) {
            Err(Unverified::UnknownKey) if self.may_reload(now) => {
                self.reload(store).await?;
                self.verify_with_loaded_keys(token, now)
                    .map_err(Unverified::into_refusal)
            }
            verdict => verdict.map_err(Unverified::into_refusal),
        }
    }

    /// Header, key id, signature, issuer and audience, against the keys already loaded.
    fn verify_with_loaded_keys(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<AccessClaims, Unverified> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| Unverified::Refused("malformed"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(Unverified::Refused("algorithm"));
        }
        let kid = header.kid.ok_or(Unverified::Refused("no key id"))?;
        let key = self
            .published_key(&kid, now)
            .ok_or(Unverified::UnknownKey)?;
        jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| Unverified::Refused("signature or claims"))
    }

    fn published_key(&self, kid: &str, now: OffsetDateTime) -> Option<Arc<LoadedKey>> {
        self.current()
            .published(now, self.ttl)
            .find(|k| k.kid == kid)
            .cloned()
    }

    fn may_reload(&self, now: OffsetDateTime) -> bool {
        let mut last = self.last_forced_reload.lock().expect("reload lock");
        match *last {
            Some(at) if now >= at && now - at < RELOAD_GATE => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }

    /// The signing key's id and when it was made (the posture report's ID-8).
    pub fn signing_key(&self) -> Option<(String, OffsetDateTime)> {
        let keys = self.current();
        keys.active().map(|k| (k.kid.clone(), k.created_at))
    }

    /// How often the signing key is replaced.
    pub fn rotation(&self) -> Duration {
        self.rotation
    }

    /// The JWKS document (RFC 7517): every published key, the signing one first.
    pub fn jwks(&self, now: OffsetDateTime) -> serde_json::Value {
        let keys = self.current();
        let mut published: Vec<_> = keys.published(now, self.ttl).collect();
        // The signing key first, then the others newest first.
        published.sort_by_key(|k| std::cmp::Reverse((k.retired_at.is_none(), k.created_at)));
        let keys: Vec<_> = published
            .into_iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": crypto::base64url(&k.public_key),
                    "kid": k.kid,
                    "alg": "EdDSA",
                    "use": "sig",
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

fn check_times(claims: AccessClaims, now: OffsetDateTime) -> Result<AccessClaims, TokenError> {
    let now = now.unix_timestamp();
    if claims.exp <= now {
        Err(TokenError::Refused("expired"))
    } else if claims.iat > now + CLOCK_SKEW.as_secs() as i64 {
        Err(TokenError::Refused("issued in the future"))
    } else {
        Ok(claims)
    }
}

pub(super) fn seal_purpose(kid: &str) -> Vec<u8> {
    format!("signing-key:{kid}").into_bytes()
}

fn generate_key(
    sealer: &PlatformSealer,
    now: OffsetDateTime,
) -> Result<StoredSigningKey, TokenError> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| TokenError::Keys("Ed25519 key generation failed".into()))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| TokenError::Keys("Ed25519 key generation failed".into()))?;
    let kid = crypto::base64url(&crypto::random_bytes::<12>());
    let sealed = sealer.seal(pkcs8.as_ref(), &seal_purpose(&kid));
    Ok(StoredSigningKey {
        public_key: pair.public_key().as_ref().to_vec(),
        sealed_private_key: sealed,
        kid,
        created_at: now,
        retired_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tokens_with_a_key(now: OffsetDateTime) -> (AccessTokens, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let key = SealingKey::from_bytes(&crypto::random_bytes::<32>()).unwrap();
        let sealer = Arc::new(PlatformSealer::from_key(key, None));
        let tokens = AccessTokens::without_keys(sealer, &AuthSettings::default());
        let key = tokens
            .load(generate_key(&tokens.sealer, now).unwrap())
            .unwrap();
        *tokens.keys.write().unwrap() = Arc::new(KeySet {
            keys: vec![Arc::new(key)],
        });
        (tokens, dir)
    }

    fn subject() -> TokenSubject<'static> {
        TokenSubject {
            user: UserId::generate(),
            tenant: TenantId::generate(),
            role: "member",
            session: SessionId::generate(),
            tenant_switches: 0,
            mfa: false,
            custom_role: None,
            app_role: None,
        }
    }

    const NOW: i64 = 1_800_000_000;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW).unwrap()
    }

    proptest! {
        // claim: ID-3
        #[test]
        fn any_one_character_changed_in_a_token_is_refused(
            at in 0usize..1000,
            replacement in proptest::char::range('!', '~'),
        ) {
            let (tokens, _dir) = tokens_with_a_key(now());
            let token = tokens.issue(&subject(), now()).unwrap().token;
            let position = at % token.len();
            let original = token.as_bytes()[position] as char;
            prop_assume!(replacement != original);
            let mut changed = token.clone();
            changed.replace_range(position..=position, &replacement.to_string());
            prop_assert!(tokens.verify_with_loaded_keys(&token, now()).is_ok());
            prop_assert!(tokens.verify_with_loaded_keys(&changed, now()).is_err());
        }

        // claim: ID-3
        #[test]
        fn a_claim_rewritten_under_the_old_signature_is_refused(
            role in proptest::collection::vec(proptest::char::range('a', 'z'), 1..12),
            shift in 1i64..100_000,
        ) {
            use base64::Engine;
            let role: String = role.into_iter().collect();
            let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let (tokens, _dir) = tokens_with_a_key(now());
            let token = tokens.issue(&subject(), now()).unwrap().token;
            let parts: Vec<&str> = token.split('.').collect();
            let mut claims: serde_json::Value =
                serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
            let rewrites = [
                ("role", serde_json::json!(role)),
                ("exp", serde_json::json!(NOW + shift)),
                ("tid", serde_json::json!(TenantId::generate())),
            ];
            for (claim, value) in rewrites {
                let original = claims[claim].clone();
                prop_assume!(original != value);
                claims[claim] = value;
                let forged = format!(
                    "{}.{}.{}",
                    parts[0],
                    engine.encode(serde_json::to_vec(&claims).unwrap()),
                    parts[2]
                );
                prop_assert!(tokens.verify_with_loaded_keys(&forged, now()).is_err(), "{claim}");
                claims[claim] = original;
            }
        }

        // claim: ID-3
        #[test]
        fn expiry_and_issue_time_are_judged_by_the_injected_clock(
            iat in NOW - 10_000..NOW + 10_000,
            lifetime in -1_000i64..10_000,
            now in NOW - 10_000..NOW + 10_000,
        ) {
            let claims = AccessClaims {
                iss: "i".into(),
                aud: "a".into(),
                sub: UserId::generate(),
                tid: TenantId::generate(),
                role: "member".into(),
                sid: SessionId::generate(),
                iat,
                exp: iat + lifetime,
                jti: "j".into(),
                tsw: 0,
                amr: vec!["pwd".into()],
                custom_role: None,
                app_role: None,
            };
            let accepted = check_times(claims, OffsetDateTime::from_unix_timestamp(now).unwrap()).is_ok();
            let skew = CLOCK_SKEW.as_secs() as i64;
            prop_assert_eq!(accepted, iat + lifetime > now && iat <= now + skew);
        }

        /// Text that is not a token, or a token's pieces shuffled, never panics the verifier.
        #[test]
        fn arbitrary_text_is_refused_without_a_panic(
            text in proptest::collection::vec(any::<char>(), 0..300),
        ) {
            let (tokens, _dir) = tokens_with_a_key(now());
            let text: String = text.into_iter().collect();
            prop_assert!(tokens.verify_with_loaded_keys(&text, now()).is_err());
        }
    }
}
