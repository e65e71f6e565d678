//! A backup on disk: its files, encrypted with age to the operator's recipients, and its
//! signed manifest (what it holds, each file's size and SHA-256, the test restore's verdict).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::signing::{CheckpointKey, PublicKey, Statement};

/// The manifest's format, and the domain its signature is made in.
pub const FORMAT: &str = "palisade-backup/1";
pub const MANIFEST: &str = "manifest.json";
/// The database: the SQLite file, or `pg_dump`'s custom format.
pub const DATABASE: &str = "database.age";
/// The data directory's key files (KEKs, the checkpoint key), as one JSON document.
pub const KEYS: &str = "keys.age";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    /// The backup's name: its directory, from its UTC start time (`20261207T142000Z`).
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The newest migration the database had.
    pub schema_version: String,
    /// The age recipients the files are encrypted to (public keys).
    pub recipients: Vec<String>,
    pub files: Vec<FileEntry>,
    /// Every table's rows in the snapshot, as the test restore found them again.
    pub tables: BTreeMap<String, i64>,
    pub restore_check: RestoreCheck,
    /// Over the rest of the manifest, by the deployment's audit checkpoint key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<ManifestSignature>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    /// Of the encrypted file, lowercase hex.
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreCheck {
    pub passed: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub checked_at: OffsetDateTime,
    /// How long it took. Whole numbers only: the signature is over the manifest as it
    /// serializes, and a float need not read back to the same text.
    pub milliseconds: u64,
    /// What was checked, or the first thing that did not match.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestSignature {
    pub key_id: String,
    /// Ed25519, base64url without padding.
    pub value: String,
}

impl Manifest {
    fn statement(&self) -> Statement {
        let unsigned = Manifest {
            signature: None,
            ..self.clone()
        };
        let mut statement = Statement::new(FORMAT);
        statement.part(&serde_json::to_vec(&unsigned).expect("a manifest serializes"));
        statement
    }

    pub fn sign(&mut self, key: &CheckpointKey) {
        let signature = key.sign(&self.statement());
        self.signature = Some(ManifestSignature {
            key_id: key.public().key_id().to_owned(),
            value: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature),
        });
    }

    /// Whether `key` signed this manifest as it reads now.
    pub fn signed_by(&self, key: &PublicKey) -> bool {
        let Some(signature) = &self.signature else {
            return false;
        };
        let Ok(value) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&signature.value)
        else {
            return false;
        };
        key.verifies(&self.statement(), &signature.key_id, &value)
    }

    /// Writes the manifest beside its files, whole or not at all.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let partial = dir.join(".manifest.json.partial");
        let _ = std::fs::remove_file(&partial);
        let mut file = crate::crypto::create_owner_only(&partial)?;
        file.write_all(&serde_json::to_vec_pretty(self).expect("a manifest serializes"))?;
        file.sync_all()?;
        std::fs::rename(&partial, dir.join(MANIFEST))?;
        sync_dir(dir)
    }

    pub fn read(dir: &Path) -> Result<Self, ArchiveError> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read(&path).map_err(|e| ArchiveError::at(&path, e))?;
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| ArchiveError::Bad {
            name: MANIFEST.into(),
            problem: format!("is not a backup manifest ({e})"),
        })?;
        if manifest.format != FORMAT {
            return Err(ArchiveError::Bad {
                name: MANIFEST.into(),
                problem: format!("is format {:?}, not {FORMAT}", manifest.format),
            });
        }
        Ok(manifest)
    }

    pub fn file(&self, name: &str) -> Result<&FileEntry, ArchiveError> {
        self.files
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| ArchiveError::Bad {
                name: MANIFEST.into(),
                problem: format!("lists no {name}"),
            })
    }

    /// Each listed file is as the manifest says (see [`verify_files`]).
    pub fn verify_files(&self, dir: &Path) -> Result<(), ArchiveError> {
        verify_files(dir, &self.files)
    }
}

/// The backup's two files are listed, nothing else, and each is there with the size and
/// SHA-256 its entry gives: nothing was truncated, appended or changed since it was written.
pub fn verify_files(dir: &Path, files: &[FileEntry]) -> Result<(), ArchiveError> {
    let mut names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    if names != [DATABASE, KEYS] {
        return Err(ArchiveError::Bad {
            name: MANIFEST.into(),
            problem: format!("must list exactly {DATABASE} and {KEYS}"),
        });
    }
    for entry in files {
        let path = dir.join(&entry.name);
        let mut file = std::fs::File::open(&path).map_err(|e| ArchiveError::at(&path, e))?;
        let mut hashing = HashingWriter::new(io::sink());
        io::copy(&mut file, &mut hashing).map_err(|e| ArchiveError::at(&path, e))?;
        let (bytes, sha256) = hashing.finish();
        if bytes != entry.bytes {
            return Err(ArchiveError::Bad {
                name: entry.name.clone(),
                problem: format!(
                    "is {bytes} bytes, the manifest says {} (truncated or appended to)",
                    entry.bytes
                ),
            });
        }
        if sha256 != entry.sha256 {
            return Err(ArchiveError::Bad {
                name: entry.name.clone(),
                problem: "does not match the manifest's SHA-256 (changed since it was written)"
                    .into(),
            });
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A named part of the backup that is not what the manifest says.
    #[error("{name} {problem}")]
    Bad { name: String, problem: String },
}

impl ArchiveError {
    pub fn at(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The operator's recipients, parsed (`backup.recipients`).
pub fn recipients(keys: &[String]) -> Result<Vec<age::x25519::Recipient>, String> {
    keys.iter()
        .enumerate()
        .map(|(n, key)| {
            key.trim()
                .parse::<age::x25519::Recipient>()
                .map_err(|_| format!("backup.recipients[{n}] is not an age public key (age1…)"))
        })
        .collect()
}

/// Encrypts `input` to `recipients` into `dir/name`, synced, and says its size and hash.
pub fn seal_into(
    dir: &Path,
    name: &str,
    recipients: &[&dyn age::Recipient],
    input: &mut dyn Read,
    progress: &dyn Fn(u64),
) -> Result<FileEntry, ArchiveError> {
    let path = dir.join(name);
    let fail = |e: io::Error| ArchiveError::at(&path, e);
    let file = crate::crypto::create_owner_only(&path).map_err(fail)?;
    let encryptor = age::Encryptor::with_recipients(recipients.iter().copied())
        .map_err(|e| fail(io::Error::other(e.to_string())))?;
    let mut sealed = encryptor
        .wrap_output(HashingWriter::new(io::BufWriter::new(file)))
        .map_err(fail)?;
    copy_reporting(input, &mut sealed, progress).map_err(fail)?;
    let hashing = sealed.finish().map_err(fail)?;
    let (bytes, sha256, writer) = hashing.into_parts();
    let file = writer.into_inner().map_err(|e| fail(e.into_error()))?;
    file.sync_all().map_err(fail)?;
    Ok(FileEntry {
        name: name.to_owned(),
        bytes,
        sha256,
    })
}

/// Opens `dir/name` with `identity`: a reader of its plaintext that fails on any change to
/// the ciphertext, and at a truncated end.
pub fn open(
    dir: &Path,
    name: &str,
    identity: &dyn age::Identity,
) -> Result<impl Read + Send + 'static, ArchiveError> {
    let path = dir.join(name);
    let file = std::fs::File::open(&path).map_err(|e| ArchiveError::at(&path, e))?;
    let decryptor =
        age::Decryptor::new_buffered(io::BufReader::new(file)).map_err(|e| ArchiveError::Bad {
            name: name.to_owned(),
            problem: format!("is not an age file ({e})"),
        })?;
    decryptor
        .decrypt(std::iter::once(identity))
        .map_err(|e| ArchiveError::Bad {
            name: name.to_owned(),
            problem: format!("does not open with this identity ({e})"),
        })
}

/// Copies, calling `progress` with the bytes so far about every 8 MiB.
pub fn copy_reporting(
    input: &mut dyn Read,
    output: &mut dyn Write,
    progress: &dyn Fn(u64),
) -> io::Result<u64> {
    let mut buffer = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let mut reported = 0u64;
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        output.write_all(&buffer[..n])?;
        total += n as u64;
        if total - reported >= 8 << 20 {
            progress(total);
            reported = total;
        }
    }
    output.flush()?;
    progress(total);
    Ok(total)
}

/// Counts and hashes what passes through to the writer inside.
pub struct HashingWriter<W> {
    inner: W,
    digest: ring::digest::Context,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            digest: ring::digest::Context::new(&ring::digest::SHA256),
            bytes: 0,
        }
    }

    fn finish(self) -> (u64, String) {
        let (bytes, sha256, _) = self.into_parts();
        (bytes, sha256)
    }

    fn into_parts(self) -> (u64, String, W) {
        (self.bytes, hex::encode(self.digest.finish()), self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Makes a directory's new entries (a renamed file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
