//! The artifact store: files jobs leave, kept by content (`<state>/artifacts/sha256/ab/abcd…`)
//! with their metadata in the state store, handed to the jobs that need them, and pruned
//! by `keep_last` / `expire_in`.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The content-addressed blob directory of a state directory.
pub fn blob_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("artifacts").join("sha256")
}

pub fn blob_path(state_dir: &Path, sha: &str) -> PathBuf {
    let prefix = sha.get(..2).unwrap_or("00");
    blob_dir(state_dir).join(prefix).join(sha)
}

/// The files `patterns` name under `workspace` (a file, a directory taken whole, or a
/// glob), as sorted relative paths.
pub fn collect(workspace: &Path, patterns: &[String]) -> std::io::Result<Vec<String>> {
    let mut out = BTreeSet::new();
    for p in patterns {
        let full = workspace.join(p);
        let pattern = full.to_string_lossy().into_owned();
        let matches: Vec<PathBuf> = match glob::glob(&pattern) {
            Ok(paths) => paths.filter_map(Result::ok).collect(),
            Err(_) => vec![full],
        };
        for m in matches {
            walk(&m, &mut |f| {
                if let Ok(rel) = f.strip_prefix(workspace) {
                    out.insert(rel.to_string_lossy().into_owned());
                }
            })?;
        }
    }
    Ok(out.into_iter().collect())
}

fn walk(p: &Path, f: &mut dyn FnMut(&Path)) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for e in entries {
            walk(&e, f)?;
        }
    } else if meta.is_file() {
        f(p);
    }
    Ok(())
}

/// Stores one file by content; returns its sha256 and size.
pub fn store_file(state_dir: &Path, file: &Path) -> std::io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut r = std::fs::File::open(file)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    let sha = hex::encode(h.finalize());
    let dest = blob_path(state_dir, &sha);
    if !dest.exists() {
        if let Some(dir) = dest.parent() {
            baton_state::private::create_dir(dir)?;
        }
        let tmp = dest.with_extension(format!("tmp{}", std::process::id()));
        std::fs::copy(file, &tmp)?;
        // The copy has the job's file mode; the blob is private like the rest of the
        // state directory (the temporary name sits in a 0700 directory until then).
        std::fs::set_permissions(
            &tmp,
            std::os::unix::fs::PermissionsExt::from_mode(baton_state::private::FILE_MODE),
        )?;
        std::fs::rename(&tmp, &dest)?;
    }
    Ok((sha, size))
}

/// Puts a stored blob at `rel` under `workspace` (a copy: a job may change it).
pub fn materialize(
    state_dir: &Path,
    sha: &str,
    workspace: &Path,
    rel: &str,
) -> std::io::Result<()> {
    let dest = workspace.join(rel);
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(blob_path(state_dir, sha), dest).map(|_| ())
}

/// Removes blobs no record refers to any more; returns how many.
pub fn collect_garbage(state_dir: &Path, referenced: &BTreeSet<String>) -> usize {
    let mut removed = 0;
    let Ok(prefixes) = std::fs::read_dir(blob_dir(state_dir)) else {
        return 0;
    };
    for p in prefixes.filter_map(Result::ok) {
        let Ok(files) = std::fs::read_dir(p.path()) else {
            continue;
        };
        for f in files.filter_map(Result::ok) {
            let name = f.file_name().to_string_lossy().into_owned();
            if !referenced.contains(&name) && std::fs::remove_file(f.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// Copies a directory tree's files into another (for caches).
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut result = Ok(());
    walk(from, &mut |f| {
        if let Ok(rel) = f.strip_prefix(from) {
            let dest = to.join(rel);
            let r = dest
                .parent()
                .map(std::fs::create_dir_all)
                .unwrap_or(Ok(()))
                .and_then(|_| std::fs::copy(f, &dest).map(|_| ()));
            if r.is_err() && result.is_ok() {
                result = r;
            }
        }
    })?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_stored_by_content_collected_by_pattern_and_collected_as_garbage() {
        let state = tempfile::tempdir().unwrap();
        let ws = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(ws.path().join("out/sub")).unwrap();
        std::fs::write(ws.path().join("out/a.txt"), "same").unwrap();
        std::fs::write(ws.path().join("out/sub/b.txt"), "same").unwrap();
        std::fs::write(ws.path().join("app.bin"), "bin").unwrap();
        std::fs::write(ws.path().join("other.log"), "no").unwrap();
        let files = collect(ws.path(), &["out".into(), "*.bin".into(), "missing".into()]).unwrap();
        assert_eq!(files, ["app.bin", "out/a.txt", "out/sub/b.txt"]);
        let (a, _) = store_file(state.path(), &ws.path().join("out/a.txt")).unwrap();
        let (b, size) = store_file(state.path(), &ws.path().join("out/sub/b.txt")).unwrap();
        assert_eq!((a.as_str(), size), (b.as_str(), 4));
        let dest = tempfile::tempdir().unwrap();
        materialize(state.path(), &a, dest.path(), "x/y.txt").unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.path().join("x/y.txt")).unwrap(),
            "same"
        );
        assert_eq!(collect_garbage(state.path(), &[a.clone()].into()), 0);
        assert_eq!(collect_garbage(state.path(), &BTreeSet::new()), 1);
    }
}
