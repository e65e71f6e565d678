//! Invitations (claim RBAC-6): a random single-use token, stored as SHA-256, bound to an
//! email, expiring after 7 days, granting at most the inviter's role, mailed to the invitee.
//! The token names its tenant (`ten_….<secret>`), so accepting binds that tenant (row-level
//! security) before the hash is looked up; a wrong or spent token is simply not found.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::members::{guarded, Tenancy, TenancyError};
use super::store::{Acceptance, InvitationRecord, InvitedSignup, InvitedUser, NewInvitation};
use crate::access::actions::Entitlement;
use crate::access::Role;
use crate::crypto::{random_token, sha256};
use crate::identity::domain::Email;
use crate::identity::service::Origin;
use crate::identity::sessions::Principal;
use crate::ids::{InvitationId, TenantId};
use crate::mail::Mail;

const INVITATION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

impl Tenancy {
    /// Invites `email` with `role`, never above the inviter's own.
    pub async fn invite(
        &self,
        principal: &Principal,
        email: &str,
        role: Role,
        origin: &Origin,
    ) -> Result<InvitationRecord, TenancyError> {
        let email = Email::parse(email)?;
        if !principal.may_grant(role) {
            return Err(TenancyError::Forbidden(
                "an invitation grants at most the inviter's own role",
            ));
        }
        let secret = random_token();
        let token =
            SecretString::from(format!("{}.{}", principal.tenant(), secret.expose_secret()));
        let now = self.clock.now();
        let invitation = NewInvitation {
            id: InvitationId::generate(),
            scope: principal.scope(),
            email: email.as_str().to_owned(),
            role,
            token_hash: sha256(token.expose_secret().as_bytes()),
            invited_by: principal.user(),
            created_at: now,
            expires_at: now + INVITATION_LIFETIME,
        };
        let event = origin
            .event("members.invited", "success", now)
            .in_tenant(principal.tenant())
            .by(principal)
            .on("invitation", invitation.id)
            .changed("role", serde_json::Value::Null, role);
        self.store.invite(&invitation, &event).await?;
        let mail = Mail {
            to: invitation.email.clone(),
            subject: format!("You are invited to join {}", principal.tenant_name()),
            body: format!(
                "{} invites you to join {} as {}.\n\nSign in (or sign up with this address), \
                 then open:\n\n{}/accept-invitation?token={}\n\nThe invitation works once and \
                 expires in 7 days.\n",
                principal.email(),
                principal.tenant_name(),
                role.title(),
                self.link_base_url,
                token.expose_secret(),
            ),
        };
        let mailer = self.mailer.clone();
        tokio::spawn(async move {
            if let Err(error) = mailer.send(mail).await {
                tracing::warn!(%error, "invitation mail not sent");
            }
        });
        Ok(InvitationRecord {
            id: invitation.id,
            email: invitation.email,
            role,
            invited_by: principal.user(),
            created_at: now,
            expires_at: invitation.expires_at,
        })
    }

    pub async fn pending_invitations(
        &self,
        principal: &Principal,
    ) -> Result<Vec<InvitationRecord>, TenancyError> {
        Ok(self
            .store
            .pending_invitations(principal.scope(), self.clock.now())
            .await?)
    }

    pub async fn revoke_invitation(
        &self,
        principal: &Principal,
        id: InvitationId,
        origin: &Origin,
    ) -> Result<(), TenancyError> {
        let event = origin
            .event("members.invitation_revoked", "success", self.clock.now())
            .in_tenant(principal.tenant())
            .by(principal)
            .on("invitation", id);
        let may_act_on = |grant: &Entitlement| principal.may_act_on(grant);
        let outcome = self
            .store
            .revoke_invitation(principal.scope(), id, &may_act_on, &event)
            .await?;
        guarded(outcome, "the invitation grants more than you may grant")
    }

    /// Accepts an invitation addressed to the signed-in user's email; returns the tenant
    /// joined and the role held there. Switching to it is the caller's next step.
    pub async fn accept_invitation(
        &self,
        principal: &Principal,
        token: &SecretString,
        origin: &Origin,
    ) -> Result<(TenantId, Role), TenancyError> {
        if !principal.email_verified() {
            return Err(TenancyError::Forbidden(
                "verify your email address before accepting an invitation",
            ));
        }
        let text = token.expose_secret();
        let tenant = invited_tenant(text)?;
        let event = origin
            .event("members.joined", "success", self.clock.now())
            .in_tenant(tenant)
            .by(principal)
            .on("user", principal.user());
        match self
            .store
            .accept_invitation(
                tenant,
                &sha256(text.as_bytes()),
                principal.user(),
                principal.email(),
                &event,
            )
            .await?
        {
            Acceptance::Joined(role) => Ok((tenant, role)),
            Acceptance::NotFound => Err(TenancyError::NotFound),
            Acceptance::Suspended => Err(TenancyError::Suspended),
            Acceptance::AlreadyMember => {
                Err(TenancyError::Conflict("already a member of this tenant"))
            }
        }
    }

    /// Signs a person up into the tenant whose invitation they hold, and no other (no
    /// tenant of their own). The mailed token proves the address, so the account signs in
    /// at once. An address that already has an account is answered like a new one (claim
    /// ID-10) and changes nothing: its owner signs in and accepts instead.
    pub async fn sign_up_invited(
        &self,
        identity: &crate::identity::service::Identity,
        email: &str,
        password: SecretString,
        token: &SecretString,
        origin: &Origin,
    ) -> Result<(), crate::identity::service::IdentityError> {
        use crate::identity::service::IdentityError;
        let email = Email::parse(email)?;
        let password = crate::identity::domain::NewPassword::parse(password)?;
        let text = token.expose_secret();
        let tenant = invited_tenant(text).map_err(|_| IdentityError::NotFound)?;
        let password_hash = identity.passwords().hash(password.into_secret()).await?;
        let now = self.clock.now();
        let user = InvitedUser {
            id: crate::ids::UserId::generate(),
            email: email.as_str().to_owned(),
            password_hash,
            tenant,
            created_at: now,
        };
        let signed_up = origin
            .event("account.signed_up", "success", now)
            .in_tenant(tenant)
            .by(user.id)
            .on("user", user.id);
        let joined = origin
            .event("members.joined", "success", now)
            .in_tenant(tenant)
            .on("user", user.id);
        let attempt = origin
            .event("account.signup_existing_email", "refused", now)
            .on("email", email.as_str());
        let outcome = self
            .store
            .sign_up_invited(
                &user,
                &sha256(text.as_bytes()),
                [&signed_up, &joined, &attempt],
            )
            .await?;
        match outcome {
            InvitedSignup::Joined(_) | InvitedSignup::EmailTaken => Ok(()),
            InvitedSignup::NotFound => Err(IdentityError::NotFound),
            InvitedSignup::Suspended => Err(IdentityError::TenantSuspended),
        }
    }
}

/// The tenant an invitation token names (`ten_….<secret>`).
fn invited_tenant(text: &str) -> Result<TenantId, TenancyError> {
    text.split_once('.')
        .filter(|(_, secret)| secret.len() == 43)
        .and_then(|(tenant, _)| tenant.parse().ok())
        .ok_or(TenancyError::NotFound)
}
