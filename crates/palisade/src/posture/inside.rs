//! What an instance can say of itself: its settings, keys, database and chains.

use std::time::Duration;

use super::Finding;
use crate::app::AppState;
use crate::backup::BackupHealth;
use crate::store::Database;

/// OWASP's argon2id floor (claim ID-1).
const OWASP_MEMORY_KIB: u32 = 19_456;
const OWASP_ITERATIONS: u32 = 2;

/// Every check this instance can make of itself.
pub async fn inspect(state: &AppState) -> Vec<Finding> {
    let mut findings = configuration(state);
    findings.extend(keys(state));
    findings.extend(database(state).await);
    findings.extend(chains(state).await);
    findings.extend(backups(state));
    findings
}

/// The settings, and each weakening `serve` logged at start-up, named by its claim.
fn configuration(state: &AppState) -> Vec<Finding> {
    let settings = &state.settings;
    let mut out: Vec<Finding> = settings
        .weakenings()
        .into_iter()
        .filter_map(|text| {
            let (id, _) = text.split_once(':')?;
            super::CLAIMS.contains(&id).then(|| Finding::fail(id, text))
        })
        .collect();
    let p = &settings.passwords;
    out.push(Finding::check(
        "ID-1",
        p.argon2_memory_kib >= OWASP_MEMORY_KIB && p.argon2_iterations >= OWASP_ITERATIONS,
        format!(
            "argon2id m={} KiB, t={}, p=1 (OWASP's floor: m={OWASP_MEMORY_KIB}, t={OWASP_ITERATIONS})",
            p.argon2_memory_kib, p.argon2_iterations
        ),
    ));
    let auth = &settings.auth;
    out.push(Finding::check(
        "ID-3",
        auth.access_token_ttl_secs <= 15 * 60,
        format!(
            "EdDSA access tokens for {} s (the claim: 15 minutes at most)",
            auth.access_token_ttl_secs
        ),
    ));
    out.push(Finding::check(
        "ID-5",
        auth.session_idle_secs <= 8 * 3600 && auth.session_absolute_secs <= 30 * 86_400,
        format!(
            "sessions end after {} s idle and {} s in all (the claim: 8 h and 30 days)",
            auth.session_idle_secs, auth.session_absolute_secs
        ),
    ));
    out.push(Finding::check(
        "ID-9",
        auth.max_failures_per_email_ip <= 5 && auth.failure_window_secs >= 15 * 60,
        format!(
            "{} failed sign-ins per (email, IP) and {} per IP in {} s",
            auth.max_failures_per_email_ip, auth.max_failures_per_ip, auth.failure_window_secs
        ),
    ));
    out.push(Finding::pass(
        "ID-13",
        match &settings.mail.smtp_url {
            Some(_) => "mail goes out through the configured SMTP server".to_owned(),
            None => format!(
                "no SMTP server: mail is written to {}/outbox",
                settings.data_dir.display()
            ),
        },
    ));
    out.push(if settings.tls.enabled() {
        Finding::pass(
            "WEB-1",
            format!("TLS 1.2+ on {}, with HSTS", settings.listen),
        )
    } else if settings.listen.ip().is_loopback() {
        Finding::new(
            "WEB-1",
            super::Status::NotCheckable,
            format!(
                "plain HTTP on {} (loopback): TLS is the fronting proxy's; `palisade posture --url https://…` checks it",
                settings.listen
            ),
        )
    } else {
        Finding::fail(
            "WEB-1",
            format!("plain HTTP on {}, reachable from other hosts", settings.listen),
        )
    });
    out.push(Finding::pass(
        "WEB-2",
        "the request frame sets the security headers on every answer",
    ));
    if settings.rate_limits.enabled {
        out.push(Finding::pass("WEB-5", "rate limits on, per route class"));
    }
    if settings.webhooks.allowed_networks.is_empty() {
        out.push(Finding::pass(
            "HOOK-4",
            "SSRF guard on: https only; private, loopback and link-local addresses refused",
        ));
    }
    out.push(Finding::pass(
        "OPS-6",
        match settings.metrics.bearer_token {
            Some(_) => "served at /metrics to metrics.bearer_token",
            None => "served at /metrics; no metrics.bearer_token, so nobody may scrape",
        },
    ));
    out.push(Finding::pass(
        "OPS-7",
        "this report: every claim of the specification, from inside",
    ));
    out
}

/// The ages of the signing key (ID-8) and of the vault's KEK (SEC-2).
fn keys(state: &AppState) -> Vec<Finding> {
    let now = state.clock.now();
    let mut out = Vec::new();
    let tokens = state.identity.tokens();
    out.push(match tokens.signing_key() {
        Some((kid, since)) => {
            let age = now - since;
            Finding::check(
                "ID-8",
                age <= tokens.rotation() + Duration::from_secs(3600),
                format!(
                    "signing key {kid}, {} days old (rotated every {} days)",
                    age.whole_days(),
                    tokens.rotation().as_secs() / 86_400
                ),
            )
        }
        None => Finding::fail("ID-8", "no signing key"),
    });
    let version = state.key_rotation.active_kek_version();
    out.push(match state.key_rotation.active_kek_age() {
        (Some(since), period) if !period.is_zero() => {
            let age = now - since;
            Finding::check(
                "SEC-2",
                age <= period,
                format!(
                    "KEK version {version}, {} days old (vault.kek_rotation_days: {})",
                    age.whole_days(),
                    period.whole_days()
                ),
            )
        }
        (_, period) if period.is_zero() => Finding::fail(
            "SEC-2",
            format!("KEK version {version}; vault.kek_rotation_days = 0: never due"),
        ),
        _ => Finding::new(
            "SEC-2",
            super::Status::NotCheckable,
            format!("KEK version {version}, given as a value: its age is the operator's record"),
        ),
    });
    out
}

/// The database's answer, and on PostgreSQL the second isolation layer and the runtime
/// role's rights (TEN-3, AUD-2).
async fn database(state: &AppState) -> Vec<Finding> {
    let probe = state.db.probe(Duration::from_secs(2)).await;
    let mut out = vec![Finding::check(
        "OPS-2",
        probe.up,
        format!(
            "the database answered in {} ms; /api/health reports it with the backups",
            probe.latency.as_millis()
        ),
    )];
    match &state.db {
        Database::Sqlite(_) => out.push(Finding::new(
            "TEN-3",
            super::Status::NotCheckable,
            "the embedded SQLite database has no second layer (row-level security is PostgreSQL's)",
        )),
        Database::Postgres(pool) => {
            match crate::store::postgres::rls_gaps(pool).await {
                Ok((checked, gaps)) if gaps.is_empty() => out.push(Finding::pass(
                    "TEN-3",
                    format!("row-level security enabled and forced on all {checked} tenant tables"),
                )),
                Ok((_, gaps)) => out.push(Finding::fail(
                    "TEN-3",
                    format!(
                        "row-level security not enabled and forced on: {}",
                        gaps.join(", ")
                    ),
                )),
                Err(error) => out.push(Finding::fail("TEN-3", format!("not read: {error}"))),
            }
            out.push(
                match crate::store::postgres::check_runtime_role(pool).await {
                    Ok(()) => Finding::pass(
                        "TEN-3",
                        "the runtime role is no superuser, cannot bypass RLS and owns nothing",
                    ),
                    Err(error) => Finding::fail("TEN-3", error.to_string()),
                },
            );
            out.push(match crate::store::postgres::audit_rights_beyond_append(pool).await {
                Ok(rights) if rights.is_empty() => Finding::pass(
                    "AUD-2",
                    "the runtime role appends to the audit log and updates only an erasure's redactable columns",
                ),
                Ok(rights) => Finding::fail(
                    "AUD-2",
                    format!("the runtime role may: {}", rights.join(", ")),
                ),
                Err(error) => Finding::fail("AUD-2", format!("not read: {error}")),
            });
        }
    }
    out
}

/// Every chain walked from its start (AUD-3): as `palisade audit verify` does.
async fn chains(state: &AppState) -> Vec<Finding> {
    let streams = match state.audit.streams().await {
        Ok(streams) => streams,
        Err(error) => return vec![Finding::fail("AUD-3", format!("not read: {error}"))],
    };
    let (mut events, mut checkpoints, mut redacted) = (0, 0, 0);
    let mut bad = Vec::new();
    for chain in &streams {
        match state.audit.verify(*chain).await {
            Ok(verified) => {
                events += verified.summary.events;
                checkpoints += verified.summary.checkpoints;
                redacted += verified.summary.redacted;
                if let Some(problem) = verified.first_problem {
                    bad.push(format!(
                        "{} at {}: {}",
                        verified.stream,
                        problem.seq,
                        problem.problem.as_str()
                    ));
                }
            }
            Err(error) => bad.push(format!("not read: {error}")),
        }
    }
    let evidence = if bad.is_empty() {
        format!(
            "{} chains verify: {events} events, {checkpoints} signed checkpoints, {redacted} redacted",
            streams.len()
        )
    } else {
        format!("chains that do not verify: {}", bad.join(", "))
    };
    vec![Finding::check("AUD-3", bad.is_empty(), evidence)]
}

/// The newest backup's age and test restore (OPS-3), as health reports them; backups
/// that are off are a weakening of the configuration, named there.
fn backups(state: &AppState) -> Option<Finding> {
    match state.backups.health() {
        BackupHealth::Up(detail) => Some(Finding::pass("OPS-3", detail)),
        BackupHealth::Degraded(detail) => Some(Finding::fail("OPS-3", detail)),
        BackupHealth::Off => None,
    }
}
