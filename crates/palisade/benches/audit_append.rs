//! Durable audit appends on SQLite (WAL, synchronous=FULL, as the server runs it): many
//! callers each awaiting `Audit::record` (group commit: hash-chained, one commit per batch,
//! acknowledged after it), against raw batched inserts of the same rows (the same tenants,
//! continuing their numbering) into the same table in the same run — no chain, no head, no
//! queue — one batch per commit of the size the writer sees. docs/benchmarks.md.
//! `cargo bench -p palisade --bench audit_append [-- SECONDS [CALLERS [TENANTS]]]`
//!
//! `… -- seed DATA_DIR TENANT COUNT` instead appends COUNT events to one tenant's chain in
//! a server's data directory (the server stopped), for the export benchmark of
//! scripts/bench-audit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade::audit::AuditRecord;
use palisade::clock::{Clock, SystemClock};
use palisade::config::Settings;
use palisade::ids::TenantId;
use sqlx::{QueryBuilder, Sqlite};

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, data_dir, tenant, count] = argv.as_slice() {
        if mode == "seed" {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            let tenant = tenant.parse().expect("a ten_ id");
            runtime.block_on(seed(
                data_dir.into(),
                tenant,
                count.parse().expect("a count"),
            ));
            return;
        }
    }
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<f64>().ok());
    let seconds = args.next().unwrap_or(5.0);
    let callers = args.next().map_or(64, |c| c as usize);
    let tenants = args.next().map_or(8, |t| t as usize);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run(seconds, callers, tenants));
}

fn event(tenant: TenantId, n: usize) -> AuditRecord {
    AuditRecord::new(
        "members.invited",
        "success",
        SystemClock.now(),
        format!("req_{n:032x}"),
        Some("203.0.113.7".parse().unwrap()),
        Some("bench/1.0".to_owned()),
    )
    .in_tenant(tenant)
    .on("invitation", format!("inv_{n:032x}"))
    .changed("role", serde_json::Value::Null, "member")
}

async fn seed(data_dir: std::path::PathBuf, tenant: TenantId, count: usize) {
    let settings = Settings {
        data_dir,
        ..Settings::default()
    };
    let db = palisade::app::open_database(&settings).await.expect("db");
    let audit = palisade::app::open_audit(&settings, &db, Arc::new(SystemClock)).expect("audit");
    let callers = 256;
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let audit = audit.clone();
            tokio::spawn(async move {
                for n in (c..count).step_by(callers) {
                    audit.record(event(tenant, n)).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("seeder");
    }
    println!(
        "seeded {count} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    audit.checkpoint_due().await.expect("checkpoints");
    db.close().await;
}

async fn run(seconds: f64, callers: usize, chains: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = Settings {
        data_dir: dir.path().join("data"),
        ..Settings::default()
    };
    palisade::app::prepare_data_dir(&settings.data_dir).expect("data dir");
    let db = palisade::app::open_database(&settings).await.expect("db");
    let audit = palisade::app::open_audit(&settings, &db, Arc::new(SystemClock)).expect("audit");
    let tenants: Vec<TenantId> = (0..chains)
        .map(|_| {
            format!("ten_{}", uuid::Uuid::now_v7().simple())
                .parse()
                .unwrap()
        })
        .collect();
    let machine = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "audit appends, SQLite WAL synchronous=FULL, {machine} cores, {callers} callers, \
         {chains} tenant chains, {seconds} s per run"
    );

    // A second of warm-up (caches, prepared statements, threads), then the writer.
    let warm_until = Instant::now() + Duration::from_secs(1);
    let deadline = warm_until + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let audit = audit.clone();
            let tenant = tenants[c % chains];
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = c;
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    audit.record(event(tenant, n)).await.expect("append");
                    if t0 >= warm_until {
                        latencies.push(t0.elapsed());
                    }
                    n += callers;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("caller"));
    }
    let elapsed = (Instant::now() - warm_until).as_secs_f64();
    latencies.sort();
    let appended = latencies.len();
    let at = |q: f64| latencies[((appended as f64 * q) as usize).min(appended - 1)];
    let writer_rate = appended as f64 / elapsed;
    println!(
        "writer (chained, group commit): {appended} events in {elapsed:.2} s = {writer_rate:.0} events/s; \
         commit latency p50 {:?}, p99 {:?}, max {:?}",
        at(0.50),
        at(0.99),
        latencies[appended - 1]
    );

    // Raw batched inserts of the same rows: one batch of `callers` rows per commit.
    let palisade::store::Database::Sqlite(pool) = &db else {
        unreachable!("the bench runs on SQLite")
    };
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut inserted = 0usize;
    // Each tenant's rows continue its chain's numbering, in the same places of the indexes.
    let mut seqs = std::collections::HashMap::<TenantId, i64>::new();
    for tenant in &tenants {
        let chain = audit
            .verify(palisade::audit::store::Chain::for_upkeep(tenant.as_uuid()))
            .await
            .expect("verify")
            .summary
            .last_seq
            .unwrap_or(0);
        seqs.insert(*tenant, chain);
    }
    while Instant::now() < deadline {
        let batch: Vec<AuditRecord> = (0..callers)
            .map(|n| event(tenants[n % chains], inserted + n))
            .collect();
        let mut tx = pool.begin().await.expect("begin");
        for chunk in batch.chunks(64) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO audit_events (tenant_id, seq, id, occurred_at_us, actor_type,
                 actor_id, actor_role, action, target_type, target_id, outcome, ip, user_agent,
                 request_id, changes, prev_hash, hash) ",
            );
            insert.push_values(chunk, |mut row, record| {
                let tenant = record.tenant_id.expect("tenant events");
                let seq = seqs.get_mut(&tenant).expect("known tenant");
                *seq += 1;
                row.push_bind(tenant.as_uuid().hyphenated().to_string())
                    .push_bind(*seq)
                    .push_bind(uuid::Uuid::now_v7().hyphenated().to_string())
                    .push_bind((record.occurred_at.unix_timestamp_nanos() / 1_000) as i64)
                    .push_bind(record.actor.kind())
                    .push_bind(record.actor.id())
                    .push_bind(record.actor.role())
                    .push_bind(record.action.as_ref())
                    .push_bind(record.target_type.as_ref())
                    .push_bind(record.target_id.clone())
                    .push_bind(record.outcome)
                    .push_bind(record.ip.map(|ip| ip.to_string()))
                    .push_bind(record.user_agent.clone())
                    .push_bind(record.request_id.clone())
                    .push_bind(serde_json::Value::Object(record.changes.clone()).to_string())
                    .push_bind(vec![0u8; 32])
                    .push_bind(vec![0u8; 32]);
            });
            insert.build().execute(&mut *tx).await.expect("insert");
        }
        tx.commit().await.expect("commit");
        inserted += callers;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let raw_rate = inserted as f64 / elapsed;
    println!(
        "raw batched inserts ({callers} rows per commit): {inserted} rows in {elapsed:.2} s = {raw_rate:.0} rows/s"
    );
    println!(
        "ratio: chained group-commit appends are {:.1}% of raw batched inserts",
        100.0 * writer_rate / raw_rate
    );
    db.close().await;
}
