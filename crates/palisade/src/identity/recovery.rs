//! Email verification and password reset (claim ID-11): random single-use tokens, stored
//! as SHA-256 only, expiring (reset 30 min, verification 24 h). Requests answer at once and
//! do their lookup and mailing in the background, so a known and an unknown email cost the
//! caller the same time (claim ID-10).

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::domain::{Email, NewPassword};
use super::service::{Identity, IdentityError, Origin};
use super::store::{EmailPurpose, IdentityStore};
use crate::audit::AuditRecord;
use crate::crypto::{random_token, sha256};
use crate::ids::UserId;
use crate::mail::{Mail, Mailer};

/// Links of one kind mailed to one account per 15 minutes, at most.
const MAILS_PER_QUARTER_HOUR: usize = 3;

/// Everything a background mailing needs, detached from the request.
struct Dispatch {
    audit: crate::audit::Audit,
    store: Arc<dyn IdentityStore>,
    /// Serialises this process's count-then-issue, so parallel requests cannot all pass
    /// the ration.
    gate: Arc<tokio::sync::Mutex<()>>,
    mailer: Arc<Mailer>,
    now: time::OffsetDateTime,
    link_base_url: String,
}

impl Dispatch {
    /// Issues and mails a link; `event` (the request's, in the platform stream: the asker
    /// is not proven to be the user) is written with the token, or with why none was.
    async fn send(
        self,
        user: UserId,
        to: String,
        purpose: EmailPurpose,
        ttl: Duration,
        event: AuditRecord,
    ) -> Result<(), String> {
        // Nobody can make us mail-bomb an address: a few links per quarter hour at most.
        let gate = self.gate.lock().await;
        let recent = self
            .store
            .recent_email_tokens(user, purpose)
            .await
            .map_err(|e| e.to_string())?;
        let window = self.now - Duration::from_secs(15 * 60);
        if recent.iter().filter(|at| **at > window).count() >= MAILS_PER_QUARTER_HOUR {
            tracing::info!("mail not sent: too many links asked for this account recently");
            return self.note(event, "rationed").await;
        }
        let token = random_token();
        let hash = sha256(token.expose_secret().as_bytes());
        let event = AuditRecord {
            outcome: "mailed",
            ..event
        };
        self.store
            .issue_email_token(user, purpose, &hash, self.now, self.now + ttl, &event)
            .await
            .map_err(|e| e.to_string())?;
        drop(gate);
        let (subject, path, action, lifetime) = match purpose {
            EmailPurpose::VerifyEmail => (
                "Confirm your email address",
                "verify-email",
                "confirm your email address",
                "24 hours",
            ),
            EmailPurpose::ResetPassword => (
                "Reset your password",
                "reset-password",
                "choose a new password",
                "30 minutes",
            ),
        };
        let minutes = ttl.as_secs() / 60;
        let body = format!(
            "Open this link to {action}:\n\n{}/{path}?token={}\n\nThe link works once and \
             expires in {}. If you did not ask for it, ignore this mail.\n",
            self.link_base_url,
            token.expose_secret(),
            if minutes == 30 || minutes == 24 * 60 {
                lifetime.to_owned()
            } else {
                format!("{minutes} minutes")
            },
        );
        self.mailer
            .send(Mail {
                to,
                subject: subject.to_owned(),
                body,
            })
            .await
            .map_err(|e| e.to_string())
    }
}

impl Dispatch {
    /// Records a request that issued nothing.
    async fn note(&self, event: AuditRecord, outcome: &'static str) -> Result<(), String> {
        self.audit
            .record(AuditRecord { outcome, ..event })
            .await
            .map_err(|e| e.to_string())
    }
}

/// The audit action of a mail request.
fn requested(purpose: EmailPurpose) -> &'static str {
    match purpose {
        EmailPurpose::VerifyEmail => "account.verification_requested",
        EmailPurpose::ResetPassword => "account.password_reset_requested",
    }
}

impl Identity {
    fn dispatch(&self) -> Dispatch {
        Dispatch {
            audit: self.audit.clone(),
            store: self.store.clone(),
            gate: self.mail_gate.clone(),
            mailer: self.mailer.clone(),
            now: self.now(),
            link_base_url: self.link_base_url.clone(),
        }
    }

    /// Mails a verification link in the background; failures are logged.
    pub(super) fn send_verification(&self, user: UserId, to: String, origin: &Origin) {
        let dispatch = self.dispatch();
        let ttl = Duration::from_secs(self.settings.verification_token_ttl_secs);
        let event = origin
            .event(requested(EmailPurpose::VerifyEmail), "mailed", dispatch.now)
            .by(user)
            .on("user", user);
        tokio::spawn(async move {
            if let Err(error) = dispatch
                .send(user, to, EmailPurpose::VerifyEmail, ttl, event)
                .await
            {
                tracing::warn!(%error, "verification mail not sent");
            }
        });
    }

    /// Asks for a new verification link. The answer never depends on the email.
    pub fn request_verification(&self, email: &str, origin: &Origin) -> Result<(), IdentityError> {
        let email = Email::parse(email)?;
        self.in_background(email, EmailPurpose::VerifyEmail, origin);
        Ok(())
    }

    /// Asks for a password-reset link. The answer never depends on the email.
    pub fn request_password_reset(
        &self,
        email: &str,
        origin: &Origin,
    ) -> Result<(), IdentityError> {
        let email = Email::parse(email)?;
        self.in_background(email, EmailPurpose::ResetPassword, origin);
        Ok(())
    }

    /// Looks the email up and mails in the background; every request is audited in the
    /// platform stream, whatever became of it.
    fn in_background(&self, email: Email, purpose: EmailPurpose, origin: &Origin) {
        let dispatch = self.dispatch();
        let event = origin
            .event(requested(purpose), "unknown_email", dispatch.now)
            .on("email", email.as_str());
        let ttl = Duration::from_secs(match purpose {
            EmailPurpose::VerifyEmail => self.settings.verification_token_ttl_secs,
            EmailPurpose::ResetPassword => self.settings.reset_token_ttl_secs,
        });
        tokio::spawn(async move {
            let outcome = match dispatch.store.user_by_email(email.as_str()).await {
                Ok(None) => dispatch.note(event, "unknown_email").await,
                Ok(Some(user))
                    if purpose == EmailPurpose::VerifyEmail && user.email_verified_at.is_some() =>
                {
                    dispatch.note(event, "already_verified").await
                }
                Ok(Some(user)) => {
                    dispatch
                        .send(user.id, user.email, purpose, ttl, event)
                        .await
                }
                Err(error) => Err(format!("user lookup failed: {error}")),
            };
            if let Err(error) = outcome {
                tracing::warn!(%error, "mail request not completed");
            }
        });
    }

    pub async fn verify_email(
        &self,
        token: &SecretString,
        origin: &Origin,
    ) -> Result<(), IdentityError> {
        let hash = token_hash(token)?;
        let now = self.now();
        let user = self
            .store
            .email_token_user(&hash, EmailPurpose::VerifyEmail, now)
            .await?
            .ok_or(IdentityError::InvalidToken)?;
        let event = origin
            .event("account.email_verified", "success", now)
            .by(user)
            .on("user", user);
        if self.store.verify_email(&hash, &event).await? {
            self.principals.changed();
            Ok(())
        } else {
            Err(IdentityError::InvalidToken)
        }
    }

    /// Sets a new password from a reset link; every session and token of the user ends.
    pub async fn reset_password(
        &self,
        token: &SecretString,
        password: SecretString,
        origin: &Origin,
    ) -> Result<(), IdentityError> {
        let hash = token_hash(token)?;
        let password = NewPassword::parse(password)?;
        let user = self
            .store
            .email_token_user(&hash, EmailPurpose::ResetPassword, self.now())
            .await?
            .ok_or(IdentityError::InvalidToken)?;
        let new_hash = self.passwords.hash(password.into_secret()).await?;
        // Hashing took a while: the link must still be live now.
        if self
            .store
            .email_token_user(&hash, EmailPurpose::ResetPassword, self.now())
            .await?
            != Some(user)
        {
            return Err(IdentityError::InvalidToken);
        }
        let event = origin
            .event("account.password_reset", "success", self.now())
            .by(user)
            .on("user", user);
        if self
            .store
            .replace_password(user, &new_hash, Some(&hash), &event)
            .await?
        {
            self.principals.changed();
            Ok(())
        } else {
            Err(IdentityError::InvalidToken)
        }
    }
}

/// A token of the shape we issue, hashed for lookup; anything else is refused unread.
pub(super) fn token_hash(token: &SecretString) -> Result<[u8; 32], IdentityError> {
    let text = token.expose_secret();
    let shaped = text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if shaped {
        Ok(sha256(text.as_bytes()))
    } else {
        Err(IdentityError::InvalidToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    proptest! {
        /// Refresh, verification, reset and invitation tokens are 32 random bytes in
        /// base64url: only that shape is ever hashed and looked up.
        #[test]
        fn only_43_base64url_characters_are_a_token(
            text in proptest::collection::vec(any::<char>(), 0..80),
        ) {
            let text: String = text.into_iter().collect();
            let shaped = text.len() == 43 && text.bytes().all(|b| BASE64URL.contains(&b));
            prop_assert_eq!(token_hash(&SecretString::from(text)).is_ok(), shaped);
        }

        #[test]
        fn every_issued_token_has_that_shape(_round in 0u8..16) {
            prop_assert!(token_hash(&crate::crypto::random_token()).is_ok());
        }
    }
}
