//! File operations on a host through quoted command lines: read a file with its mode and
//! owner, write one atomically (temp file, chmod, optional chown and backup, rename), and
//! unified diffs for check mode and drift.

use std::time::Duration;

use crate::ssh::SshError;
use crate::transport::{quote_args, Conn};

/// A file as found on a host.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub content: Vec<u8>,
    pub mode: u32,
    pub owner: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(transparent)]
    Transport(#[from] SshError),
    #[error("{0}")]
    Failed(String),
}

/// Reads `path` (None when absent).
pub async fn read(
    conn: &Conn,
    path: &str,
    timeout: Option<Duration>,
) -> Result<Option<Found>, RemoteError> {
    // `sh -c SCRIPT sh PATH`: the path only ever reaches the shell as "$1".
    let script =
        r#"if [ -e "$1" ]; then stat -c '%a %U' -- "$1" && cat -- "$1"; else echo absent; fi"#;
    let cmd = quote_args(&["sh", "-c", script, "sh", path]);
    let out = conn.exec(&cmd, None, timeout).await?;
    if !out.ok() {
        return Err(RemoteError::Failed(format!(
            "cannot read {path}: {}",
            out.text().trim()
        )));
    }
    let nl = out
        .stdout
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(out.stdout.len());
    let head = String::from_utf8_lossy(&out.stdout[..nl]).into_owned();
    if head == "absent" {
        return Ok(None);
    }
    let (mode, owner) = head.split_once(' ').unwrap_or((head.as_str(), ""));
    let mode = u32::from_str_radix(mode, 8)
        .map_err(|_| RemoteError::Failed(format!("cannot read the mode of {path}: `{head}`")))?;
    let content = out.stdout.get(nl + 1..).unwrap_or_default().to_vec();
    Ok(Some(Found {
        content,
        mode,
        owner: owner.to_string(),
    }))
}

/// The apply path in one round trip: the content goes to a temp file beside the
/// destination, which is compared there (`cmp`, mode, owner) and either dropped or
/// renamed into place. Few processes per file, since each costs on a busy host.
async fn put_in_one(
    conn: &Conn,
    path: &str,
    content: &[u8],
    mode: Option<u32>,
    owner: Option<&str>,
    backup: bool,
    timeout: Option<Duration>,
) -> Result<Put, RemoteError> {
    let script = r#"set -e
p="$1"; mode="$2"; owner="$3"; backup="$4"
case "$p" in */*) d="${p%/*}" ;; *) d=. ;; esac
[ -d "${d:-/}" ] || mkdir -p -- "${d:-/}"
t="$p.baton-tmp.$$"
cat > "$t"
if [ -e "$p" ]; then
  cur=$(stat -c '%a %U' -- "$p")
  [ -n "$mode" ] || mode=${cur%% *}
  want="$mode ${owner:-${cur#* }}"
  if [ "$cur" = "$want" ] && cmp -s -- "$t" "$p"; then rm -f -- "$t"; echo same; exit 0; fi
  echo "changed $cur"
else
  [ -n "$mode" ] || mode=644
  echo created
fi
chmod "$mode" "$t"
if [ -n "$owner" ]; then chown "$owner" "$t"; fi
if [ "$backup" = 1 ] && [ -e "$p" ]; then cp -p -- "$p" "$p.baton-bak"; fi
mv -f -- "$t" "$p""#;
    let mode = mode.map(|m| format!("{m:o}")).unwrap_or_default();
    let cmd = quote_args(&[
        "sh",
        "-c",
        script,
        "sh",
        path,
        &mode,
        owner.unwrap_or(""),
        if backup { "1" } else { "0" },
    ]);
    let out = conn.exec(&cmd, Some(content), timeout).await?;
    if !out.ok() {
        return Err(RemoteError::Failed(format!(
            "cannot write {path}: {}",
            out.text().trim()
        )));
    }
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(Put {
        changed: said != "same",
        diff: String::new(),
        note: match said.as_str() {
            "same" => String::new(),
            "created" => format!("created {path}"),
            _ => format!(
                "updated {path} (was {})",
                said.trim_start_matches("changed ")
            ),
        },
    })
}

/// A unified diff from `old` to `new` (empty when equal); `None` means absent.
pub fn diff(path: &str, old: Option<&[u8]>, new: &[u8]) -> String {
    let old_text = old
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let new_text = String::from_utf8_lossy(new);
    if old == Some(new) {
        return String::new();
    }
    let from = if old.is_some() {
        format!("a{path}")
    } else {
        "/dev/null".into()
    };
    similar::TextDiff::from_lines(old_text.as_str(), new_text.as_ref())
        .unified_diff()
        .header(&from, &format!("b{path}"))
        .to_string()
}

/// What putting a file changed, and how.
#[derive(Debug, Clone, Default)]
pub struct Put {
    pub changed: bool,
    pub diff: String,
    pub note: String,
}

/// Compares before writing: writes (unless `check`) only when content, mode or owner
/// differ. Returns whether something changed (or would).
#[allow(clippy::too_many_arguments)]
pub async fn put(
    conn: &Conn,
    path: &str,
    content: &[u8],
    mode: Option<u32>,
    owner: Option<&str>,
    backup: bool,
    check: bool,
    timeout: Option<Duration>,
) -> Result<Put, RemoteError> {
    if !check {
        return put_in_one(conn, path, content, mode, owner, backup, timeout).await;
    }
    let found = read(conn, path, timeout).await?;
    let want_mode = mode.or(found.as_ref().map(|f| f.mode)).unwrap_or(0o644);
    let mut notes = Vec::new();
    let mut changed = false;
    match &found {
        None => {
            changed = true;
            notes.push(format!("created {path}"));
        }
        Some(f) => {
            if f.content != content {
                changed = true;
                notes.push(format!("content of {path}"));
            }
            if f.mode != want_mode {
                changed = true;
                notes.push(format!("mode {:o} -> {want_mode:o}", f.mode));
            }
            if let Some(o) = owner {
                if f.owner != o {
                    changed = true;
                    notes.push(format!("owner {} -> {o}", f.owner));
                }
            }
        }
    }
    // Check mode: the host is left as it is.
    let d = diff(path, found.as_ref().map(|f| f.content.as_slice()), content);
    Ok(Put {
        changed,
        diff: d,
        note: notes.join(", "),
    })
}
