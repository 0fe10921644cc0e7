//! Encrypted rollback snapshots: the target's value (or absence) of every item a run touches,
//! sealed with XChaCha20-Poly1305 before the run's first write.
//!
//! One record per item: a fresh random 24-byte nonce, associated data = run id + target identity +
//! item (so a record cannot be replayed into another run, store or item). The plaintext record
//! exists only inside one pre-sized, zeroized buffer that is encrypted in place. The key comes from
//! `[state] snapshot_key`, `snapshot_key_cmd` or the environment, never from the state database;
//! the same key derives (HMAC-SHA256, distinct labels) the plan-fingerprint key.

use std::borrow::Cow;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{StateDb, StateError, on_pool};
use crate::config::StateConfig;
use crate::model::{Connection, Entry, Inventory, ItemId, Kind, Meta, Ownership, SecretValue, Value, Variable};

/// The environment variable holding the snapshot key.
pub const SNAPSHOT_KEY_ENV: &str = "AIRFLOW_SECRETS_SYNC_SNAPSHOT_KEY";

type HmacSha256 = Hmac<sha2::Sha256>;

/// The snapshot key and what is derived from it. Never printed, never stored.
#[derive(Clone)]
pub struct SnapshotKey {
    seal: Zeroizing<[u8; 32]>,
    fingerprint: Zeroizing<[u8; 32]>,
    plan_mac: Zeroizing<[u8; 32]>,
    id: String,
}

impl std::fmt::Debug for SnapshotKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SnapshotKey(id {})", self.id)
    }
}

fn derive(master: &[u8], label: &str) -> Zeroizing<[u8; 32]> {
    let mut m = <HmacSha256 as Mac>::new_from_slice(master).expect("HMAC takes any key length");
    m.update(label.as_bytes());
    Zeroizing::new(m.finalize().into_bytes().into())
}

impl SnapshotKey {
    /// Parse a key: 32 bytes as base64 (standard or URL-safe, padding optional) or 64 hex digits.
    pub fn parse(text: &str) -> Result<SnapshotKey, StateError> {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        let t = text.trim();
        let bytes: Zeroizing<Vec<u8>> = Zeroizing::new(if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32).map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).expect("hex")).collect()
        } else {
            let unpadded = t.trim_end_matches('=');
            STANDARD_NO_PAD
                .decode(unpadded)
                .or_else(|_| URL_SAFE_NO_PAD.decode(unpadded))
                .map_err(|_| StateError::Key("not base64 or hex (generate one with `openssl rand -base64 32`)".into()))?
        });
        if bytes.len() != 32 {
            return Err(StateError::Key(format!(
                "must be 32 bytes, got {} (generate one with `openssl rand -base64 32`)",
                bytes.len()
            )));
        }
        let id_full = derive(&bytes, "airflow-secrets-sync key id v1");
        Ok(SnapshotKey {
            seal: derive(&bytes, "airflow-secrets-sync snapshot seal v1"),
            fingerprint: derive(&bytes, "airflow-secrets-sync plan fingerprint v1"),
            plan_mac: derive(&bytes, "airflow-secrets-sync plan file mac v1"),
            id: super::hex(&id_full[..8]),
        })
    }

    /// The key from config, its command, or the environment; `None` when none is configured.
    /// `snapshot_key_cmd` runs like `fernet_key_cmd`: no shell, stdin `/dev/null`, its stdout a
    /// [`crate::secret::SecretValue`] (see [`crate::secret::run_command`]).
    pub fn resolve(cfg: &StateConfig) -> Result<Option<SnapshotKey>, StateError> {
        if let Some(k) = &cfg.snapshot_key {
            return Self::parse(k.expose_plaintext()).map(Some);
        }
        if let Some(cmd) = &cfg.snapshot_key_cmd {
            let text = crate::secret::run_command(cmd).map_err(|why| StateError::Key(format!("snapshot_key_cmd: {why}")))?;
            return Self::parse(text.expose_plaintext()).map(Some);
        }
        match std::env::var(SNAPSHOT_KEY_ENV).map(crate::secret::SecretValue::from) {
            Ok(v) if !v.expose_plaintext().trim().is_empty() => Self::parse(v.expose_plaintext()).map(Some),
            _ => Ok(None),
        }
    }

    /// A short public id of the key (an HMAC of it), to tell "wrong key" from "tampered".
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Keyed HMAC-SHA256, hex: fingerprints in saved plans and the journal.
    pub fn fingerprint(&self, parts: &[&[u8]]) -> String {
        let mut m = <HmacSha256 as Mac>::new_from_slice(self.fingerprint.as_ref()).expect("32-byte key");
        for p in parts {
            // Length-prefix each part so ("ab","c") and ("a","bc") differ.
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        super::hex(&m.finalize().into_bytes())
    }

    /// HMAC-SHA256 (hex) of a saved plan's canonical bytes, under its own derived key.
    pub fn plan_mac(&self, canonical: &[u8]) -> String {
        super::hex(&self.plan_mac_of(canonical).finalize().into_bytes())
    }

    /// Whether `mac` (hex) authenticates `canonical` (compared in constant time).
    pub fn verify_plan_mac(&self, canonical: &[u8], mac: &str) -> bool {
        let t = mac.trim();
        if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        let bytes: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).expect("hex")).collect();
        self.plan_mac_of(canonical).verify_slice(&bytes).is_ok()
    }

    fn plan_mac_of(&self, canonical: &[u8]) -> HmacSha256 {
        let mut m = <HmacSha256 as Mac>::new_from_slice(self.plan_mac.as_ref()).expect("32-byte key");
        m.update(canonical);
        m
    }

    /// Fingerprint of one item's value as a store holds it (None = absent).
    pub fn value_fingerprint(&self, id: &ItemId, value: Option<&Value>) -> String {
        let Some(value) = value else { return self.fingerprint(&[b"absent", id.kind.as_str().as_bytes(), id.id.as_bytes()]) };
        // The same bytes as `fingerprint(&[b"value", kind, id, json])`, with the record's JSON
        // streamed into the MAC: no copy of the value is made, whatever its size.
        let record = Record::of(value);
        let len = record.json_len();
        let mut m = <HmacSha256 as Mac>::new_from_slice(self.fingerprint.as_ref()).expect("32-byte key");
        for p in [&b"value"[..], id.kind.as_str().as_bytes(), id.id.as_bytes()] {
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        m.update(&(len as u64).to_be_bytes());
        serde_json::to_writer(MacWriter(&mut m), &record).expect("a record always serializes");
        super::hex(&m.finalize().into_bytes())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*self.seal))
    }
}

/// Counts the bytes written to it and keeps none of them.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len();
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Feeds what is written to it into a MAC.
struct MacWriter<'a>(&'a mut HmacSha256);

impl std::io::Write for MacWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a snapshot record says about one item before the run.
#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Record<'a> {
    Absent,
    /// Present but unreadable by Airflow (a per-item read error): cannot be restored.
    Unreadable,
    Variable {
        value: Cow<'a, str>,
        description: Option<Cow<'a, str>>,
        ownership: Ownership,
    },
    Connection {
        conn_type: Option<Cow<'a, str>>,
        description: Option<Cow<'a, str>>,
        host: Option<Cow<'a, str>>,
        login: Option<Cow<'a, str>>,
        password: Option<Cow<'a, str>>,
        schema: Option<Cow<'a, str>>,
        port: Option<u16>,
        extra: Option<Cow<'a, str>>,
        ownership: Ownership,
    },
}

fn b(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(Cow::Borrowed)
}
fn bs(s: &Option<SecretValue>) -> Option<Cow<'_, str>> {
    s.as_ref().map(|v| Cow::Borrowed(v.expose_plaintext()))
}
fn owned(c: Option<Cow<'_, str>>) -> Option<String> {
    c.map(Cow::into_owned)
}
fn secret(c: Option<Cow<'_, str>>) -> Option<SecretValue> {
    c.map(|c| SecretValue::new(c.into_owned()))
}

impl<'a> Record<'a> {
    fn of(value: &'a Value) -> Record<'a> {
        Self::of_entry(value, Ownership::Untracked)
    }

    fn of_entry(value: &'a Value, ownership: Ownership) -> Record<'a> {
        match value {
            Value::Variable(v) => Record::Variable {
                value: Cow::Borrowed(v.value.expose_plaintext()),
                description: b(&v.description),
                ownership,
            },
            Value::Connection(c) => Record::Connection {
                conn_type: b(&c.conn_type),
                description: b(&c.description),
                host: b(&c.host),
                login: b(&c.login),
                password: bs(&c.password),
                schema: b(&c.schema),
                port: c.port,
                extra: bs(&c.extra),
                ownership,
            },
        }
    }

    /// The exact length of the record's JSON, counted without building it.
    fn json_len(&self) -> usize {
        let mut n = Counter(0);
        serde_json::to_writer(&mut n, self).expect("a record always serializes");
        n.0
    }

    /// The JSON of the record in a buffer of exactly its length plus `room` spare bytes (counted
    /// first), so it never reallocates (which would leave a plaintext copy behind) and costs the
    /// record's size once, not a worst-case multiple of it; zeroized on drop.
    fn to_zeroized_json(&self, room: usize) -> Zeroizing<Vec<u8>> {
        let len = self.json_len();
        let mut buf = Zeroizing::new(Vec::with_capacity(len + room));
        serde_json::to_writer(&mut *buf, self).expect("a record always serializes");
        debug_assert_eq!(buf.len(), len);
        buf
    }

    fn into_entry(self, id: &ItemId) -> Option<Entry> {
        let (value, ownership) = match self {
            Record::Absent | Record::Unreadable => return None,
            Record::Variable { value, description, ownership } => (
                Value::Variable(Variable { value: SecretValue::new(value.into_owned()), description: owned(description) }),
                ownership,
            ),
            Record::Connection { conn_type, description, host, login, password, schema, port, extra, ownership } => (
                Value::Connection(Connection {
                    conn_type: owned(conn_type),
                    description: owned(description),
                    host: owned(host),
                    login: owned(login),
                    password: secret(password),
                    schema: owned(schema),
                    port,
                    extra: secret(extra),
                }),
                ownership,
            ),
        };
        Some(Entry { id: id.clone(), value, meta: Meta { ownership, version: None, name: None } })
    }
}

/// What a snapshot holds for one item.
#[derive(Debug)]
pub enum Prior {
    Absent,
    Unreadable,
    Present(Entry),
}

fn aad(run_id: &str, target: &str, id: &ItemId) -> Vec<u8> {
    let mut a = Vec::new();
    for part in [run_id, target, id.kind.as_str(), id.id.as_str()] {
        a.extend_from_slice(&(part.len() as u64).to_be_bytes());
        a.extend_from_slice(part.as_bytes());
    }
    a
}

/// Seal one item's prior state: `(nonce, ciphertext || tag)`.
pub fn seal(key: &SnapshotKey, run_id: &str, target: &str, id: &ItemId, prior: Option<&Entry>, unreadable: bool) -> (Vec<u8>, Vec<u8>) {
    let record = match prior {
        Some(e) => Record::of_entry(&e.value, e.meta.ownership),
        None if unreadable => Record::Unreadable,
        None => Record::Absent,
    };
    // Room for the tag: the ciphertext is sealed in place and the buffer handed out as is.
    let mut buf = record.to_zeroized_json(16);
    let mut nonce = [0u8; 24];
    rand::rng().fill_bytes(&mut nonce);
    let tag = key
        .cipher()
        .encrypt_inout_detached(&XNonce::from(nonce), &aad(run_id, target, id), buf.as_mut_slice().into())
        .expect("XChaCha20-Poly1305 takes any record size");
    // The buffer now holds ciphertext only: append the tag and move it out (no copy).
    buf.extend_from_slice(&tag);
    (nonce.to_vec(), std::mem::take(&mut *buf))
}

/// Open one sealed record.
pub fn open(key: &SnapshotKey, run_id: &str, target: &str, id: &ItemId, nonce: &[u8], sealed: &[u8]) -> Result<Prior, StateError> {
    let bad = |why| StateError::Sealed { run: run_id.to_string(), id: id.to_string(), why };
    let nonce: [u8; 24] = nonce.try_into().map_err(|_| bad("bad nonce length"))?;
    if sealed.len() < 16 {
        return Err(bad("truncated"));
    }
    let (ct, tag) = sealed.split_at(sealed.len() - 16);
    let mut buf = Zeroizing::new(ct.to_vec());
    key.cipher()
        .decrypt_inout_detached(&XNonce::from(nonce), &aad(run_id, target, id), buf.as_mut_slice().into(), tag.try_into().expect("16 bytes"))
        .map_err(|_| bad("wrong snapshot key, or the record was altered"))?;
    let record: Record<'_> = serde_json::from_slice(&buf).map_err(|_| bad("not a snapshot record"))?;
    Ok(match record {
        Record::Absent => Prior::Absent,
        Record::Unreadable => Prior::Unreadable,
        r => Prior::Present(r.into_entry(id).expect("present record")),
    })
}

impl StateDb {
    /// Ids already snapshotted for `run_id` (a resumed run never re-snapshots them).
    pub async fn snapshotted(&self, run_id: &str) -> Result<std::collections::BTreeSet<ItemId>, StateError> {
        let rows: Vec<(String, String)> = on_pool!(self, p =>
            sqlx::query_as("SELECT item_kind, item_id FROM snapshots WHERE run_id = $1").bind(run_id).fetch_all(p).await)
        .map_err(|e| self.db_err("read snapshots", e))?;
        Ok(rows.into_iter().filter_map(|(k, id)| parse_kind(&k).map(|k| ItemId::new(k, id))).collect())
    }

    /// Decrypt the whole snapshot of `run_id` (taken of `target`).
    pub async fn load_snapshot(&self, key: &SnapshotKey, run_id: &str, target: &str) -> Result<Vec<(ItemId, Prior)>, StateError> {
        let rows: Vec<(String, String, Vec<u8>, Vec<u8>)> = on_pool!(self, p =>
            sqlx::query_as("SELECT item_kind, item_id, nonce, sealed FROM snapshots WHERE run_id = $1 ORDER BY item_kind, item_id")
                .bind(run_id).fetch_all(p).await)
        .map_err(|e| self.db_err("read snapshots", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for (k, id, nonce, sealed) in rows {
            let Some(kind) = parse_kind(&k) else { continue };
            let id = ItemId::new(kind, id);
            let prior = open(key, run_id, target, &id, &nonce, &sealed)?;
            out.push((id, prior));
        }
        Ok(out)
    }
}

/// The snapshot of a run as an inventory: what was present before it (for [`crate::store::snapshot`]).
pub fn inventory_of(priors: Vec<(ItemId, Prior)>) -> Inventory {
    priors
        .into_iter()
        .filter_map(|(_, p)| match p {
            Prior::Present(e) => Some(e),
            _ => None,
        })
        .collect()
}

pub(crate) fn parse_kind(s: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.as_str() == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SnapshotKey {
        SnapshotKey::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap()
    }

    #[test]
    fn a_record_round_trips_and_holds_no_plaintext() {
        let k = key();
        let mut c = Connection::default();
        c.password = Some(SecretValue::from("canary-pw-81f2"));
        c.extra = Some(SecretValue::from(r#"{"token": "canary-extra-81f2"}"#));
        c.host = Some("db.internal".into());
        let e = Entry::connection("warehouse", c.clone());
        let (nonce, sealed) = seal(&k, "run1", "memory:t", &e.id, Some(&e), false);
        assert_eq!(nonce.len(), 24);
        let raw = String::from_utf8_lossy(&sealed);
        assert!(!raw.contains("canary") && !raw.contains("db.internal"), "{raw}");
        match open(&k, "run1", "memory:t", &e.id, &nonce, &sealed).unwrap() {
            Prior::Present(got) => assert_eq!(got.value, Value::Connection(c)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn associated_data_binds_run_store_and_item() {
        let k = key();
        let e = Entry::variable("a", "v");
        let (nonce, sealed) = seal(&k, "run1", "memory:t", &e.id, Some(&e), false);
        assert!(open(&k, "run2", "memory:t", &e.id, &nonce, &sealed).is_err());
        assert!(open(&k, "run1", "memory:u", &e.id, &nonce, &sealed).is_err());
        assert!(open(&k, "run1", "memory:t", &ItemId::variable("b"), &nonce, &sealed).is_err());
        let other = SnapshotKey::parse(&"11".repeat(32)).unwrap();
        assert!(open(&other, "run1", "memory:t", &e.id, &nonce, &sealed).is_err());
        // Fresh nonce per record.
        let (nonce2, _) = seal(&k, "run1", "memory:t", &e.id, Some(&e), false);
        assert_ne!(nonce, nonce2);
    }

    #[test]
    fn absent_and_unreadable_round_trip() {
        let k = key();
        let id = ItemId::variable("x");
        let (n, s) = seal(&k, "r", "t", &id, None, false);
        assert!(matches!(open(&k, "r", "t", &id, &n, &s).unwrap(), Prior::Absent));
        let (n, s) = seal(&k, "r", "t", &id, None, true);
        assert!(matches!(open(&k, "r", "t", &id, &n, &s).unwrap(), Prior::Unreadable));
    }

    #[test]
    fn keys_parse_strictly_and_never_print() {
        assert!(SnapshotKey::parse("short").is_err());
        assert!(SnapshotKey::parse(&"zz".repeat(32)).is_err());
        let k = SnapshotKey::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").unwrap();
        assert_eq!(k.id(), key().id());
        assert!(!format!("{k:?}").contains("AAEC"));
        // Fingerprints are keyed and bound to the id.
        let v = Value::Variable(Variable::new("same"));
        assert_ne!(k.value_fingerprint(&ItemId::variable("a"), Some(&v)), k.value_fingerprint(&ItemId::variable("b"), Some(&v)));
        let other = SnapshotKey::parse(&"11".repeat(32)).unwrap();
        assert_ne!(k.value_fingerprint(&ItemId::variable("a"), Some(&v)), other.value_fingerprint(&ItemId::variable("a"), Some(&v)));
    }

    /// Issue 16 item 13: the record buffer is sized exactly (a 300 MB value costs 300 MB, not the
    /// 6× worst case of JSON escaping reserved up front), the sealed record is the buffer itself,
    /// and the streamed fingerprint is the one `fingerprint` computes over the whole JSON.
    #[test]
    fn buffers_are_sized_exactly() {
        let k = key();
        // Plain bytes and bytes JSON escapes sixfold (control characters become \u00XX).
        for value in ["v".repeat(100_000), "\u{1}".repeat(50_000), "\"quoted\" \\ caf\u{e9}\n".repeat(1_000)] {
            let e = Entry::variable("big", value.as_str());
            let record = Record::of_entry(&e.value, e.meta.ownership);
            let len = record.json_len();
            let buf = record.to_zeroized_json(16);
            assert_eq!(buf.len(), len);
            assert_eq!(buf.capacity(), len + 16, "the record buffer is reserved exactly");
            let (_, sealed) = seal(&k, "r", "t", &e.id, Some(&e), false);
            assert_eq!(sealed.len(), len + 16);
            assert_eq!(sealed.capacity(), len + 16, "the sealed record is the buffer, not a copy");
            let whole = record.to_zeroized_json(0);
            assert_eq!(
                k.value_fingerprint(&e.id, Some(&e.value)),
                k.fingerprint(&[b"value", e.id.kind.as_str().as_bytes(), e.id.id.as_bytes(), &whole]),
            );
        }
    }
}
