//! Identity's domain logic, free of HTTP: what signing up means.

use secrecy::SecretString;

use super::domain::{Email, InvalidInput, NewPassword, TenantName};
use super::password::{HashError, PasswordHasher};
use super::store::{IdentityStore, NewAccount, SignupOutcome};
use crate::audit::AuditRecord;
use crate::clock::Clock;
use crate::ids::{TenantId, UserId};
use crate::store::StoreError;

/// Where a request came from, for the audit record.
pub struct Origin {
    pub request_id: String,
    pub ip: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
}

pub struct SignupInput {
    pub email: String,
    pub password: SecretString,
    pub tenant_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a user and a new tenant with that user as Owner.
///
/// The outcome is deliberately not returned to the caller's client: an existing email and
/// a new one must look the same (claim ID-10), so the hash is computed in both cases.
#[tracing::instrument(skip_all)]
pub async fn sign_up(
    store: &dyn IdentityStore,
    hasher: &PasswordHasher,
    clock: &dyn Clock,
    input: SignupInput,
    origin: Origin,
) -> Result<SignupOutcome, SignupError> {
    let email = Email::parse(&input.email)?;
    let tenant_name = TenantName::parse(&input.tenant_name)?;
    let password = NewPassword::parse(input.password)?;
    let password_hash = hasher.hash(password.into_secret()).await?;
    let now = clock.now();
    let account = NewAccount {
        user_id: UserId::generate(),
        email: email.as_str().to_owned(),
        password_hash,
        tenant_id: TenantId::generate(),
        tenant_name: tenant_name.as_str().to_owned(),
        created_at: now,
    };
    let event = AuditRecord {
        tenant_id: account.tenant_id,
        actor_user_id: Some(account.user_id),
        action: "account.signed_up",
        target_type: "user",
        target_id: account.user_id.to_string(),
        outcome: "success",
        ip: origin.ip,
        user_agent: origin.user_agent,
        request_id: origin.request_id,
        occurred_at: now,
    };
    let outcome = store.create_account(&account, &event).await?;
    if outcome == SignupOutcome::EmailTaken {
        tracing::info!("sign-up for an existing email; nothing written");
    }
    Ok(outcome)
}
