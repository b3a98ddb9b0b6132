//! The edge's certificates: PEM files a project names (reloaded when they change; a pair
//! that does not load leaves the previous one serving) and ACME certificates (issued, kept
//! 0600 under `<state dir>/edge/acme/<host>/`, renewed at two thirds of their lifetime).
//! Every load, issuance, refusal, failure and expiry is an event in the store.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use baton_engine::edge::table::TableTls;
use baton_engine::edge::{renewal, retry_delay_ms, AcmeSettings, Renewal};
use baton_proxy::edge::{Certificate, Edge as Listener, TlsError};
use baton_state::Store;
use futures_util::FutureExt as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::acme::{self, Issued};

/// A modified file is given this long to be followed by its partner (a rotation writes
/// the certificate and the key one after the other) before a failed load is reported.
const SETTLE_MS: u64 = 2_000;

/// One host that wants a certificate, and who asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub host: String,
    pub project: String,
    /// The setting that asked (`services.web.x-baton.tls`).
    pub setting: String,
    pub source: TableTls,
}

/// What `baton routes` shows of a host's certificate.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub struct CertStatus {
    pub host: String,
    /// `acme <directory>` or the certificate file.
    pub source: String,
    /// `valid`, `renewal due`, `expired`, `pending` (none yet) or `failed`.
    pub state: String,
    pub not_before_ms: Option<u64>,
    pub not_after_ms: Option<u64>,
    pub issuer: Option<String>,
    /// The last error, when the served certificate is not the newest wanted.
    pub error: Option<String>,
}

impl CertStatus {
    /// Whether the host's certificate fails it: expired, never issued, or its renewal
    /// failed (what the built-in rule `certificate_failing` watches).
    pub fn failing(&self) -> bool {
        matches!(self.state.as_str(), "expired" | "failed")
            || (self.state == "renewal due" && self.error.is_some())
    }
}

/// A loaded certificate and what its end-entity certificate says.
#[derive(Debug, Clone)]
struct Loaded {
    cert: Certificate,
    not_before_ms: u64,
    not_after_ms: u64,
    issuer: String,
}

impl Loaded {
    fn new(cert: Certificate) -> Result<Loaded, String> {
        let (_, x509) = x509_parser::parse_x509_certificate(cert.end_entity())
            .map_err(|e| format!("the certificate cannot be parsed: {e}"))?;
        let ms = |t: i64| u64::try_from(t).unwrap_or(0).saturating_mul(1000);
        Ok(Loaded {
            not_before_ms: ms(x509.validity().not_before.timestamp()),
            not_after_ms: ms(x509.validity().not_after.timestamp()),
            issuer: x509.issuer().to_string(),
            cert,
        })
    }
}

/// A file as looked at: (modified ns, size, inode).
type Stamp = (i128, u64, u64);

/// A pair of files, as last looked at.
#[derive(Default)]
struct FileCert {
    /// The stamps of the certificate and the key when last loaded or refused; a read
    /// error when they could not be looked at.
    stamp: Option<Result<[Stamp; 2], String>>,
    loaded: Option<Loaded>,
    error: Option<String>,
    expired_reported: bool,
}

/// An ACME certificate of one host.
#[derive(Default)]
struct AcmeCert {
    loaded: Option<Loaded>,
    read_disk: bool,
    failures: u32,
    next_try_ms: u64,
    task: Option<JoinHandle<Result<Issued, String>>>,
    error: Option<String>,
    expired_reported: bool,
}

/// Every certificate the edge serves or waits for.
pub struct Certs {
    /// `<state dir>/edge`.
    dir: PathBuf,
    files: BTreeMap<(PathBuf, PathBuf), FileCert>,
    acme: BTreeMap<(String, String), AcmeCert>,
    status: Vec<CertStatus>,
}

fn ts(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

fn log(line: &str) {
    tracing::info!("{line}");
}

fn event(store: &Store, project: &str, host: &str, message: &str, now: u64) {
    log(&format!("{project}: certificate for {host}: {message}"));
    let _ = store.event(project, "certificate", host, message, now as i64);
}

impl Certs {
    pub fn new(dir: PathBuf) -> Certs {
        Certs {
            dir,
            files: BTreeMap::new(),
            acme: BTreeMap::new(),
            status: Vec::new(),
        }
    }

    fn acme_dir(&self) -> PathBuf {
        self.dir.join("acme")
    }

    /// One look at every wanted certificate: loads changed files, collects finished
    /// issuances, starts due ones. Returns what to serve, by host.
    pub fn tick(
        &mut self,
        wanted: &[Wanted],
        edge: Option<&Listener>,
        store: &Store,
        now: u64,
    ) -> Vec<(String, Certificate)> {
        let mut served = Vec::new();
        let mut status = Vec::new();
        let file_keys: BTreeSet<(PathBuf, PathBuf)> = wanted
            .iter()
            .filter_map(|w| match &w.source {
                TableTls::Files { cert, key } => Some((cert.clone(), key.clone())),
                TableTls::Acme(_) => None,
            })
            .collect();
        self.files.retain(|k, _| file_keys.contains(k));
        let acme_keys: BTreeSet<(String, String)> = wanted
            .iter()
            .filter_map(|w| match &w.source {
                TableTls::Acme(a) => Some((w.host.clone(), a.directory.clone())),
                TableTls::Files { .. } => None,
            })
            .collect();
        self.acme.retain(|k, c| {
            let keep = acme_keys.contains(k);
            if !keep {
                if let Some(t) = c.task.take() {
                    t.abort();
                }
            }
            keep
        });
        for w in wanted {
            let (loaded, source, error, pending) = match &w.source {
                TableTls::Files { cert, key } => {
                    let f = self.files.entry((cert.clone(), key.clone())).or_default();
                    look_at_files(f, w, cert, key, store, now);
                    (
                        f.loaded.clone(),
                        cert.display().to_string(),
                        f.error.clone(),
                        false,
                    )
                }
                TableTls::Acme(settings) => {
                    let dir = self.acme_dir();
                    let c = self
                        .acme
                        .entry((w.host.clone(), settings.directory.clone()))
                        .or_default();
                    look_at_acme(c, w, settings, &dir, edge, store, now);
                    (
                        c.loaded.clone(),
                        format!("acme {}", settings.directory),
                        c.error.clone(),
                        c.task.is_some(),
                    )
                }
            };
            let state = match &loaded {
                None if error.is_some() && !pending => "failed",
                None => "pending",
                Some(l) => match renewal(now, l.not_before_ms, l.not_after_ms) {
                    Renewal::Fresh { .. } => "valid",
                    Renewal::Due => "renewal due",
                    Renewal::Expired => "expired",
                },
            };
            status.push(CertStatus {
                host: w.host.clone(),
                source,
                state: state.into(),
                not_before_ms: loaded.as_ref().map(|l| l.not_before_ms),
                not_after_ms: loaded.as_ref().map(|l| l.not_after_ms),
                issuer: loaded.as_ref().map(|l| l.issuer.clone()),
                error,
            });
            if let Some(l) = loaded {
                served.push((w.host.clone(), l.cert));
            }
        }
        self.status = status;
        served
    }

    pub fn status(&self) -> Vec<CertStatus> {
        self.status.clone()
    }
}

/// The stamp of a file: (modified ns, size, inode).
fn stamp_of(path: &Path) -> Result<Stamp, String> {
    let m = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let modified = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
    Ok((modified, m.size(), m.ino()))
}

fn newest_ms(stamp: &[Stamp; 2]) -> u64 {
    let ns = stamp[0].0.max(stamp[1].0);
    u64::try_from(ns / 1_000_000).unwrap_or(0)
}

/// Which file an error is about, for the located message.
enum Which {
    Cert,
    Key,
}

fn load_files(cert: &Path, key: &Path) -> Result<Loaded, (Which, String)> {
    let read = |p: &Path, w: Which| {
        std::fs::read(p).map_err(|e| (w, format!("cannot read {}: {e}", p.display())))
    };
    let cert_pem = read(cert, Which::Cert)?;
    let key_pem = read(key, Which::Key)?;
    let pair = Certificate::from_pem(&cert_pem, &key_pem).map_err(|e| {
        let which = match e {
            TlsError::NoCertificate | TlsError::CertificatePem | TlsError::Certificate(_) => {
                Which::Cert
            }
            _ => Which::Key,
        };
        let file = match which {
            Which::Cert => cert,
            Which::Key => key,
        };
        let extra = if matches!(e, TlsError::Mismatch) {
            format!(" in {}", cert.display())
        } else {
            String::new()
        };
        (which, format!("{}: {e}{extra}", file.display()))
    })?;
    Loaded::new(pair).map_err(|e| (Which::Cert, format!("{}: {e}", cert.display())))
}

fn look_at_files(f: &mut FileCert, w: &Wanted, cert: &Path, key: &Path, store: &Store, now: u64) {
    let stamp = stamp_of(cert).and_then(|c| stamp_of(key).map(|k| [c, k]));
    if f.stamp.as_ref() != Some(&stamp) {
        let settling = stamp.as_ref().is_ok_and(|s| newest_ms(s) + SETTLE_MS > now);
        match load_files(cert, key) {
            Ok(l) => {
                let verb = if f.loaded.is_some() {
                    "reloaded"
                } else {
                    "loaded"
                };
                event(
                    store,
                    &w.project,
                    &w.host,
                    &format!(
                        "{verb} from {} (valid until {})",
                        cert.display(),
                        ts(l.not_after_ms)
                    ),
                    now,
                );
                f.loaded = Some(l);
                f.error = None;
                f.expired_reported = false;
                f.stamp = Some(stamp);
            }
            // A rotation half-way: look again next tick before saying anything.
            Err(_) if settling && f.loaded.is_some() => {}
            Err((which, e)) => {
                let setting = match which {
                    Which::Cert => format!("{}.cert", w.setting),
                    Which::Key => format!("{}.key", w.setting),
                };
                let message = format!(
                    "{setting}: {e}; {}",
                    if f.loaded.is_some() {
                        "the previous certificate keeps serving"
                    } else {
                        "no certificate is served for it"
                    }
                );
                if f.error.as_deref() != Some(message.as_str()) {
                    event(store, &w.project, &w.host, &message, now);
                }
                f.error = Some(message);
                f.stamp = Some(stamp);
            }
        }
    }
    if let Some(l) = &f.loaded {
        if now >= l.not_after_ms && !f.expired_reported {
            f.expired_reported = true;
            event(
                store,
                &w.project,
                &w.host,
                &format!(
                    "{} expired at {}: clients refuse it; replace the files",
                    cert.display(),
                    ts(l.not_after_ms)
                ),
                now,
            );
        }
    }
}

/// The files of an ACME certificate.
fn acme_files(dir: &Path, host: &str) -> (PathBuf, PathBuf, PathBuf) {
    let d = dir.join(host);
    (d.join("cert.pem"), d.join("key.pem"), d.join("directory"))
}

fn read_stored(dir: &Path, host: &str, directory: &str) -> Option<Loaded> {
    let (cert, key, source) = acme_files(dir, host);
    let from = std::fs::read_to_string(source).ok()?;
    if from.trim() != directory {
        return None;
    }
    load_files(&cert, &key).ok()
}

fn store_issued(dir: &Path, host: &str, directory: &str, issued: &Issued) -> Result<(), String> {
    use std::io::Write as _;
    let (cert, key, source) = acme_files(dir, host);
    let write = |path: &Path, bytes: &[u8]| -> std::io::Result<()> {
        // Written aside, then renamed: a crash never leaves half a key.
        let tmp = path.with_extension("tmp");
        let mut f = baton_state::private::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    let d = dir.join(host);
    baton_state::private::create_dir(&d)
        .and_then(|()| write(&key, issued.key_pem.0.as_bytes()))
        .and_then(|()| write(&cert, issued.chain_pem.as_bytes()))
        .and_then(|()| write(&source, directory.as_bytes()))
        .map_err(|e| format!("cannot keep it in {}: {e}", d.display()))
}

fn look_at_acme(
    c: &mut AcmeCert,
    w: &Wanted,
    settings: &AcmeSettings,
    dir: &Path,
    edge: Option<&Listener>,
    store: &Store,
    now: u64,
) {
    if !c.read_disk {
        c.read_disk = true;
        c.loaded = read_stored(dir, &w.host, &settings.directory);
    }
    let renewing = c.loaded.is_some();
    if let Some(result) = c.task.as_mut().and_then(|t| t.now_or_never()) {
        c.task = None;
        let result = result.unwrap_or_else(|e| Err(format!("the issuing task ended: {e}")));
        let outcome = result.and_then(|issued| {
            store_issued(dir, &w.host, &settings.directory, &issued)?;
            Loaded::new(issued.certificate)
        });
        match outcome {
            Ok(l) => {
                event(
                    store,
                    &w.project,
                    &w.host,
                    &format!(
                        "{} by {} (valid until {})",
                        if renewing { "renewed" } else { "issued" },
                        settings.directory,
                        ts(l.not_after_ms)
                    ),
                    now,
                );
                c.loaded = Some(l);
                c.failures = 0;
                c.error = None;
                c.expired_reported = false;
            }
            Err(e) => {
                c.failures += 1;
                let wait = retry_delay_ms(c.failures);
                c.next_try_ms = now + wait;
                let message = format!(
                    "{} failed: {e}; next try in {}",
                    if renewing { "renewal" } else { "issuance" },
                    humantime::format_duration(std::time::Duration::from_millis(wait))
                );
                event(store, &w.project, &w.host, &message, now);
                c.error = Some(message);
            }
        }
    }
    let state = c
        .loaded
        .as_ref()
        .map(|l| renewal(now, l.not_before_ms, l.not_after_ms));
    if let (Some(Renewal::Expired), Some(l)) = (state, &c.loaded) {
        if !c.expired_reported {
            c.expired_reported = true;
            event(
                store,
                &w.project,
                &w.host,
                &format!("expired at {}; renewing", ts(l.not_after_ms)),
                now,
            );
        }
    }
    let due = !matches!(state, Some(Renewal::Fresh { .. }));
    if due && c.task.is_none() && now >= c.next_try_ms {
        let Some(edge) = edge else {
            return;
        };
        let (host, settings, edge) = (w.host.clone(), settings.clone(), edge.clone());
        let accounts = dir.join("accounts");
        log(&format!(
            "{}: certificate for {host}: asking {}",
            w.project, settings.directory
        ));
        c.task = Some(tokio::spawn(async move {
            acme::issue(&host, &settings, &accounts, &edge).await
        }));
    }
}
