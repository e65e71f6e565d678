//! Outgoing mail (claim ID-13): through SMTP when `mail.smtp_url` is set, else into an
//! outbox directory in the data directory, one `.eml` file per message, owner-only, for an
//! operator to read. Mails carry secrets (verification and reset links), so their bodies
//! are never logged.

use std::io::Write;
use std::path::PathBuf;

use lettre::message::{header::ContentType, Mailbox};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::config::Settings;

/// One message to one recipient. The body is plain text.
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail settings: {0}")]
    Settings(String),
    #[error("the message could not be built: {0}")]
    Build(String),
    #[error("SMTP delivery failed: {0}")]
    Smtp(String),
    #[error("the outbox could not be written: {0}")]
    Outbox(String),
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(PathBuf),
}

pub struct Mailer {
    from: Mailbox,
    transport: Transport,
}

impl Mailer {
    pub fn from_settings(settings: &Settings) -> Result<Self, MailError> {
        let from = settings
            .mail
            .from
            .parse::<Mailbox>()
            .map_err(|e| MailError::Settings(format!("mail.from: {e}")))?;
        let transport = match &settings.mail.smtp_url {
            Some(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    // lettre's errors may quote the URL and its password: say only that.
                    .map_err(|_| MailError::Settings("mail.smtp_url cannot be parsed".into()))?
                    .timeout(Some(std::time::Duration::from_secs(10)))
                    .build(),
            ),
            None => Transport::Outbox(settings.data_dir.join("outbox")),
        };
        Ok(Self { from, transport })
    }

    /// Where mail goes, for start-up logs and the posture report.
    pub fn describe(&self) -> String {
        match &self.transport {
            Transport::Smtp(_) => "SMTP".to_owned(),
            Transport::Outbox(dir) => format!("outbox {}", dir.display()),
        }
    }

    pub async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let to = mail
            .to
            .parse::<Mailbox>()
            .map_err(|e| MailError::Build(e.to_string()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body)
            .map_err(|e| MailError::Build(e.to_string()))?;
        match &self.transport {
            Transport::Smtp(smtp) => smtp
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| MailError::Smtp(e.to_string())),
            Transport::Outbox(dir) => {
                let dir = dir.clone();
                let bytes = message.formatted();
                tokio::task::spawn_blocking(move || write_to_outbox(&dir, &bytes))
                    .await
                    .map_err(|e| MailError::Outbox(e.to_string()))?
            }
        }
    }
}

fn write_to_outbox(dir: &std::path::Path, bytes: &[u8]) -> Result<(), MailError> {
    let fail = |e: std::io::Error| MailError::Outbox(e.to_string());
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(fail)?;
    let name = format!(
        "{}-{}.eml",
        time::OffsetDateTime::now_utc().unix_timestamp_nanos(),
        crate::crypto::base64url(&crate::crypto::random_bytes::<6>())
    );
    // Written under a hidden name and renamed whole: a reader of the outbox never sees half
    // a mail.
    let partial = dir.join(format!(".{name}.partial"));
    let mut file = crate::crypto::create_owner_only(&partial).map_err(fail)?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .and_then(|_| std::fs::rename(&partial, dir.join(name)))
        .map_err(fail)
}
