//! Where a host lets its VMs' files be: the allowed directories (by default
//! `<state dir>/vms`) and the check that a path really resolves inside one of them.
//!
//! A path is resolved the way the kernel will open it: it must be absolute and free of
//! `..`, its parent directory is made canonical (symlinks followed), and an existing
//! file is followed to its target. Only then is it compared with the directories,
//! themselves canonical. The resolved path is what the host then uses and records.

use std::path::{Component, Path, PathBuf};

use crate::spec::{Boot, DiskSource, VmSpec};
use crate::VmError;

/// `p` with its directory made canonical by the OS (symlinks and `..` resolved), or as
/// it is when that directory cannot be resolved. For paths a user wrote in a file:
/// [`DiskDirs::resolve`] refuses `..`, so the CLI lets the OS resolve it first.
pub fn canonical_parent(p: &Path) -> PathBuf {
    match (p.parent(), p.file_name()) {
        (Some(dir), Some(name)) => dir
            .canonicalize()
            .map(|d| d.join(name))
            .unwrap_or_else(|_| p.to_path_buf()),
        _ => p.to_path_buf(),
    }
}

/// Every file path of `spec` (disks, backing images, kernel, initrd, ISO) through
/// [`canonical_parent`].
pub fn canonical_files(spec: &mut VmSpec) {
    let fix = |p: &mut PathBuf| *p = canonical_parent(p);
    for d in &mut spec.disks {
        match &mut d.source {
            DiskSource::Existing { path } => fix(path),
            DiskSource::New { backing, path, .. } => {
                backing.iter_mut().for_each(fix);
                path.iter_mut().for_each(fix);
            }
        }
    }
    match &mut spec.boot {
        Boot::Kernel { kernel, initrd, .. } => {
            fix(kernel);
            initrd.iter_mut().for_each(fix);
        }
        Boot::Iso { path } => fix(path),
        Boot::Disk => {}
    }
}

/// The canonical directories a host's VM files (disks, backing images and, for an
/// agent, kernels, initrds and ISOs) must be in.
#[derive(Debug, Clone)]
pub struct DiskDirs {
    dirs: Vec<PathBuf>,
}

impl DiskDirs {
    /// `dirs` made canonical; each must be an existing directory.
    pub fn new(dirs: &[PathBuf]) -> Result<DiskDirs, VmError> {
        let mut out: Vec<PathBuf> = Vec::new();
        for d in dirs {
            let c = d.canonicalize().map_err(|e| {
                VmError::Invalid(format!(
                    "allowed directory {}: {e} (it must exist)",
                    d.display()
                ))
            })?;
            if !c.is_dir() {
                return Err(VmError::Invalid(format!(
                    "allowed directory {}: not a directory",
                    d.display()
                )));
            }
            if !out.contains(&c) {
                out.push(c);
            }
        }
        Ok(DiskDirs { dirs: out })
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Where `path` (a file that may not exist yet) really is, when that is inside an
    /// allowed directory. `what` names it in the error ("disk path", "backing image").
    pub fn resolve(&self, what: &str, path: &Path) -> Result<PathBuf, VmError> {
        let refuse = |reason: String| VmError::NotAllowed {
            path: format!("{what} {}", path.display()),
            reason,
        };
        if !path.is_absolute() {
            return Err(refuse("not an absolute path".into()));
        }
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(refuse("'..' is not allowed in it".into()));
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(refuse("not a file path".into()));
        };
        let parent = parent
            .canonicalize()
            .map_err(|e| refuse(format!("its directory cannot be resolved: {e}")))?;
        let mut real = parent.join(name);
        if let Ok(meta) = std::fs::symlink_metadata(&real) {
            if meta.file_type().is_symlink() {
                // Followed like the kernel will; a dangling one would let a new file be
                // made wherever it points.
                real = real
                    .canonicalize()
                    .map_err(|e| refuse(format!("a symlink that cannot be resolved: {e}")))?;
            }
        }
        if !self.holds_path(&real) {
            let dirs = self
                .dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let shown = if real == path {
                String::new()
            } else {
                format!(" (it resolves to {})", real.display())
            };
            return Err(refuse(format!(
                "outside the directories this host allows for VM files{shown}: {dirs}; allow another with --disk-dir"
            )));
        }
        Ok(real)
    }

    /// [`DiskDirs::resolve`] for a file that must exist (a backing image, a kernel).
    pub fn resolve_existing(&self, what: &str, path: &Path) -> Result<PathBuf, VmError> {
        let real = self.resolve(what, path)?;
        if !real.is_file() {
            return Err(VmError::NotAllowed {
                path: format!("{what} {}", path.display()),
                reason: "not an existing file".into(),
            });
        }
        Ok(real)
    }

    /// True when `path` may be deleted as a VM file: a regular file (not a symlink)
    /// whose canonical location is inside an allowed directory.
    pub fn may_delete(&self, path: &Path) -> bool {
        let is_file = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
        is_file
            && self
                .resolve("file", path)
                .is_ok_and(|real| real.as_path() == path)
    }

    fn holds_path(&self, real: &Path) -> bool {
        self.dirs
            .iter()
            .any(|d| real.starts_with(d) && real != d.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Fixture {
        _tmp: tempfile::TempDir,
        allowed: PathBuf,
        outside: PathBuf,
        dirs: DiskDirs,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let allowed = root.join("allowed");
        let outside = root.join("outside");
        std::fs::create_dir_all(allowed.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(allowed.join("base.qcow2"), "").unwrap();
        std::fs::write(outside.join("secret"), "").unwrap();
        let dirs = DiskDirs::new(std::slice::from_ref(&allowed)).unwrap();
        Fixture {
            _tmp: tmp,
            allowed,
            outside,
            dirs,
        }
    }

    fn refused(r: Result<PathBuf, VmError>) -> String {
        match r {
            Err(e @ VmError::NotAllowed { .. }) => e.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn paths_inside_resolve_to_themselves() {
        let f = fixture();
        let new = f.allowed.join("sub/new.qcow2");
        assert_eq!(f.dirs.resolve("disk path", &new).unwrap(), new);
        let base = f.allowed.join("base.qcow2");
        assert_eq!(
            f.dirs.resolve_existing("backing image", &base).unwrap(),
            base
        );
        // `.` components are harmless and vanish.
        let dotted = PathBuf::from(format!("{}/./sub/x.qcow2", f.allowed.display()));
        assert_eq!(
            f.dirs.resolve("disk path", &dotted).unwrap(),
            f.allowed.join("sub/x.qcow2")
        );
    }

    #[test]
    fn escapes_are_refused_with_the_path_named() {
        let f = fixture();
        let e = refused(f.dirs.resolve("disk path", Path::new("/etc/shadow")));
        assert!(
            e.starts_with("disk path /etc/shadow: outside the directories"),
            "{e}"
        );
        assert!(e.contains(&f.allowed.display().to_string()), "{e}");
        let up = f.allowed.join("../outside/secret");
        assert!(refused(f.dirs.resolve("disk path", &up)).contains("'..' is not allowed"));
        assert!(refused(f.dirs.resolve("disk path", Path::new("rel.qcow2"))).contains("absolute"));
        assert!(refused(f.dirs.resolve("disk path", &f.allowed)).contains("outside"));
        assert!(refused(f.dirs.resolve("disk path", Path::new("/"))).contains("not a file path"));
        let missing_dir = f.allowed.join("nope/disk.qcow2");
        assert!(refused(f.dirs.resolve("disk path", &missing_dir)).contains("cannot be resolved"));
        let e = refused(
            f.dirs
                .resolve_existing("backing image", &f.allowed.join("none")),
        );
        assert!(e.contains("not an existing file"), "{e}");
    }

    #[test]
    fn symlinks_are_followed_before_the_check() {
        let f = fixture();
        // A link to a file outside, a link to a directory outside, a dangling link
        // (qemu-img would create its target).
        symlink(f.outside.join("secret"), f.allowed.join("link.qcow2")).unwrap();
        symlink(&f.outside, f.allowed.join("door")).unwrap();
        symlink(f.outside.join("new"), f.allowed.join("dangling.qcow2")).unwrap();
        let e = refused(f.dirs.resolve("disk path", &f.allowed.join("link.qcow2")));
        assert!(e.contains("resolves to"), "{e}");
        refused(f.dirs.resolve("disk path", &f.allowed.join("door/x.qcow2")));
        refused(
            f.dirs
                .resolve("disk path", &f.allowed.join("dangling.qcow2")),
        );
        // A link that stays inside is fine and resolves to its target.
        symlink(f.allowed.join("base.qcow2"), f.allowed.join("alias.qcow2")).unwrap();
        assert_eq!(
            f.dirs
                .resolve("disk path", &f.allowed.join("alias.qcow2"))
                .unwrap(),
            f.allowed.join("base.qcow2")
        );
        // An allowed directory reached through a symlink counts as itself.
        let via = f.outside.join("to-allowed");
        symlink(&f.allowed, &via).unwrap();
        let dirs = DiskDirs::new(&[via]).unwrap();
        assert!(dirs.resolve("disk path", &f.allowed.join("x")).is_ok());
    }

    #[test]
    fn only_real_files_inside_may_be_deleted() {
        let f = fixture();
        assert!(f.dirs.may_delete(&f.allowed.join("base.qcow2")));
        assert!(!f.dirs.may_delete(&f.outside.join("secret")));
        assert!(!f.dirs.may_delete(&f.allowed.join("sub")));
        assert!(!f.dirs.may_delete(&f.allowed.join("missing")));
        symlink(f.outside.join("secret"), f.allowed.join("link")).unwrap();
        assert!(!f.dirs.may_delete(&f.allowed.join("link")));
        symlink(f.allowed.join("base.qcow2"), f.allowed.join("inner-link")).unwrap();
        assert!(
            !f.dirs.may_delete(&f.allowed.join("inner-link")),
            "the link, not its target"
        );
        assert!(!f.dirs.may_delete(Path::new("/etc/shadow")));
    }

    #[test]
    fn paths_from_a_file_are_resolved_by_the_os_first() {
        let f = fixture();
        let written = f.allowed.join("sub/../base.qcow2");
        assert_eq!(canonical_parent(&written), f.allowed.join("base.qcow2"));
        assert!(f
            .dirs
            .resolve("disk path", &canonical_parent(&written))
            .is_ok());
        let nowhere = Path::new("/no/such/dir/../x");
        assert_eq!(canonical_parent(nowhere), nowhere);
    }

    #[test]
    fn allowed_directories_must_exist() {
        let f = fixture();
        assert!(DiskDirs::new(&[f.allowed.join("missing")]).is_err());
        assert!(DiskDirs::new(&[f.allowed.join("base.qcow2")]).is_err());
    }
}
