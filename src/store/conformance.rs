//! The one conformance suite every store passes: one public `async fn` per rule of the [`Store`]
//! contract, each gated on the store's [`Capabilities`].
//!
//! [`conformance_suite!`](crate::conformance_suite) turns a list of store setups into one
//! `#[tokio::test]` per (store × rule), so every broken rule shows, not only the first:
//!
//! ```ignore
//! airflow_secrets_sync::conformance_suite! {
//!     memory => setup::memory();      // async fn memory() -> ((), MemoryStore)
//!     vault_kv2 => setup::vault_kv2(); // async fn vault_kv2() -> (VaultServer, VaultStore)
//! }
//! ```
//!
//! `tests/conformance.rs` holds the one such list, for every store.
//!
//! Each setup is an expression giving a future of `(guard, store)`: the guard (a server, a
//! temporary directory, a database, or `()`) lives as long as the test. The rules are listed once,
//! in [`__conformance_rules!`](crate::__conformance_rules); [`RULES`] and [`run_all`] come from the
//! same list.
//!
//! Cases use ids with a random prefix and delete only what they wrote, so they can run against a
//! shared backend in any order. A failure names the store and the rule, never a value.

use rand::Rng;

use super::{Capabilities, Placement, Precondition, Store, StoreError};
use crate::airflow::connection::equivalent;
use crate::model::{Connection, Entry, ItemErrorKind, ItemId, Kind, Ownership, SecretValue, Value};

/// A fresh, store-safe id: lowercase letters, digits and `_` only (every backend can hold it).
pub fn unique_id(case: &str) -> String {
    let n: u32 = rand::rng().random();
    format!("conf_{n:08x}_{case}")
}

/// A connection using every field, with unicode and characters that need escaping.
pub fn sample_connection() -> Connection {
    Connection {
        conn_type: Some("postgres".into()),
        description: Some("conformance d\u{e9}scription".into()),
        host: Some("db.example.com".into()),
        login: Some("us@er:x".into()),
        password: Some(SecretValue::from("p@ss:w/rd#?%&= +\u{e9}")),
        schema: Some("my db".into()),
        port: Some(5432),
        extra: Some(SecretValue::from(r#"{"sslmode": "require", "n": 1, "nested": {"a": [1, 2]}}"#)),
    }
}

fn skip(store: &dyn Store, kind: Kind) -> bool {
    let caps = store.capabilities();
    caps.read_only || !caps.holds(kind)
}

async fn read_one(store: &dyn Store, id: &ItemId) -> Option<Entry> {
    let inv = store.read(std::slice::from_ref(id)).await.unwrap_or_else(|e| panic!("{store}: read {id}: {e}"));
    if let Some(err) = inv.error(id) {
        panic!("{store}: read {id} gave an item error: {err}");
    }
    inv.get(id).cloned()
}

async fn write_ok(store: &dyn Store, entry: &Entry) {
    store.write(entry, &Precondition::Any).await.unwrap_or_else(|e| panic!("{store}: write {}: {e}", entry.id));
    store.flush().await.unwrap_or_else(|e| panic!("{store}: flush: {e}"));
}

async fn cleanup(store: &dyn Store, id: &ItemId) {
    store.delete(id).await.unwrap_or_else(|e| panic!("{store}: delete {id}: {e}"));
    store.flush().await.unwrap_or_else(|e| panic!("{store}: flush: {e}"));
}

fn assert_variable(store: &dyn Store, got: &Entry, want: &str) {
    match &got.value {
        Value::Variable(v) => assert!(
            v.value.expose_plaintext() == want,
            "{store} changed the value of {} on the way back",
            got.id
        ),
        Value::Connection(_) => panic!("{store}: {} came back as a connection", got.id),
    }
}

/// What the store is expected to return for `c`, given what it can carry.
fn expected_connection(caps: &Capabilities, c: &Connection) -> Connection {
    let mut want = c.clone();
    if !caps.connection_description {
        want.description = None;
    }
    want
}

/// Contract: a written variable reads back byte-identical, unicode and newlines included.
pub async fn variable_round_trip(store: &dyn Store) {
    if skip(store, Kind::Variable) {
        return;
    }
    let multi_line = "v\u{e9}\u{1f600} line1\nline2\t\"quoted\" 'single' $HOME %41 \\";
    let one_line = "v\u{e9}\u{1f600} line1\tline2 \"quoted\" 'single' $HOME %41 \\";
    let value = if store.capabilities().variable_line_breaks {
        multi_line
    } else {
        let entry = Entry::variable(unique_id("var_lines"), multi_line);
        let err = store.write(&entry, &Precondition::Any).await.expect_err("a line break the store cannot hold");
        assert_item_error(store, &err, &entry.id, ItemErrorKind::NotRepresentable);
        one_line
    };
    let entry = Entry::variable(unique_id("var_rt"), value);
    write_ok(store, &entry).await;
    let got = read_one(store, &entry.id).await.unwrap_or_else(|| panic!("{store}: {} not found after write", entry.id));
    assert_variable(store, &got, value);
    cleanup(store, &entry.id).await;
}

/// Contract: a written connection reads back equivalent (as Airflow compares it), every field.
pub async fn connection_round_trip(store: &dyn Store) {
    if skip(store, Kind::Connection) {
        return;
    }
    let caps = store.capabilities();
    for (case, conn) in [
        ("full", sample_connection()),
        ("minimal", Connection { conn_type: Some("http".into()), ..Default::default() }),
        (
            "unicode",
            Connection {
                conn_type: Some("postgres".into()),
                host: Some("m\u{fc}nchen.de".into()),
                login: Some("j\u{fc}rgen".into()),
                password: Some("p\u{e4}ssw\u{f6}rd\u{20ac}".into()),
                ..Default::default()
            },
        ),
    ] {
        let entry = Entry::connection(unique_id(&format!("conn_rt_{case}")), conn);
        write_ok(store, &entry).await;
        let got =
            read_one(store, &entry.id).await.unwrap_or_else(|| panic!("{store}: {} not found after write", entry.id));
        let want = expected_connection(&caps, entry.as_connection().unwrap());
        let have = got.as_connection().unwrap_or_else(|| panic!("{store}: {} came back as a variable", entry.id));
        assert!(equivalent(&want, have), "{store}: connection {case} changed on the way back");
        cleanup(store, &entry.id).await;
    }
}

/// Contract: an empty variable round-trips where the store allows it, else is refused by name.
pub async fn empty_variable(store: &dyn Store) {
    if skip(store, Kind::Variable) {
        return;
    }
    let entry = Entry::variable(unique_id("var_empty"), "");
    if store.capabilities().empty_variables {
        write_ok(store, &entry).await;
        let got = read_one(store, &entry.id).await.unwrap_or_else(|| panic!("{store}: empty variable not found"));
        assert_variable(store, &got, "");
        cleanup(store, &entry.id).await;
    } else {
        let err = store.write(&entry, &Precondition::Any).await.expect_err("empty variable must be refused");
        assert_item_error(store, &err, &entry.id, ItemErrorKind::NotRepresentable);
    }
}

/// Contract: a 64 KiB value round-trips where the limit allows; one byte over the limit is refused.
pub async fn large_values(store: &dyn Store) {
    if skip(store, Kind::Variable) {
        return;
    }
    let caps = store.capabilities();
    let size = caps.max_value_bytes.map_or(64 * 1024, |l| l.min(64 * 1024));
    let value: String = (0..size).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let entry = Entry::variable(unique_id("var_large"), value.as_str());
    write_ok(store, &entry).await;
    let got = read_one(store, &entry.id).await.unwrap_or_else(|| panic!("{store}: large variable not found"));
    assert_variable(store, &got, &value);
    cleanup(store, &entry.id).await;
    if let Some(limit) = caps.max_value_bytes {
        let over: String = "x".repeat(limit + 1);
        let entry = Entry::variable(unique_id("var_over"), over.as_str());
        let err = store.write(&entry, &Precondition::Any).await.expect_err("a value over the limit must be refused");
        assert_item_error(store, &err, &entry.id, ItemErrorKind::TooLarge);
    }
}

/// Contract: `locate` and `write` agree. A name `locate` accepts round-trips; one it rejects is
/// refused by `write` with an invalid-name error, before any request.
pub async fn names_at_the_limits(store: &dyn Store) {
    if skip(store, Kind::Variable) {
        return;
    }
    let base = unique_id("names");
    let candidates = [
        format!("{base}.dotted"),
        format!("{base}/nested/deeper"),
        format!("{base}-dash"),
        format!("{base}:colon"),
        format!("{base}_caf\u{e9}"),
        format!("{base}__double"),
        format!("{base}{}", "n".repeat(250 - base.len() - 1)),
    ];
    for id in candidates {
        let entry = Entry::variable(id.clone(), "name-case");
        match store.locate(&entry.id) {
            Placement::At(_) => {
                write_ok(store, &entry).await;
                let got = read_one(store, &entry.id).await.unwrap_or_else(|| panic!("{store}: {} not found", entry.id));
                assert_variable(store, &got, "name-case");
                cleanup(store, &entry.id).await;
            }
            Placement::Invalid(_) => {
                let err = store.write(&entry, &Precondition::Any).await.expect_err("an invalid name must be refused");
                assert_item_error(store, &err, &entry.id, ItemErrorKind::InvalidName);
            }
            Placement::Unreachable(_) => {}
        }
    }
}

/// Contract: `scan` finds every item written, of the right kind, and nothing of the other kind.
pub async fn scan_finds_what_was_written(store: &dyn Store) {
    let caps = store.capabilities();
    if caps.read_only || !caps.variables || !caps.connections {
        return;
    }
    let v = Entry::variable(unique_id("scan_v"), "scan");
    let c = Entry::connection(unique_id("scan_c"), Connection { conn_type: Some("http".into()), ..Default::default() });
    write_ok(store, &v).await;
    write_ok(store, &c).await;
    let vars = store.scan(Kind::Variable).await.unwrap_or_else(|e| panic!("{store}: scan: {e}"));
    let conns = store.scan(Kind::Connection).await.unwrap_or_else(|e| panic!("{store}: scan: {e}"));
    assert!(vars.get(&v.id).is_some(), "{store}: scan(variable) missed {}", v.id);
    assert!(conns.get(&c.id).is_some(), "{store}: scan(connection) missed {}", c.id);
    assert!(!vars.contains(&ItemId::variable(&c.id.id)), "{store}: a connection showed up as a variable");
    assert!(vars.entries().all(|e| e.id.kind == Kind::Variable), "{store}: scan(variable) returned other kinds");
    cleanup(store, &v.id).await;
    cleanup(store, &c.id).await;
}

/// Contract: a second write replaces the first.
pub async fn update_replaces(store: &dyn Store) {
    if skip(store, Kind::Variable) {
        return;
    }
    let id = unique_id("update");
    write_ok(store, &Entry::variable(id.clone(), "first")).await;
    write_ok(store, &Entry::variable(id.clone(), "second")).await;
    let got = read_one(store, &ItemId::variable(&id)).await.expect("updated variable");
    assert_variable(store, &got, "second");
    cleanup(store, &ItemId::variable(&id)).await;
}

/// Contract: delete removes the item; deleting an absent item is not an error; reading an
/// absent id returns nothing (not an error).
pub async fn delete_and_absent(store: &dyn Store) {
    if skip(store, Kind::Variable) || !store.capabilities().can_delete {
        return;
    }
    let entry = Entry::variable(unique_id("delete"), "bye");
    write_ok(store, &entry).await;
    cleanup(store, &entry.id).await;
    assert!(read_one(store, &entry.id).await.is_none(), "{store}: {} still there after delete", entry.id);
    cleanup(store, &entry.id).await;
    let absent = ItemId::connection(unique_id("absent"));
    assert!(read_one(store, &absent).await.is_none());
}

/// Contract: a read-only store refuses writes and deletes with `ReadOnly`.
pub async fn read_only_refuses(store: &dyn Store) {
    if !store.capabilities().read_only {
        return;
    }
    let entry = Entry::variable(unique_id("ro"), "x");
    let err = store.write(&entry, &Precondition::Any).await.expect_err("read-only store accepted a write");
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{store}: expected ReadOnly, got {err}");
    let err = store.delete(&entry.id).await.expect_err("read-only store accepted a delete");
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{store}: expected ReadOnly, got {err}");
}

/// Contract: with conditional writes, `Absent` fails on an existing item and a stale `Version`
/// fails: a concurrent writer is never silently overwritten.
pub async fn conditional_writes(store: &dyn Store) {
    let caps = store.capabilities();
    if caps.read_only || !caps.variables || !caps.conditional_writes {
        return;
    }
    let entry = Entry::variable(unique_id("cas"), "one");
    store.write(&entry, &Precondition::Absent).await.unwrap_or_else(|e| panic!("{store}: create: {e}"));
    let err = store.write(&entry, &Precondition::Absent).await.expect_err("Absent on an existing item");
    assert!(matches!(err, StoreError::Conflict { .. }), "{store}: expected Conflict, got {err}");
    let seen = read_one(store, &entry.id).await.expect("cas item");
    let version = seen.meta.version.clone().unwrap_or_else(|| panic!("{store}: no version with conditional writes"));
    store.write(&Entry::variable(entry.id.id.clone(), "two"), &Precondition::Version(version.clone())).await
        .unwrap_or_else(|e| panic!("{store}: CAS write at the current version: {e}"));
    let err = store.write(&Entry::variable(entry.id.id.clone(), "three"), &Precondition::Version(version)).await
        .expect_err("a stale version must fail");
    assert!(matches!(err, StoreError::Conflict { .. }), "{store}: expected Conflict, got {err}");
    cleanup(store, &entry.id).await;
}

/// Contract: a store that tags marks what it wrote as ours.
pub async fn ownership_marked(store: &dyn Store) {
    let caps = store.capabilities();
    if caps.read_only || !caps.variables || !caps.can_tag {
        return;
    }
    let entry = Entry::variable(unique_id("owned"), "mine");
    write_ok(store, &entry).await;
    let got = read_one(store, &entry.id).await.expect("owned item");
    assert_eq!(got.meta.ownership, Ownership::Ours, "{store}: wrote {} but does not mark it as ours", entry.id);
    cleanup(store, &entry.id).await;
}

fn assert_item_error(store: &dyn Store, err: &StoreError, id: &ItemId, kind: ItemErrorKind) {
    match err {
        StoreError::Item { id: got, error, .. } => {
            assert_eq!(got, id, "{store}: the error names the wrong item");
            assert_eq!(error.kind, kind, "{store}: {id}: expected {kind:?}, got {error}");
        }
        other => panic!("{store}: {id}: expected an item error ({kind:?}), got {other}"),
    }
}

/// The rules, in order: the one list every generated suite, [`RULES`] and [`run_all`] expand.
/// `$crate::__conformance_rules!(MODE ...)` calls `$crate::__conformance_expand!([MODE ...] rule…)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_rules {
    ($($mode:tt)*) => {
        $crate::__conformance_expand! {
            [$($mode)*]
            variable_round_trip
            connection_round_trip
            empty_variable
            large_values
            names_at_the_limits
            scan_finds_what_was_written
            update_replaces
            delete_and_absent
            read_only_refuses
            conditional_writes
            ownership_marked
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_expand {
    ([names] $($rule:ident)+) => {
        &[$(stringify!($rule)),+]
    };
    ([run_all $store:ident] $($rule:ident)+) => {
        $($rule($store).await;)+
    };
    ([tests $setup:expr] $($rule:ident)+) => {
        $(
            #[tokio::test]
            async fn $rule() {
                let (_guard, store) = $setup.await;
                $crate::store::conformance::$rule(&store).await;
            }
        )+
    };
}

/// One `#[tokio::test]` per (store × rule): `name => setup;` per store, where `setup` is an
/// expression giving a future of `(guard, store)` (see the module docs). Each store becomes a
/// module `name` holding one test per rule (`name::variable_round_trip`, …); the module sees the
/// items of the one around it.
#[macro_export]
macro_rules! conformance_suite {
    ($($(#[$meta:meta])* $name:ident => $setup:expr;)+) => {
        $(
            $(#[$meta])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                $crate::__conformance_rules!(tests $setup);
            }
        )+
    };
}

/// Every rule's name, in order.
pub const RULES: &[&str] = crate::__conformance_rules!(names);

/// Every rule, in order, against one store (stops at the first broken rule: tests use
/// [`conformance_suite!`](crate::conformance_suite) instead).
pub async fn run_all(store: &dyn Store) {
    crate::__conformance_rules!(run_all store);
}

#[cfg(test)]
mod tests {
    /// Every public rule of this file is in the list, and nothing else is.
    #[test]
    fn the_rule_list_names_every_rule() {
        let src = include_str!("conformance.rs");
        let mut found: Vec<&str> = src
            .lines()
            .filter_map(|l| l.strip_prefix("pub async fn "))
            .filter_map(|l| l.split_once("(store: &dyn Store)").map(|(name, _)| name))
            .filter(|name| *name != "run_all")
            .collect();
        let mut listed = super::RULES.to_vec();
        found.sort();
        listed.sort();
        assert_eq!(found, listed);
    }
}
