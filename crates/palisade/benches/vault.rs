//! The vault's benchmarks (claims SEC-1, SEC-2; docs/benchmarks.md), in one process:
//!  1. Sealing and opening a 1 KiB value through the vault (the tenant's DEK unwrapped by
//!     the KEK each time, then AES-256-GCM with the value's binding) against raw
//!     AES-256-GCM of the same 1 KiB in the same run.
//!  2. A full KEK re-wrap of TENANTS tenants' data keys on SQLite (WAL, synchronous=FULL, as
//!     the server runs it): the keys made under version 1, version 2 added, then
//!     `KeyRotation::rewrap_all` timed, and checked: no key left under version 1.
//!  3. A tenant's DEK rotation: VALUES 1 KiB values of one tenant sealed by its DEK version 1,
//!     version 2 added, then the sweep (`KeyRotation::reseal_some`, as upkeep runs it)
//!     timed until every value is under version 2, and checked.
//!
//! `cargo bench -p palisade --bench vault [-- SECONDS [TENANTS]]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade::clock::{Clock, SystemClock};
use palisade::config::Settings;
use palisade::crypto::SealingKey;
use palisade::ids::{SecretId, TenantId};
use palisade::vault::kek::{self, FileOrSetting};
use palisade::vault::keys::Bound;
use palisade::vault::Vault;

const KEK_1: &str = "1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<f64>().ok());
    let seconds = args.next().unwrap_or(2.0);
    let tenants = args.next().map_or(10_000, |t| t as usize);
    let machine = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("vault benchmarks, {machine} cores, {seconds} s per crypto run, {tenants} tenants");
    crypto(seconds);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(rewrap(tenants));
}

/// A new id of the public form `PREFIX_…`.
fn fresh<T: std::str::FromStr>(prefix: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
        .parse()
        .expect("an id")
}

/// Runs `op` for `seconds` after a tenth of that in warm-up; operations per second.
fn rate(seconds: f64, mut op: impl FnMut()) -> f64 {
    let warm = Instant::now() + Duration::from_secs_f64(seconds / 10.0);
    while Instant::now() < warm {
        op();
    }
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        for _ in 0..64 {
            op();
        }
        n += 64;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn crypto(seconds: f64) {
    let value = vec![0x5au8; 1024];
    let raw = SealingKey::from_bytes(&[7u8; 32]).expect("a key");
    let purpose = b"palisade/secret/bench";
    let raw_seal = rate(seconds, || {
        std::hint::black_box(raw.seal(&value, purpose));
    });
    let sealed = raw.seal(&value, purpose);
    let raw_open = rate(seconds, || {
        std::hint::black_box(raw.open(&sealed, purpose).expect("opens"));
    });
    let vault = Vault::new(Arc::new(FileOrSetting::parse(KEK_1).expect("kek")));
    let tenant = fresh::<TenantId>("ten");
    let secret = fresh::<SecretId>("sec");
    let dek = vault.new_data_key(tenant, 1);
    let bound = Bound::Secret { secret, version: 1 };
    let vault_seal = rate(seconds, || {
        std::hint::black_box(vault.seal(tenant, &dek, bound, &value).expect("seals"));
    });
    let stored = vault.seal(tenant, &dek, bound, &value).expect("seals");
    let vault_open = rate(seconds, || {
        std::hint::black_box(vault.open(tenant, &dek, bound, &stored).expect("opens"));
    });
    println!("1 KiB value, one thread:");
    println!("  raw AES-256-GCM seal   {raw_seal:>10.0}/s");
    println!(
        "  vault seal (DEK unwrap + seal)  {vault_seal:>10.0}/s  = {:.1}% of raw",
        100.0 * vault_seal / raw_seal
    );
    println!("  raw AES-256-GCM open   {raw_open:>10.0}/s");
    println!(
        "  vault open (DEK unwrap + open)  {vault_open:>10.0}/s  = {:.1}% of raw",
        100.0 * vault_open / raw_open
    );
}

async fn rewrap(tenants: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = Settings {
        data_dir: dir.path().join("data"),
        ..Settings::default()
    };
    palisade::app::prepare_data_dir(&settings.data_dir).expect("data dir");
    let db = palisade::app::open_database(&settings).await.expect("db");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let audit = palisade::app::open_audit(&settings, &db, clock.clone()).expect("audit");
    let rotation = palisade::app::open_vault(&settings, &db, clock.clone(), &audit)
        .await
        .expect("vault")
        .rotation;
    // The tenants and their version-1 data keys, written straight into the tables.
    let keys = FileOrSetting::load(
        None,
        &settings.vault.kek_path(&settings.data_dir),
        clock.now(),
    )
    .expect("the KEK file");
    let vault = Vault::new(Arc::new(keys));
    let palisade::store::Database::Sqlite(pool) = &db else {
        unreachable!("the bench runs on SQLite")
    };
    let started = Instant::now();
    let now = clock.now();
    let mut first_tenant = None;
    for chunk in (0..tenants).collect::<Vec<_>>().chunks(500) {
        let mut tx = pool.begin().await.expect("begin");
        for _ in chunk {
            let tenant = fresh::<TenantId>("ten");
            first_tenant.get_or_insert(tenant);
            sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, 'bench', $2)")
                .bind(tenant)
                .bind(now)
                .execute(&mut *tx)
                .await
                .expect("tenant");
            let key = vault.new_data_key(tenant, 1);
            sqlx::query(
                "INSERT INTO tenant_data_keys (tenant_id, version, kek_version, wrapped, created_at)
                 VALUES ($1, 1, 1, $2, $3)",
            )
            .bind(tenant)
            .bind(&key.wrapped)
            .bind(now)
            .execute(&mut *tx)
            .await
            .expect("data key");
        }
        tx.commit().await.expect("commit");
    }
    println!(
        "seeded {tenants} tenants' data keys in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let version =
        kek::rotate_file(&settings.vault.kek_path(&settings.data_dir), now).expect("rotate");
    rotation.reload().expect("reload");
    let started = Instant::now();
    let moved = rotation.rewrap_all(|_| {}).await.expect("re-wrap");
    let elapsed = started.elapsed().as_secs_f64();
    let status = rotation.status().await.expect("status");
    assert_eq!(status.pending(), 0, "every key on version {version}");
    println!(
        "KEK re-wrap (SQLite, synchronous=FULL, one transaction a key): {moved} data keys onto \
         version {version} in {elapsed:.2} s = {:.0} keys/s",
        moved as f64 / elapsed
    );
    reseal(
        &rotation,
        pool,
        first_tenant.expect("a tenant"),
        tenants,
        &settings,
    )
    .await;
    db.close().await;
}

/// Part 3: `values` values of `tenant`, sealed by its DEK, then moved onto a new one.
async fn reseal(
    rotation: &palisade::vault::rotation::KeyRotation,
    pool: &sqlx::SqlitePool,
    tenant: TenantId,
    values: usize,
    settings: &Settings,
) {
    let clock = SystemClock;
    let now = clock.now();
    let vault = Vault::new(Arc::new(
        FileOrSetting::load(None, &settings.vault.kek_path(&settings.data_dir), now)
            .expect("the KEK file"),
    ));
    let row: (i32, i32, Vec<u8>) = sqlx::query_as(
        "SELECT version, kek_version, wrapped FROM tenant_data_keys WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await
    .expect("the tenant's key");
    let old = palisade::vault::keys::WrappedKey {
        version: row.0 as u32,
        kek_version: row.1 as u32,
        wrapped: row.2,
    };
    let value = vec![0x5au8; 1024];
    for chunk in (0..values).collect::<Vec<_>>().chunks(500) {
        let mut tx = pool.begin().await.expect("begin");
        for n in chunk {
            let secret = fresh::<SecretId>("sec");
            sqlx::query(
                "INSERT INTO secrets (id, tenant_id, name, description, version, created_by,
                     created_at, updated_at)
                 VALUES ($1, $2, $3, '', 1, 'bench', $4, $4)",
            )
            .bind(secret)
            .bind(tenant)
            .bind(format!("secret-{n}"))
            .bind(now)
            .execute(&mut *tx)
            .await
            .expect("secret");
            let sealed = vault
                .seal(tenant, &old, Bound::Secret { secret, version: 1 }, &value)
                .expect("seals");
            sqlx::query(
                "INSERT INTO secret_versions (tenant_id, secret_id, version, dek_version, sealed,
                     created_at)
                 VALUES ($1, $2, 1, 1, $3, $4)",
            )
            .bind(tenant)
            .bind(secret)
            .bind(sealed)
            .bind(now)
            .execute(&mut *tx)
            .await
            .expect("version");
        }
        tx.commit().await.expect("commit");
    }
    let new = vault.new_data_key(tenant, 2);
    sqlx::query(
        "INSERT INTO tenant_data_keys (tenant_id, version, kek_version, wrapped, created_at)
         VALUES ($1, 2, $2, $3, $4)",
    )
    .bind(tenant)
    .bind(new.kek_version as i32)
    .bind(&new.wrapped)
    .bind(now)
    .execute(pool)
    .await
    .expect("the new key");
    let started = Instant::now();
    let mut moved = 0;
    loop {
        let round = rotation.reseal_some(50).await.expect("re-seal");
        if round == 0 {
            break;
        }
        moved += round;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM secret_versions WHERE dek_version = 1")
            .fetch_one(pool)
            .await
            .expect("count");
    assert_eq!((moved, left), (values as u64, 0), "every value moved");
    println!(
        "DEK rotation sweep (SQLite, synchronous=FULL, 500 values a transaction): {moved} \
         1 KiB values onto the tenant's DEK version 2 in {elapsed:.2} s = {:.0} values/s",
        moved as f64 / elapsed
    );
}
