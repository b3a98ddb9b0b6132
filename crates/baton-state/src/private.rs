//! Private files and directories: the state directory holds resolved `environment:`
//! values, pipeline logs and tokens, so it is 0700 and its files 0600, created that way.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every directory baton creates under its state directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file baton creates under its state directory.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) with mode 0700 from the start. An existing
/// directory is left as it is: it may be one baton did not make.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Opens `path` for appending, creating it with mode 0600.
pub fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Creates (or truncates) `path` with mode 0600 for writing.
pub fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Opens `path` for writing without truncating, creating it with mode 0600 (lock files).
pub fn open_or_create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
}

/// Removes group and other permissions from an existing file or directory.
pub fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    let meta = std::fs::metadata(path)?;
    let current = meta.permissions().mode() & 0o7777;
    if current & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_directories_and_files_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        let f = dir.join("log");
        drop(append(&f).unwrap());
        assert_eq!(mode(&f), 0o600);
        let g = dir.join("lock");
        drop(open_or_create(&g).unwrap());
        assert_eq!(mode(&g), 0o600);
    }

    #[test]
    fn an_existing_directory_is_left_alone_and_tighten_removes_others_bits() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("old");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o755);
        tighten(&dir, DIR_MODE).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }
}
