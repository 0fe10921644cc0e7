//! Micro-benchmarks of the hot paths, each at a stated size:
//! - Fernet: decrypt/encrypt one 200-byte value; MultiFernet decrypt with the second key.
//! - Connection codecs: parse one URI, write one URI, JSON encode+decode one connection.
//! - Plan: `plan::diff` of two 100k-item inventories (all unchanged; 10% changed).
//!
//! Run: `cargo bench --bench formats -- --warm-up-time 1 --measurement-time 3`.
//! Compare figures as ratios within one run; the end-to-end sizes are `scripts/bench`'s job.

use std::hint::black_box;

use airflow_secrets_sync::airflow::connection::{Reader, from_json, parse_uri, to_json, to_uri};
use airflow_secrets_sync::airflow::fernet::AirflowFernet;
use airflow_secrets_sync::config::ApplyConfig;
use airflow_secrets_sync::model::{Connection, Entry, Inventory, SecretValue};
use airflow_secrets_sync::plan::{self, Policy, Selection};
use airflow_secrets_sync::store::memory::MemoryStore;
use criterion::{Criterion, criterion_group, criterion_main};

const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_B: &str = "4OHi4-Tl5ufo6err7O3u7_Dx8vP09fb3-Pn6-_z9_v8=";

fn fernet(c: &mut Criterion) {
    let value = SecretValue::from("v".repeat(200));
    let a = AirflowFernet::from_key_string(&SecretValue::from(KEY_A)).unwrap();
    let ab = AirflowFernet::from_key_string(&SecretValue::from(format!("{KEY_A},{KEY_B}"))).unwrap();
    let b = AirflowFernet::from_key_string(&SecretValue::from(KEY_B)).unwrap();
    let token = a.encrypt(&value).unwrap();
    let token_b = b.encrypt(&value).unwrap();
    c.bench_function("fernet/decrypt 200 B", |bench| bench.iter(|| ab.decrypt(black_box(&token)).unwrap()));
    c.bench_function("fernet/decrypt 200 B, second key", |bench| bench.iter(|| ab.decrypt(black_box(&token_b)).unwrap()));
    c.bench_function("fernet/encrypt 200 B", |bench| bench.iter(|| a.encrypt(black_box(&value)).unwrap()));
}

fn connection() -> Connection {
    Connection {
        conn_type: Some("postgres".into()),
        description: Some("warehouse".into()),
        host: Some("db.example.com".into()),
        login: Some("us@er".into()),
        password: Some(SecretValue::from("p@ss:w/rd#?%&= +")),
        schema: Some("analytics".into()),
        port: Some(5432),
        extra: Some(SecretValue::from(r#"{"sslmode": "require", "connect_timeout": 10, "options": {"a": [1, 2]}}"#)),
    }
}

fn codecs(c: &mut Criterion) {
    let conn = connection();
    let uri = to_uri(&conn);
    let json = to_json(&conn);
    c.bench_function("uri/parse one connection", |b| b.iter(|| parse_uri(black_box(uri.expose_plaintext()), Reader::Orm3).unwrap()));
    c.bench_function("uri/write one connection", |b| b.iter(|| to_uri(black_box(&conn))));
    c.bench_function("json/encode+decode one connection", |b| {
        b.iter(|| from_json(to_json(black_box(&conn)).expose_plaintext(), Reader::Orm3).unwrap())
    });
    let _ = json;
}

fn inventories(n: usize, changed_every: usize) -> (Inventory, Inventory) {
    let mut src = Inventory::new();
    let mut tgt = Inventory::new();
    for i in 0..n {
        if i % 2 == 0 {
            let e = Entry::variable(format!("var_{i:06}"), format!("value-{i}"));
            src.insert(e.clone());
            tgt.insert(if changed_every > 0 && i % changed_every == 0 { Entry::variable(format!("var_{i:06}"), "old") } else { e });
        } else {
            let e = Entry::connection(format!("conn_{i:06}"), connection());
            src.insert(e.clone());
            tgt.insert(e);
        }
    }
    (src, tgt)
}

fn diff(c: &mut Criterion) {
    let (s, t) = (MemoryStore::new("source"), MemoryStore::new("target"));
    let policy = Policy::new(Selection::all(), &ApplyConfig::default());
    let mut group = c.benchmark_group("plan");
    group.sample_size(10);
    for (label, every) in [("diff 100k items, all unchanged", 0), ("diff 100k items, 10% changed", 10)] {
        let (src, tgt) = inventories(100_000, every);
        group.bench_function(label, |b| b.iter(|| plan::diff(&s, black_box(&src), &t, black_box(&tgt), &policy)));
    }
    group.finish();
}

criterion_group!(benches, fernet, codecs, diff);
criterion_main!(benches);
