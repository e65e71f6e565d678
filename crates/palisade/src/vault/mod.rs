//! The vault (claims SEC-1, SEC-3): a tenant's named secrets — the integration tokens and
//! OAuth tokens the app keeps for its customers — sealed under the tenant's data key, which
//! is sealed under a key-encryption key outside the database (`keys`). Reads give metadata
//! with at most the last four characters; the value leaves only through a reveal, which
//! needs its own action and a reason and is audited before the value is returned.
//! Plaintext stays in `Zeroizing`/`SecretString` buffers and never reaches a log, an error
//! or an audit event.

pub mod kek;
pub mod keys;
pub mod platform;
pub mod rotation;
pub mod routes;
pub mod store;

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::access::TenantScope;
use crate::audit::TenantActing;
use crate::clock::Clock;
use crate::identity::domain::InvalidInput;
use crate::identity::service::Origin;
use crate::ids::{SecretId, TenantId};
use crate::tenancy::members::TenancyError;
pub use keys::{Vault, VaultError};
use store::{
    DataKeyRecord, NewValue, Refused, SecretRecord, SecretStore, VersionRecord, WriteError,
};

/// The largest value a secret holds.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Values shorter than this show no hint at all: four characters of a short one are too
/// much of it.
const HINT_FROM_CHARS: usize = 16;
/// Versions one secret may reach: a bound, not a quota anyone meets.
const MAX_VERSION: u32 = 1_000_000;

/// A new secret as asked for.
pub struct NewSecret {
    pub name: String,
    pub description: Option<String>,
    pub value: SecretString,
    pub expires_at: Option<OffsetDateTime>,
}

/// What a reveal returns: the metadata, the version opened and its value.
pub struct Revealed {
    pub record: SecretRecord,
    pub version: u32,
    pub value: SecretString,
}

pub struct Secrets {
    store: Arc<dyn SecretStore>,
    vault: Arc<Vault>,
    /// Reveals are recorded through the audit log's group commit, each acknowledged
    /// (durable) before its value is returned.
    audit: crate::audit::Audit,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    #[error("a sealed value failed to open")]
    Unsealable,
    /// The tenant's data key that sealed it was destroyed (crypto-shredding).
    #[error("the key that sealed this secret was destroyed; it can no longer be read")]
    Destroyed,
}

impl From<WriteError> for SecretError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Store(error) => TenancyError::Store(error).into(),
            WriteError::Vault(VaultError::Unsealable) => SecretError::Unsealable,
        }
    }
}

impl From<crate::store::StoreError> for SecretError {
    fn from(error: crate::store::StoreError) -> Self {
        TenancyError::Store(error).into()
    }
}

impl From<InvalidInput> for SecretError {
    fn from(error: InvalidInput) -> Self {
        TenancyError::Invalid(error).into()
    }
}

fn refused(refusal: Refused) -> SecretError {
    match refusal {
        Refused::NotFound => TenancyError::NotFound.into(),
        Refused::NameTaken => {
            TenancyError::Conflict("a secret of that name exists in this tenant").into()
        }
        Refused::CurrentVersion => TenancyError::Conflict(
            "that is the current version: replace the secret first, or delete it whole",
        )
        .into(),
        Refused::TooManyVersions => TenancyError::Conflict(
            "the secret keeps 100 versions: delete old ones (DELETE …?version=N) first",
        )
        .into(),
    }
}

/// A name: 1 to 128 of `A-Z a-z 0-9 . _ - /`, starting with a letter or digit.
fn checked_name(name: &str) -> Result<&str, InvalidInput> {
    let ok = (1..=128).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    ok.then_some(name).ok_or(InvalidInput(
        "name: 1 to 128 of A-Z, a-z, 0-9, '.', '_', '-', '/', starting with a letter or digit",
    ))
}

fn checked_value(value: &SecretString) -> Result<(), InvalidInput> {
    let len = value.expose_secret().len();
    if len == 0 || len > MAX_VALUE_BYTES {
        return Err(InvalidInput("value: 1 byte to 64 KiB"));
    }
    Ok(())
}

/// The last four characters of a value long enough to spare them.
fn hint_of(value: &SecretString) -> Option<String> {
    let text = value.expose_secret();
    let count = text.chars().count();
    (count >= HINT_FROM_CHARS).then(|| text.chars().skip(count - 4).collect())
}

impl Secrets {
    pub fn new(
        store: Arc<dyn SecretStore>,
        vault: Arc<Vault>,
        audit: crate::audit::Audit,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            vault,
            audit,
            clock,
        }
    }

    /// The sealing of `value` for `secret` in `tenant`, as the store calls it.
    fn sealer<'a>(
        &'a self,
        tenant: TenantId,
        secret: SecretId,
        value: &'a SecretString,
    ) -> impl Fn(&keys::WrappedKey, u32) -> Result<Vec<u8>, VaultError> + Send + Sync + 'a {
        move |key, version| {
            if version > MAX_VERSION {
                return Err(VaultError::Unsealable);
            }
            self.vault.seal(
                tenant,
                key,
                keys::Bound::Secret { secret, version },
                value.expose_secret().as_bytes(),
            )
        }
    }

    pub async fn create(
        &self,
        actor: &TenantActing,
        request: NewSecret,
        origin: &Origin,
    ) -> Result<SecretRecord, SecretError> {
        let name = checked_name(&request.name)?;
        checked_value(&request.value)?;
        let description = crate::identity::domain::description(request.description.as_deref())?;
        let now = self.clock.now();
        let tenant = actor.tenant();
        let id = SecretId::generate();
        let hint = hint_of(&request.value);
        let record = SecretRecord {
            id,
            tenant,
            name: name.to_owned(),
            description,
            version: 1,
            hint: hint.clone(),
            expires_at: request.expires_at,
            created_by: actor.acting.id(),
            created_at: now,
            updated_at: now,
        };
        let new_key = |version| self.vault.new_data_key(tenant, version);
        let seal = self.sealer(tenant, id, &request.value);
        let value = NewValue {
            hint: hint.as_deref(),
            expires_at: request.expires_at,
            new_key: &new_key,
            seal: &seal,
            at: now,
        };
        let event = origin
            .event("secrets.created", "success", now)
            .in_tenant(tenant)
            .by(actor.acting.clone())
            .on("secret", id)
            .changed("name", None::<&str>, name);
        self.store
            .create(actor.scope, &record, value, &event)
            .await?
            .map_err(refused)?;
        Ok(record)
    }

    pub async fn list(&self, scope: TenantScope) -> Result<Vec<SecretRecord>, SecretError> {
        Ok(self.store.list(scope).await?)
    }

    pub async fn get(
        &self,
        scope: TenantScope,
        id: SecretId,
    ) -> Result<(SecretRecord, Vec<VersionRecord>), SecretError> {
        self.store
            .get(scope, id)
            .await?
            .ok_or_else(|| TenancyError::NotFound.into())
    }

    /// A new version, made current; the previous stays until it is deleted.
    pub async fn replace(
        &self,
        actor: &TenantActing,
        id: SecretId,
        value: SecretString,
        expires_at: Option<OffsetDateTime>,
        origin: &Origin,
    ) -> Result<SecretRecord, SecretError> {
        checked_value(&value)?;
        let now = self.clock.now();
        let tenant = actor.tenant();
        let hint = hint_of(&value);
        let new_key = |version| self.vault.new_data_key(tenant, version);
        let seal = self.sealer(tenant, id, &value);
        let new_value = NewValue {
            hint: hint.as_deref(),
            expires_at,
            new_key: &new_key,
            seal: &seal,
            at: now,
        };
        let event = origin
            .event("secrets.replaced", "success", now)
            .in_tenant(tenant)
            .by(actor.acting.clone())
            .on("secret", id);
        match self.store.replace(actor.scope, id, new_value, &event).await {
            Err(WriteError::Vault(_)) => {
                Err(InvalidInput("the secret has too many versions").into())
            }
            other => other?.map_err(refused),
        }
    }

    /// Deletes the secret whole, or one kept version of it.
    pub async fn delete(
        &self,
        actor: &TenantActing,
        id: SecretId,
        version: Option<u32>,
        origin: &Origin,
    ) -> Result<(), SecretError> {
        let now = self.clock.now();
        let action = if version.is_some() {
            "secrets.version_deleted"
        } else {
            "secrets.deleted"
        };
        let mut event = origin
            .event(action, "success", now)
            .in_tenant(actor.tenant())
            .by(actor.acting.clone())
            .on("secret", id);
        if let Some(version) = version {
            event = event.changed("version", version, None::<u32>);
        }
        self.store
            .delete(actor.scope, id, version, &event)
            .await?
            .map_err(refused)
    }

    /// Opens `version` (None: the current one) for the caller, recording who, why and from
    /// where — durably, before the value is returned. A value that does not open, or whose
    /// key was destroyed, reveals nothing and so records nothing.
    pub async fn reveal(
        &self,
        actor: &TenantActing,
        id: SecretId,
        version: Option<u32>,
        reason: &str,
        origin: &Origin,
    ) -> Result<Revealed, SecretError> {
        let reason = crate::identity::domain::display_name(
            reason,
            500,
            "reason: 1 to 500 characters, no control characters or surrounding spaces",
        )?;
        let tenant = actor.tenant();
        let sealed = self
            .store
            .reveal(actor.scope, id, version)
            .await?
            .ok_or(TenancyError::NotFound)?;
        let data_key = sealed.data_key.as_ref().ok_or(SecretError::Destroyed)?;
        let plaintext: Zeroizing<Vec<u8>> = self
            .vault
            .open(
                tenant,
                data_key,
                keys::Bound::Secret {
                    secret: id,
                    version: sealed.version,
                },
                &sealed.sealed,
            )
            .map_err(|_| SecretError::Unsealable)?;
        let text = std::str::from_utf8(&plaintext).map_err(|_| SecretError::Unsealable)?;
        let value = SecretString::from(text.to_owned());
        let event = origin
            .event("secrets.revealed", "success", self.clock.now())
            .in_tenant(tenant)
            .by(actor.acting.clone())
            .on("secret", id)
            .changed("reason", None::<&str>, reason)
            .changed("version", None::<u32>, sealed.version);
        self.audit.record(event).await?;
        Ok(Revealed {
            record: sealed.record,
            version: sealed.version,
            value,
        })
    }

    /// Gives the tenant a new data key (SEC-2): values written from now on are sealed by it;
    /// upkeep seals the older ones again under it, then deletes the keys it superseded.
    /// Every value opens throughout. The tenant's keys after it, newest first.
    pub async fn rotate_data_key(
        &self,
        actor: &TenantActing,
        origin: &Origin,
    ) -> Result<Vec<DataKeyRecord>, SecretError> {
        let tenant = actor.tenant();
        let now = self.clock.now();
        let new_key = |version| self.vault.new_data_key(tenant, version);
        let event = origin
            .event("vault.data_key_rotated", "success", now)
            .in_tenant(tenant)
            .by(actor.acting.clone())
            .on("tenant", tenant);
        self.store
            .rotate_data_key(actor.scope, &new_key, now, &event)
            .await?;
        self.data_keys(actor.scope).await
    }

    /// The tenant's data keys, newest first, with how many values each seals.
    pub async fn data_keys(&self, scope: TenantScope) -> Result<Vec<DataKeyRecord>, SecretError> {
        Ok(self.store.data_keys(scope).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_hints_and_values_are_bounded() {
        for good in ["stripe", "STRIPE_KEY", "slack/acme.bot-token", "a"] {
            assert!(checked_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "has space", "é", &"a".repeat(129), "x\n"] {
            assert!(checked_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(hint_of(&SecretString::from("short")), None);
        assert_eq!(
            hint_of(&SecretString::from("xoxb-0123456789-abcd")).as_deref(),
            Some("abcd")
        );
        assert!(checked_value(&SecretString::from(String::new())).is_err());
        assert!(checked_value(&SecretString::from("x".repeat(MAX_VALUE_BYTES + 1))).is_err());
        assert!(checked_value(&SecretString::from("x".repeat(MAX_VALUE_BYTES))).is_ok());
    }
}
