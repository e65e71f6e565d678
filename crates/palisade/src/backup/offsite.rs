//! The off-site copy (claim OPS-3): every backup, once written and test-restored, is
//! copied to an S3-compatible object store (AWS S3, MinIO, R2, B2, …) under
//! `{prefix}{id}/`, its manifest last, so a listing that shows a manifest shows a whole
//! backup. The files are the same age files as on disk: the store holds nothing readable
//! without the operator's key. Copies past the retention window are deleted there too.
//! Requests are signed (AWS Signature V4, `rusty-s3`) and sent with the server's one HTTP
//! client; nothing is kept in memory but a file's stream.

use std::path::Path;
use std::time::Duration;

use rusty_s3::actions::{ListObjectsV2, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use secrecy::ExposeSecret;
use time::OffsetDateTime;

use super::archive;
use crate::config::BackupSettings;

/// How long a signed request stays valid: enough for one large file's upload.
const SIGNED_FOR: Duration = Duration::from_secs(3600);

/// The object store a deployment copies its backups to.
pub struct Offsite {
    client: reqwest::Client,
    bucket: Bucket,
    credentials: Credentials,
    prefix: String,
}

impl Offsite {
    /// The store `backup.s3_*` configure; None when `backup.s3_endpoint` is unset.
    pub fn from_settings(settings: &BackupSettings) -> Result<Option<Self>, String> {
        let Some(endpoint) = &settings.s3_endpoint else {
            return Ok(None);
        };
        let endpoint = endpoint
            .parse()
            .map_err(|_| "backup.s3_endpoint is not a URL".to_owned())?;
        let style = if settings.s3_path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let (Some(bucket), Some(key_id), Some(secret)) = (
            &settings.s3_bucket,
            &settings.s3_access_key_id,
            &settings.s3_secret_access_key,
        ) else {
            return Err(
                "backup.s3_endpoint needs backup.s3_bucket, s3_access_key_id and s3_secret_access_key"
                    .into(),
            );
        };
        let bucket = Bucket::new(endpoint, style, bucket.clone(), settings.s3_region.clone())
            .map_err(|e| format!("backup.s3_*: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(SIGNED_FOR)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Some(Self {
            client,
            bucket,
            credentials: Credentials::new(key_id.clone(), secret.expose_secret().to_owned()),
            prefix: settings.s3_prefix.clone(),
        }))
    }

    /// Where the copy goes, for logs and health (`s3://bucket/prefix`).
    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket.name(), self.prefix)
    }

    /// Copies backup `id` from `dir`: the encrypted files, then the manifest. Returns the
    /// bytes sent.
    pub async fn copy(&self, dir: &Path, id: &str) -> Result<u64, String> {
        let mut sent = 0;
        for file in [archive::DATABASE, archive::KEYS, archive::MANIFEST] {
            let path = dir.join(file);
            let opened = tokio::fs::File::open(&path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let length = opened
                .metadata()
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?
                .len();
            let key = format!("{}{id}/{file}", self.prefix);
            let url = self
                .bucket
                .put_object(Some(&self.credentials), &key)
                .sign(SIGNED_FOR);
            let response = self
                .client
                .put(url)
                .header(reqwest::header::CONTENT_LENGTH, length)
                .body(reqwest::Body::from(opened))
                .send()
                .await
                .map_err(|e| format!("uploading {key}: {}", without_url(e)))?;
            if !response.status().is_success() {
                return Err(format!("uploading {key}: {}", response.status()));
            }
            sent += length;
        }
        Ok(sent)
    }

    /// Deletes the copies of backups made before `cutoff`, never `keep`'s (the newest that
    /// passed its test restore). Backup ids are their UTC creation times, so the key says
    /// how old a copy is. Returns how many backups went.
    pub async fn prune(&self, cutoff: OffsetDateTime, keep: &str) -> Result<usize, String> {
        let cutoff_id = super::backup_id(cutoff);
        let mut expired = std::collections::BTreeSet::new();
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut list = ListObjectsV2::new(&self.bucket, Some(&self.credentials));
            list.with_prefix(self.prefix.as_str());
            if let Some(token) = &token {
                list.with_continuation_token(token.as_str());
            }
            let text = self
                .send(reqwest::Method::GET, list.sign(SIGNED_FOR))
                .await?;
            let page = ListObjectsV2::parse_response(&text).map_err(|e| e.to_string())?;
            for object in page.contents {
                let Some(id) = object
                    .key
                    .strip_prefix(self.prefix.as_str())
                    .and_then(|rest| rest.split('/').next())
                else {
                    continue;
                };
                if id < cutoff_id.as_str() && id != keep {
                    expired.insert(id.to_owned());
                    keys.push(object.key);
                }
            }
            token = page.next_continuation_token;
            if token.is_none() {
                break;
            }
        }
        for key in &keys {
            let url = self
                .bucket
                .delete_object(Some(&self.credentials), key)
                .sign(SIGNED_FOR);
            self.send(reqwest::Method::DELETE, url).await?;
        }
        Ok(expired.len())
    }

    async fn send(&self, method: reqwest::Method, url: reqwest::Url) -> Result<String, String> {
        let response = self
            .client
            .request(method, url)
            .send()
            .await
            .map_err(without_url)?;
        let status = response.status();
        let text = response.text().await.map_err(without_url)?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(format!("the object store answered {status}"))
        }
    }
}

/// A request's error without its URL: a signed URL is a credential for an hour.
fn without_url(error: reqwest::Error) -> String {
    error.without_url().to_string()
}
