//! A store kept as one JSON file per item under a directory, each write an atomic rename. Not an
//! Airflow backend and test-only by design (no config can name it: see
//! [`super::registry::TEST_ONLY_KINDS`]): it exists so tests have a target that is durable per
//! item, with ownership marks and versions, and no server to start.
//!
//! Layout: `<path>/variables/<hex id>.json`, `<path>/connections/<hex id>.json`, each
//! `{"id", "version", "owner", "value": {…}}`. Values are plaintext on disk, like Airflow's own
//! local-filesystem backend files: use it for tests only.

use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::{Capabilities, Precondition, Store, StoreError};
use crate::model::{Connection, Entry, Inventory, ItemError, ItemErrorKind, ItemId, Kind, Meta, Ownership, SecretValue, Value, Variable};

const OWNER: &str = "airflow-secrets-sync";

pub struct DirStore {
    root: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct File {
    id: String,
    version: u64,
    owner: Option<String>,
    value: Map<String, Json>,
}

impl DirStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let store = Self { root: root.into() };
        for kind in Kind::ALL {
            // Plaintext temp files an interrupted write (kill -9) left behind.
            super::atomic::remove_stale_in_dir(&store.dir(kind));
        }
        store
    }

    fn dir(&self, kind: Kind) -> PathBuf {
        self.root.join(kind.plural())
    }

    fn file(&self, id: &ItemId) -> PathBuf {
        use sha2::Digest;
        let hex: String = sha2::Sha256::digest(id.id.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        self.dir(id.kind).join(format!("{hex}.json"))
    }

    fn err(&self, op: &'static str, e: impl fmt::Display) -> StoreError {
        StoreError::Backend { store: self.to_string(), op, reason: e.to_string() }
    }

    fn load(&self, kind: Kind, path: &Path) -> Result<Option<(ItemId, Result<Entry, ItemError>)>, StoreError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.err("read", e)),
        };
        let f: File = match serde_json::from_slice(&text) {
            Ok(f) => f,
            Err(_) => {
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
                let id = ItemId::new(kind, format!("(unparseable file {stem})"));
                return Ok(Some((id, Err(ItemError::new(ItemErrorKind::Unparseable, "not a dir-store item file")))));
            }
        };
        let id = ItemId::new(kind, f.id.clone());
        let ownership = if f.owner.as_deref() == Some(OWNER) { Ownership::Ours } else { Ownership::Foreign };
        let meta = Meta { ownership, version: Some(f.version.to_string()), name: Some(f.id.clone()) };
        let s = |k: &str| f.value.get(k).and_then(Json::as_str).map(str::to_string);
        let value = match kind {
            Kind::Variable => match f.value.get("value").and_then(Json::as_str) {
                Some(v) => Ok(Value::Variable(Variable { value: SecretValue::new(v), description: s("description") })),
                None => Err(ItemError::new(ItemErrorKind::Unparseable, "no value")),
            },
            Kind::Connection => Ok(Value::Connection(Connection {
                conn_type: s("conn_type"),
                description: s("description"),
                host: s("host"),
                login: s("login"),
                password: s("password").map(SecretValue::new),
                schema: s("schema"),
                port: f.value.get("port").and_then(Json::as_u64).and_then(|p| u16::try_from(p).ok()),
                extra: s("extra").map(SecretValue::new),
            })),
        };
        Ok(Some((id.clone(), value.map(|value| Entry { id, value, meta }))))
    }

    fn current_version(&self, id: &ItemId) -> Result<Option<u64>, StoreError> {
        match self.load(id.kind, &self.file(id))? {
            Some((_, Ok(e))) => Ok(e.meta.version.and_then(|v| v.parse().ok())),
            Some((_, Err(_))) => Ok(Some(0)),
            None => Ok(None),
        }
    }
}

impl fmt::Display for DirStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dir:{}", self.root.display())
    }
}

#[async_trait]
impl Store for DirStore {
    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::full();
        caps.can_tag = true;
        caps.conditional_writes = true;
        caps.variable_description = true;
        caps.read_batch = 100;
        caps.write_concurrency = 8;
        caps
    }

    async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError> {
        let mut inv = Inventory::new();
        let rd = match std::fs::read_dir(self.dir(kind)) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(inv),
            Err(e) => return Err(self.err("list", e)),
        };
        for ent in rd {
            let path = ent.map_err(|e| self.err("list", e))?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match self.load(kind, &path)? {
                Some((_, Ok(e))) => inv.insert(e),
                Some((id, Err(err))) => inv.insert_error(id, err),
                None => {}
            }
        }
        Ok(inv)
    }

    async fn read(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        let mut inv = Inventory::new();
        for id in ids {
            match self.load(id.kind, &self.file(id))? {
                Some((_, Ok(e))) => inv.insert(e),
                Some((_, Err(err))) => inv.insert_error(id.clone(), err),
                None => {}
            }
        }
        Ok(inv)
    }

    async fn write(&self, entry: &Entry, pre: &Precondition) -> Result<(), StoreError> {
        let current = self.current_version(&entry.id)?;
        let conflict = match (pre, current) {
            (Precondition::Absent, Some(_)) => true,
            (Precondition::Version(want), Some(have)) => *want != have.to_string(),
            (Precondition::Version(_), None) => true,
            _ => false,
        };
        if conflict {
            return Err(StoreError::Conflict { store: self.to_string(), id: entry.id.clone() });
        }
        let mut value = Map::new();
        let mut put = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                value.insert(k.into(), Json::String(v.into()));
            }
        };
        match &entry.value {
            Value::Variable(v) => {
                put("value", Some(v.value.expose_plaintext()));
                put("description", v.description.as_deref());
            }
            Value::Connection(c) => {
                put("conn_type", c.conn_type.as_deref());
                put("description", c.description.as_deref());
                put("host", c.host.as_deref());
                put("login", c.login.as_deref());
                put("password", c.password.as_ref().map(SecretValue::expose_plaintext));
                put("schema", c.schema.as_deref());
                put("extra", c.extra.as_ref().map(SecretValue::expose_plaintext));
                if let Some(p) = c.port {
                    value.insert("port".into(), Json::from(p));
                }
            }
        }
        let f = File { id: entry.id.id.clone(), version: current.unwrap_or(0) + 1, owner: Some(OWNER.into()), value };
        let path = self.file(&entry.id);
        let dir = self.dir(entry.id.kind);
        std::fs::create_dir_all(&dir).map_err(|e| self.err("write", e))?;
        // Write a temp file and rename it over: a reader (or a crash) sees the old or the new
        // item, never half of one (mode and owner of an existing file kept, symlinks refused).
        let text = zeroize::Zeroizing::new(serde_json::to_string(&f).map_err(|e| self.err("write", e))?);
        super::atomic::write_atomically(self, &path, &text, None)?;
        Ok(())
    }

    async fn delete(&self, id: &ItemId) -> Result<(), StoreError> {
        match std::fs::remove_file(self.file(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.err("delete", e)),
            _ => Ok(()),
        }
    }
}

