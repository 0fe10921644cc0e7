//! LocalFilesystemBackend `.json` files: a top-level object, rewritten with every other entry kept.

use super::*;

// ---- JSON --------------------------------------------------------------------------------------

pub(super) fn parse_json(text: &str) -> Result<Map<String, Json>, String> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Json>(text) {
        Ok(Json::Object(m)) => Ok(m),
        Ok(other) => Err(format!("the file holds {}, not an object", json_type(&other))),
        Err(e) => Err(format!("not valid JSON (line {}, column {})", e.line(), e.column())),
    }
}

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
