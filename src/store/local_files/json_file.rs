//! Rewriting LocalFilesystemBackend `.json` files: one object, sorted keys, every other entry kept.

use super::*;
use crate::airflow::local_filesystem::parse_json;

pub(super) fn rewrite_json(text: &str, changes: &BTreeMap<String, Option<Rendered>>) -> Result<String, String> {
    let mut all: BTreeMap<String, Json> = parse_json(text)?.into_iter().collect();
    for (key, r) in changes {
        match r {
            Some(Rendered::Tree(v)) => {
                all.insert(key.clone(), v.clone());
            }
            _ => {
                all.remove(key);
            }
        }
    }
    let map: Map<String, Json> = all.into_iter().collect();
    let mut out = serde_json::to_string_pretty(&Json::Object(map)).map_err(|e| e.to_string())?;
    out.push('\n');
    Ok(out)
}
