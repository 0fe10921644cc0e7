//! `tests/data/` is a vendored copy of the shared golden vectors (`../shared/testdata`, see
//! `tests/data/PROVENANCE.md`). When the shared folder is laid next to the repository, the two
//! trees must be byte-identical; this test names every file that differs. Without `../shared` (a
//! clone of the repository alone) it skips, saying so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The one file that exists only in the vendored copy.
const REPO_ONLY: &str = "PROVENANCE.md";

/// Every regular file under `root`, by path relative to it (`/`-separated), with its bytes.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                let rel = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
                out.insert(rel, std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// What differs between the shared tree and the vendored one, one line per file.
fn differences(shared: &Path, vendored: &Path) -> Vec<String> {
    let (a, b) = (tree(shared), tree(vendored));
    let mut out = Vec::new();
    for (name, bytes) in &a {
        match b.get(name) {
            None => out.push(format!("{name}: only in ../shared/testdata (missing from tests/data)")),
            Some(v) if v != bytes => out.push(format!("{name}: differs ({} bytes shared, {} bytes vendored)", bytes.len(), v.len())),
            Some(_) => {}
        }
    }
    for name in b.keys().filter(|n| !a.contains_key(*n) && n.as_str() != REPO_ONLY) {
        out.push(format!("{name}: only in tests/data (not in ../shared/testdata)"));
    }
    out
}

fn vendored_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

#[test]
fn vendored_vectors_are_byte_identical_to_shared_testdata() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata");
    if !shared.is_dir() {
        eprintln!("skipped: {} does not exist (a clone without ../shared): nothing to compare tests/data with", shared.display());
        return;
    }
    let diffs = differences(&shared, &vendored_dir());
    assert!(
        diffs.is_empty(),
        "tests/data is out of step with ../shared/testdata ({} files; copy the shared tree over, see tests/data/PROVENANCE.md):\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn the_vendored_copy_has_every_vector_file() {
    // A clone alone must run the tests: the vendored tree holds the vectors, the generators and
    // the Airflow-made metastores, not only some of them.
    let files = tree(&vendored_dir());
    for name in [
        "README.md",
        REPO_ONLY,
        "backend_names.json",
        "connections.json",
        "fernet.json",
        "generate/regenerate.sh",
        "metastore/airflow-3.3.2.db",
        "metastore/airflow-2.10.5.db",
        "metastore/airflow-3.3.2.db.MANIFEST.json",
        "metastore/airflow-2.10.5.db.MANIFEST.json",
    ] {
        assert!(files.contains_key(name), "tests/data/{name} is missing");
    }
}

#[test]
fn the_comparison_names_each_file_that_differs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for root in [&a, &b] {
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("same.json"), "{}").unwrap();
    }
    std::fs::write(a.join("sub/changed.db"), [1u8, 2, 3]).unwrap();
    std::fs::write(b.join("sub/changed.db"), [1u8, 2, 4]).unwrap();
    std::fs::write(a.join("gone.json"), "x").unwrap();
    std::fs::write(b.join("extra.json"), "y").unwrap();
    std::fs::write(b.join(REPO_ONLY), "z").unwrap();
    let diffs = differences(&a, &b);
    assert_eq!(
        diffs,
        [
            "gone.json: only in ../shared/testdata (missing from tests/data)",
            "sub/changed.db: differs (3 bytes shared, 3 bytes vendored)",
            "extra.json: only in tests/data (not in ../shared/testdata)",
        ],
        "{diffs:#?}"
    );
}
