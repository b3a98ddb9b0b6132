//! Bounds on what reading one project may cost: file sizes, nodes and text built, and
//! nesting depths, so a hostile file gets a located error instead of exhausting the host.
//!
//! Every bound is far above what a hand-written or generated Compose file needs (the
//! largest real files have tens of thousands of nodes) and far below what would take
//! the reader past half a gigabyte of memory or ten seconds in a debug build.

use std::cell::Cell;

/// Largest file the reader opens: Compose and baton files, `include`, `extends` and env
/// files alike.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Bytes read from all the files of one load together (an `include` or `env_file`
/// repeated many times reads its file each time).
pub const MAX_READ_BYTES: usize = 64 << 20;

/// Files read in one load (Compose, baton and env files): an `include` of the same file
/// counts each time (each costs system calls and a parse, however small the file); the
/// env file services share is read once.
pub const MAX_FILES: usize = 1000;

/// YAML nodes built in one load, counting every copy that anchors, aliases, merge keys
/// and `extends` make, and every port of an expanded port range.
pub const MAX_NODES: usize = 1_000_000;

/// Bytes of scalar text built in one load, counting alias copies and the values
/// interpolation produces.
pub const MAX_TEXT_BYTES: usize = 64 << 20;

/// Services in one project, enabled or not. A service is a few nodes in the file but a
/// few kilobytes once normalised; ten thousand is more than one engine runs.
pub const MAX_SERVICES: usize = 10_000;

/// Nesting of YAML collections in one file. The deepest Compose key path has eight
/// levels; the node tree is walked recursively, so this also bounds stack use.
pub const MAX_DEPTH: usize = 64;

/// Length of a mapping key. Keys become dotted paths (`services.web.ports[3]`) built for
/// many nodes, so a long key would cost its length once per node below it.
pub const MAX_KEY_BYTES: usize = 1024;

/// Nesting of `${…}` inside a default or alternative (`${A:-${B:-…}}`).
pub const MAX_INTERPOLATION_DEPTH: usize = 16;

/// Links in one `extends` chain (a service that extends a service that extends …).
pub const MAX_EXTENDS_DEPTH: usize = 64;

/// Nesting of `include` (a file that includes a file that includes …).
pub const MAX_INCLUDE_DEPTH: usize = 32;

/// What one load has spent so far against [`MAX_NODES`], [`MAX_TEXT_BYTES`],
/// [`MAX_READ_BYTES`] and [`MAX_FILES`]. Each call charges its amount and says whether the bound holds;
/// the caller turns a refusal into an error located where the cost arose.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    nodes: Cell<usize>,
    text: Cell<usize>,
    read: Cell<usize>,
    files: Cell<usize>,
}

impl Budget {
    pub fn nodes(&self, n: usize) -> Result<(), String> {
        charge(&self.nodes, n, MAX_NODES).map_err(|()| {
            format!(
                "the project grows beyond {MAX_NODES} yaml nodes, counting the copies that \
                 aliases, merge keys, extends and port ranges make"
            )
        })
    }

    pub fn text(&self, n: usize) -> Result<(), String> {
        charge(&self.text, n, MAX_TEXT_BYTES).map_err(|()| {
            format!(
                "the project's values grow beyond {} MiB of text, counting the copies that \
                 aliases and interpolation make",
                MAX_TEXT_BYTES >> 20
            )
        })
    }

    /// One more file to read.
    pub fn file(&self) -> Result<(), String> {
        charge(&self.files, 1, MAX_FILES).map_err(|()| {
            format!(
                "more than {MAX_FILES} files read for one project (each include of a file counts)"
            )
        })
    }

    /// `n` more bytes read.
    pub fn read(&self, n: usize) -> Result<(), String> {
        charge(&self.read, n, MAX_READ_BYTES).map_err(|()| {
            format!(
                "the project's files add up to more than {} MiB",
                MAX_READ_BYTES >> 20
            )
        })
    }

    /// Text bytes that may still be built.
    pub fn text_left(&self) -> usize {
        MAX_TEXT_BYTES.saturating_sub(self.text.get())
    }
}

/// Adds `n` to `spent` when the total stays within `max`; a refused charge spends
/// nothing (the caller did not build what it asked for).
fn charge(spent: &Cell<usize>, n: usize, max: usize) -> Result<(), ()> {
    let total = spent.get().saturating_add(n);
    if total > max {
        return Err(());
    }
    spent.set(total);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_add_up_to_the_bound() {
        let b = Budget::default();
        assert!(b.nodes(MAX_NODES - 1).is_ok());
        assert!(b.nodes(1).is_ok());
        assert!(b.nodes(1).is_err());
        assert!(b.text(usize::MAX).is_err());
        assert_eq!(
            b.text_left(),
            MAX_TEXT_BYTES,
            "a refused charge spends nothing"
        );
        assert!(b.read(MAX_READ_BYTES).is_ok());
        assert!(b.read(1).is_err());
        for _ in 0..MAX_FILES {
            assert!(b.file().is_ok());
        }
        assert!(b.file().is_err());
    }
}
