//! Importing users from another system with their bcrypt hashes (claim ID-1): the hashes
//! are kept as they are and replaced by argon2id at each user's next successful sign-in.
//! The whole file is validated first and imported in one transaction, or not at all.

use serde::Deserialize;

use super::domain::Email;
use super::password::is_bcrypt;
use super::service::{Identity, IdentityError};
use super::store::ImportedUser;
use crate::access::Role;
use crate::ids::{TenantId, UserId};

/// One line of an import file (JSON Lines).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    email: String,
    bcrypt_hash: String,
    #[serde(default)]
    role: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ImportReport {
    pub imported: usize,
    /// Emails that already had an account; they were left untouched.
    pub skipped_existing: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl Identity {
    /// Imports users into `tenant` from JSON Lines text:
    /// `{"email": "…", "bcrypt_hash": "$2b$12$…", "role": "member"}` (role optional).
    pub async fn import_bcrypt_users(
        &self,
        tenant: TenantId,
        text: &str,
    ) -> Result<ImportReport, ImportError> {
        let mut users = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let fail = |reason: String| ImportError::Line { line, reason };
            let parsed: ImportLine = serde_json::from_str(raw)
                .map_err(|e| fail(format!("not a valid import line ({})", e.classify_name())))?;
            let email = Email::parse(&parsed.email).map_err(|e| fail(e.to_string()))?;
            if !is_bcrypt(&parsed.bcrypt_hash)
                || parsed.bcrypt_hash.parse::<bcrypt::HashParts>().is_err()
            {
                return Err(fail(
                    "bcrypt_hash: not a bcrypt hash ($2a$, $2b$ or $2y$)".into(),
                ));
            }
            let role = match parsed.role.as_deref() {
                None => Role::Member,
                Some(text) => Role::parse(text)
                    .filter(|role| *role != Role::Owner)
                    .ok_or_else(|| fail("role: admin, manager, member or viewer".into()))?,
            };
            users.push(ImportedUser {
                id: UserId::generate(),
                email: email.as_str().to_owned(),
                password_hash: parsed.bcrypt_hash,
                role,
            });
        }
        let event = crate::audit::AuditRecord::new(
            "users.imported",
            "success",
            self.now(),
            "cli".to_owned(),
            None,
            None,
        )
        .in_tenant(tenant)
        .on("tenant", tenant);
        let skipped = self
            .store
            .import_users(tenant, &users, &event)
            .await
            .map_err(IdentityError::from)?
            .ok_or(IdentityError::NotFound)?;
        Ok(ImportReport {
            imported: users.len() - skipped.len(),
            skipped_existing: skipped,
        })
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Data => "unknown or missing field, or wrong type",
            _ => "malformed JSON",
        }
    }
}
