//! Reading a spec file's text: regular files only, at most `MAX_FILE_BYTES`, a UTF-8
//! byte order mark skipped, and invalid UTF-8 reported at its line and column.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{ErrorKind, SpecError};
use crate::limits::{Budget, MAX_FILE_BYTES};

/// The text of `path`; `shown` is the name errors give it, `what` says what kind of file
/// it is ("file", "env file").
pub fn text(path: &Path, shown: &Path, what: &str, budget: &Budget) -> Result<String, SpecError> {
    let io = |message: String| SpecError::new(ErrorKind::Io, "", message).with_file(shown.into());
    let limit =
        |message: String| SpecError::new(ErrorKind::Limit, "", message).with_file(shown.into());
    budget.file().map_err(limit)?;
    // Ask before opening: opening a FIFO would wait for a writer.
    let meta = std::fs::metadata(path).map_err(|e| io(format!("cannot read {what}: {e}")))?;
    if !meta.is_file() {
        return Err(io(format!(
            "cannot read {what}: not a regular file ({})",
            file_type(&meta)
        )));
    }
    let file = std::fs::File::open(path).map_err(|e| io(format!("cannot read {what}: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io(format!("cannot read {what}: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(limit(format!(
            "the {what} is larger than {} MiB, the most baton reads",
            MAX_FILE_BYTES >> 20
        )));
    }
    budget.read(bytes.len()).map_err(limit)?;
    decode(bytes, shown, what)
}

/// UTF-8 text without a leading byte order mark.
fn decode(mut bytes: Vec<u8>, shown: &Path, what: &str) -> Result<String, SpecError> {
    if bytes.starts_with(BOM) {
        bytes.drain(..BOM.len());
    }
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let valid = e.utf8_error().valid_up_to();
        let (line, column) = position(bytes.get(..valid).unwrap_or_default());
        let mut err = SpecError::new(
            ErrorKind::Syntax,
            "",
            format!(
                "the {what} is not valid utf-8 (byte 0x{:02x})",
                bytes.get(valid).copied().unwrap_or_default()
            ),
        )
        .with_file(PathBuf::from(shown))
        .with_hint("save it as utf-8");
        err.line = Some(line);
        err.column = Some(column);
        err
    })
}

const BOM: &[u8] = b"\xef\xbb\xbf";

/// 1-based line and column (in characters) just after the valid UTF-8 `prefix`.
fn position(prefix: &[u8]) -> (u32, u32) {
    let line_start = prefix
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let line = prefix.iter().filter(|b| **b == b'\n').count() + 1;
    let tail = prefix.get(line_start..).unwrap_or_default();
    let column = std::str::from_utf8(tail).map_or(tail.len(), |s| s.chars().count()) + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

fn file_type(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a fifo"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(bytes: &[u8]) -> Result<String, String> {
        decode(bytes.to_vec(), Path::new("c.yaml"), "file").map_err(|e| e.to_string())
    }

    #[test]
    fn bom_is_skipped() {
        assert_eq!(decoded(b"\xef\xbb\xbfname: x\n").unwrap(), "name: x\n");
    }

    #[test]
    fn invalid_utf8_is_located() {
        assert_eq!(
            decoded(b"a: 1\nb: \xc3\xa9\xff\n").unwrap_err(),
            "c.yaml:2:5: the file is not valid utf-8 (byte 0xff) (save it as utf-8)"
        );
        assert_eq!(
            decoded(b"\xfe").unwrap_err(),
            "c.yaml:1:1: the file is not valid utf-8 (byte 0xfe) (save it as utf-8)"
        );
    }

    #[test]
    fn only_regular_files_are_read() {
        let b = Budget::default();
        let e = text(Path::new("/dev/zero"), Path::new("z"), "file", &b).unwrap_err();
        assert_eq!(
            e.to_string(),
            "z: cannot read file: not a regular file (a character device)"
        );
        let e = text(Path::new("/"), Path::new("root"), "env file", &b).unwrap_err();
        assert_eq!(
            e.to_string(),
            "root: cannot read env file: not a regular file (a directory)"
        );
    }
}
