//! The history: scrapes stored on disk under a directory the caller names, compressed per
//! series (Gorilla chunks), cut into immutable blocks, kept for a retention period.
//!
//! Layout of the directory (0700, files 0600):
//! - `wal`: the head's write-ahead log, every scrape since the last cut, framed records
//!   with CRCs (`wal.rs`); a record torn by a kill is dropped when the history opens.
//! - `blocks/<mint>-<end>.blk`: one file per cut (`block.rs`), every series' raw chunk
//!   and five-minute aggregates (`downsample.rs`), written under a temporary name and
//!   renamed; retention deletes whole blocks.
//! - `lock`: held (flock) while a process has the history open.
//!
//! The head (samples since the last cut, Gorilla-encoded in memory) is cut into a block
//! when a scrape reaches the next `block` boundary (2 h, aligned to the epoch) or, once a
//! series holds `max_chunk_samples`, at the next five-minute boundary, so that an
//! aggregate window never straddles two blocks.

mod block;
mod bytes;
pub mod downsample;
mod wal;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::gorilla::{self, ChunkWriter};
use crate::labels::{Labels, MatchOp, Matcher, METRIC_NAME};
use crate::sample::{is_stale, Scrape, STALE_NAN_BITS};

pub use downsample::{Window, WINDOW_MS};

pub(crate) const DIR_MODE: u32 = 0o700;
pub(crate) const FILE_MODE: u32 = 0o600;

/// Something went wrong reading or writing the history's files.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metrics history {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("metrics history {path} is open in another process (its lock is held): stop it or use another directory")]
    Locked { path: PathBuf },
    #[error("metrics history {path} is corrupt: {what}")]
    Corrupt { path: PathBuf, what: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How the history keeps its data.
#[derive(Debug, Clone, Copy)]
pub struct HistoryConfig {
    /// Blocks whose last sample is older than this (before the newest scrape) are deleted.
    pub retention: Duration,
    /// Blocks are cut at multiples of this span.
    pub block: Duration,
    /// A head chunk this long is cut at the next five-minute boundary, whatever `block`.
    pub max_chunk_samples: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            retention: Duration::from_secs(14 * 24 * 3600),
            block: Duration::from_secs(2 * 3600),
            max_chunk_samples: 1000,
        }
    }
}

/// What a selection reads: raw samples, or five-minute aggregates (for long ranges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Raw,
    FiveMinutes,
}

/// One series' points in a selected range.
#[derive(Debug, Clone, PartialEq)]
pub enum Points {
    /// `(time, value)`, staleness markers included.
    Raw(Vec<(i64, f64)>),
    Windows(Vec<Window>),
}

impl Points {
    pub fn len(&self) -> usize {
        match self {
            Points::Raw(p) => p.len(),
            Points::Windows(w) => w.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A selected series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    pub labels: Labels,
    pub points: Points,
}

/// What one `append` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    pub samples: usize,
    /// Samples refused because their series already had one at that time or later.
    pub out_of_order: usize,
    /// Series that were in the previous scrape and not in this one: marked stale.
    pub stale: usize,
}

/// What opening found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Scrapes replayed from the log into the head.
    pub scrapes: usize,
    /// Bytes of a torn last record, dropped.
    pub dropped_bytes: u64,
    /// Blocks that failed their checks, renamed to `.corrupt` and left out.
    pub corrupt_blocks: Vec<PathBuf>,
}

/// The history of one directory. `Sync`: one appender and any number of readers share
/// it; a selection holds the lock only to copy the head and the list of blocks.
#[derive(Debug)]
pub struct History {
    dir: PathBuf,
    config: HistoryConfig,
    state: Mutex<State>,
    recovery: Recovery,
    _lock: File,
}

#[derive(Debug)]
struct BlockRef {
    path: PathBuf,
    mint: i64,
    maxt: i64,
    end: i64,
    /// `(series id, raw chunk, aggregates)`, sorted by id.
    entries: Vec<(u32, block::Span, block::Span)>,
}

#[derive(Debug, Clone, Copy)]
struct Last {
    t: i64,
    /// The last value that is not a staleness marker (NaN: none yet).
    value: f64,
}

#[derive(Debug)]
struct HeadSeries {
    chunk: ChunkWriter<1>,
    maxt: i64,
    /// The series' value before its first sample in the head (aggregates' growth).
    prev: Option<f64>,
    last: f64,
}

#[derive(Debug)]
struct Head {
    mint: i64,
    maxt: i64,
    /// The time at which the head is cut; `i64::MAX` while it is empty.
    end: i64,
    series: HashMap<u32, HeadSeries>,
}

impl Head {
    fn empty() -> Self {
        Head {
            mint: i64::MAX,
            maxt: i64::MIN,
            end: i64::MAX,
            series: HashMap::new(),
        }
    }
}

#[derive(Debug)]
struct State {
    ids: HashMap<Labels, u32>,
    labels: HashMap<u32, Labels>,
    by_name: HashMap<String, BTreeSet<u32>>,
    next_id: u32,
    blocks: Vec<Arc<BlockRef>>,
    head: Head,
    wal: File,
    /// Series the current log has defined.
    wal_ids: HashSet<u32>,
    last: HashMap<u32, Last>,
    /// Series whose last sample is not a staleness marker.
    live: HashSet<u32>,
}

fn align_up(t: i64, span: i64) -> i64 {
    (t.div_euclid(span) + 1).saturating_mul(span)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

impl State {
    fn id_for(&mut self, labels: &Labels) -> u32 {
        if let Some(id) = self.ids.get(labels) {
            return *id;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.ids.insert(labels.clone(), id);
        self.labels.insert(id, labels.clone());
        if let Some(name) = labels.name() {
            self.by_name.entry(name.to_string()).or_default().insert(id);
        }
        id
    }

    fn newest_end(&self) -> i64 {
        self.blocks.iter().map(|b| b.end).max().unwrap_or(i64::MIN)
    }

    /// Puts a sample into the head (the caller checked its order).
    fn push(&mut self, config: &HistoryConfig, id: u32, t: i64, v: f64) {
        let stale = is_stale(v);
        let before = self.last.get(&id).map(|l| l.value).filter(|v| !v.is_nan());
        let head = &mut self.head;
        let s = head.series.entry(id).or_insert_with(|| HeadSeries {
            chunk: ChunkWriter::default(),
            maxt: t,
            prev: before,
            last: f64::NAN,
        });
        s.chunk.push(t, [v]);
        s.maxt = t;
        if !stale {
            s.last = v;
        }
        let full = s.chunk.count() >= config.max_chunk_samples;
        head.mint = head.mint.min(t);
        head.maxt = head.maxt.max(t);
        if head.end == i64::MAX {
            head.end = align_up(t, ms(config.block));
        }
        if full {
            head.end = head.end.min(align_up(t, WINDOW_MS));
        }
        let last = self.last.entry(id).or_insert(Last { t, value: f64::NAN });
        last.t = t;
        if stale {
            self.live.remove(&id);
        } else {
            last.value = v;
            self.live.insert(id);
        }
    }
}

fn create_dir(path: &Path) -> Result<(), StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(io_err(path))
}

fn open_wal(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_err(path))
}

impl History {
    /// Opens (or creates) the history in `dir`: checks its blocks, replays the log into
    /// the head (dropping a torn last record), and holds the directory's lock.
    pub fn open(dir: &Path, config: HistoryConfig) -> Result<History, StoreError> {
        let blocks_dir = dir.join("blocks");
        create_dir(&blocks_dir)?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked {
                path: dir.to_path_buf(),
            });
        }
        let mut recovery = Recovery::default();
        let mut found = Vec::new();
        for e in std::fs::read_dir(&blocks_dir).map_err(io_err(&blocks_dir))? {
            let path = e.map_err(io_err(&blocks_dir))?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with('.') && name.ends_with(".tmp") {
                // A block whose writer was killed before the rename: its data is still in the log.
                let _ = std::fs::remove_file(&path);
            } else if path.extension().is_some_and(|x| x == block::EXT) {
                found.push(path);
            }
        }
        found.sort();
        let wal_path = dir.join("wal");
        let mut state = State {
            ids: HashMap::new(),
            labels: HashMap::new(),
            by_name: HashMap::new(),
            next_id: 0,
            blocks: Vec::new(),
            head: Head::empty(),
            wal: open_wal(&wal_path)?,
            wal_ids: HashSet::new(),
            last: HashMap::new(),
            live: HashSet::new(),
        };
        for path in found {
            match block::read_index(&path) {
                Ok(index) => {
                    let mut entries = Vec::with_capacity(index.series.len());
                    for e in index.series {
                        let id = state.id_for(&e.labels);
                        let last = state.last.entry(id).or_insert(Last {
                            t: e.maxt,
                            value: e.last,
                        });
                        if e.maxt >= last.t {
                            last.t = e.maxt;
                            if !e.last.is_nan() {
                                last.value = e.last;
                            }
                        }
                        entries.push((id, e.raw, e.agg));
                    }
                    entries.sort_by_key(|e| e.0);
                    state.blocks.push(Arc::new(BlockRef {
                        path,
                        mint: index.mint,
                        maxt: index.maxt,
                        end: index.end,
                        entries,
                    }));
                }
                Err(_) => {
                    let aside = path.with_extension("corrupt");
                    let _ = std::fs::rename(&path, &aside);
                    recovery.corrupt_blocks.push(aside);
                }
            }
        }
        state.blocks.sort_by_key(|b| b.mint);
        let config = HistoryConfig {
            max_chunk_samples: config.max_chunk_samples.max(2),
            ..config
        };
        Self::replay(&mut state, &config, &wal_path, &mut recovery)?;
        Ok(History {
            dir: dir.to_path_buf(),
            config,
            state: Mutex::new(state),
            recovery,
            _lock: lock,
        })
    }

    /// Reads the log into the head and writes it back with only its good records, under
    /// this process's series ids.
    fn replay(
        state: &mut State,
        config: &HistoryConfig,
        path: &Path,
        recovery: &mut Recovery,
    ) -> Result<(), StoreError> {
        let mut bytes = Vec::new();
        state.wal.read_to_end(&mut bytes).map_err(io_err(path))?;
        let (records, good) = wal::read(&bytes);
        recovery.dropped_bytes = (bytes.len() - good) as u64;
        let newest_end = state.newest_end();
        let mut ids: HashMap<u32, u32> = HashMap::new();
        let mut out = Vec::new();
        for rec in records {
            match rec {
                wal::Record::Series { id, labels } => {
                    let global = state.id_for(&labels);
                    ids.insert(id, global);
                    if state.wal_ids.insert(global) {
                        wal::put_series(&mut out, global, &labels);
                    }
                }
                wal::Record::Scrape { t, samples } => {
                    if t < newest_end {
                        // Already in the block that was cut just before a kill.
                        continue;
                    }
                    let mut kept = Vec::with_capacity(samples.len());
                    for (id, v) in samples {
                        let Some(&global) = ids.get(&id) else {
                            continue;
                        };
                        if state.last.get(&global).is_some_and(|l| l.t >= t) {
                            continue;
                        }
                        state.push(config, global, t, v);
                        kept.push((global, v));
                    }
                    recovery.scrapes += 1;
                    wal::put_scrape(&mut out, t, &kept);
                }
            }
        }
        let tmp = path.with_extension("tmp");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(&out).map_err(io_err(&tmp))?;
        f.sync_data().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err(path))?;
        state.wal = open_wal(path)?;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What opening found and repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores a scrape: each sample goes to the log, then to the head. A series of the
    /// previous scrape that this one lacks gets a staleness marker (it ended), as
    /// Prometheus does. A scrape that reaches the head's boundary cuts a block first and
    /// applies retention from the scrape's time.
    pub fn append(&self, scrape: &Scrape) -> Result<Appended, StoreError> {
        let mut st = self.lock();
        let t = scrape.t;
        let mut done = Appended::default();
        if t < st.newest_end() {
            done.out_of_order = scrape.samples.len();
            return Ok(done);
        }
        if !st.head.series.is_empty() && t >= st.head.end {
            self.cut(&mut st, t)?;
        }
        let mut rec = Vec::new();
        let mut samples = Vec::with_capacity(scrape.samples.len());
        let mut seen = HashSet::with_capacity(scrape.samples.len());
        for (labels, v) in &scrape.samples {
            let id = st.id_for(labels);
            // Seen either way: a refused sample does not mean its series ended.
            let repeated = !seen.insert(id);
            if repeated || st.last.get(&id).is_some_and(|l| l.t >= t) {
                done.out_of_order += 1;
                continue;
            }
            if st.wal_ids.insert(id) {
                wal::put_series(&mut rec, id, labels);
            }
            samples.push((id, *v));
        }
        let mut ended: Vec<u32> = st
            .live
            .iter()
            .filter(|id| !seen.contains(id))
            .copied()
            .collect();
        ended.sort_unstable();
        done.samples = samples.len();
        done.stale = ended.len();
        samples.extend(
            ended
                .into_iter()
                .map(|id| (id, f64::from_bits(STALE_NAN_BITS))),
        );
        wal::put_scrape(&mut rec, t, &samples);
        let wal_path = self.dir.join("wal");
        st.wal.write_all(&rec).map_err(io_err(&wal_path))?;
        for (id, v) in samples {
            st.push(&self.config, id, t, v);
        }
        Ok(done)
    }

    /// Cuts the head into a block, empties the log, and applies retention from `now`.
    fn cut(&self, st: &mut State, now: i64) -> Result<(), StoreError> {
        let head = std::mem::replace(&mut st.head, Head::empty());
        let mut ids: Vec<u32> = head.series.keys().copied().collect();
        ids.sort_unstable();
        let mut chunks = Vec::with_capacity(ids.len());
        let mut points = Vec::new();
        for id in &ids {
            let (Some(s), Some(labels)) = (head.series.get(id), st.labels.get(id)) else {
                continue;
            };
            points.clear();
            let mut raw = Vec::new();
            // Our own bytes, just written: they decode.
            let _ = gorilla::decode::<1>(s.chunk.bytes(), s.chunk.count(), &mut raw);
            points.extend(raw.iter().map(|(t, [v])| (*t, *v)));
            let windows = downsample::downsample(&points, s.prev);
            let mut agg = ChunkWriter::<6>::default();
            for w in &windows {
                agg.push(w.t, w.to_fields());
            }
            chunks.push(block::Chunks {
                labels,
                raw: s.chunk.bytes(),
                raw_count: s.chunk.count(),
                agg: agg.into_bytes(),
                agg_count: windows.len(),
                maxt: s.maxt,
                last: s.last,
            });
        }
        let blocks_dir = self.dir.join("blocks");
        let path = block::write(&blocks_dir, head.mint, head.maxt, head.end, &chunks)
            .map_err(io_err(&blocks_dir))?;
        let spans = block::read_index(&path).map_err(|what| StoreError::Corrupt {
            path: path.clone(),
            what,
        })?;
        let mut entries: Vec<(u32, block::Span, block::Span)> = spans
            .series
            .into_iter()
            .filter_map(|e| st.ids.get(&e.labels).map(|id| (*id, e.raw, e.agg)))
            .collect();
        entries.sort_by_key(|e| e.0);
        st.blocks.push(Arc::new(BlockRef {
            path,
            mint: head.mint,
            maxt: head.maxt,
            end: head.end,
            entries,
        }));
        let wal_path = self.dir.join("wal");
        st.wal.set_len(0).map_err(io_err(&wal_path))?;
        st.wal_ids.clear();
        self.retain_locked(st, now)
    }

    /// Deletes the blocks whose last sample is older than the retention before `now`, and
    /// forgets series that no longer have any data.
    pub fn retain(&self, now: i64) -> Result<(), StoreError> {
        let mut st = self.lock();
        self.retain_locked(&mut st, now)
    }

    fn retain_locked(&self, st: &mut State, now: i64) -> Result<(), StoreError> {
        let cutoff = now.saturating_sub(ms(self.config.retention));
        let (old, kept): (Vec<_>, Vec<_>) = st.blocks.drain(..).partition(|b| b.maxt < cutoff);
        st.blocks = kept;
        if old.is_empty() {
            return Ok(());
        }
        for b in old {
            match std::fs::remove_file(&b.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(StoreError::Io {
                        path: b.path.clone(),
                        source: e,
                    });
                }
                _ => {}
            }
        }
        let mut keep: HashSet<u32> = st.head.series.keys().copied().collect();
        keep.extend(st.live.iter().copied());
        for b in &st.blocks {
            keep.extend(b.entries.iter().map(|e| e.0));
        }
        let gone: Vec<u32> = st
            .labels
            .keys()
            .filter(|id| !keep.contains(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(labels) = st.labels.remove(&id) {
                if let Some(name) = labels.name() {
                    if let Some(set) = st.by_name.get_mut(name) {
                        set.remove(&id);
                        if set.is_empty() {
                            st.by_name.remove(name);
                        }
                    }
                }
                st.ids.remove(&labels);
            }
            st.last.remove(&id);
            st.wal_ids.remove(&id);
        }
        Ok(())
    }

    /// Flushes the log to the disk (a kill loses nothing written; this is for power loss).
    pub fn sync(&self) -> Result<(), StoreError> {
        let st = self.lock();
        st.wal.sync_data().map_err(io_err(&self.dir.join("wal")))
    }

    /// How many series the history knows, in blocks or the head.
    pub fn series_count(&self) -> usize {
        self.lock().labels.len()
    }

    /// The series matching every matcher, with their points from `from` to `to`
    /// (inclusive, Unix milliseconds) at `resolution`. The head (what is not yet in a
    /// block) is read too. Series without points in the range are left out.
    pub fn select(
        &self,
        matchers: &[Matcher],
        from: i64,
        to: i64,
        resolution: Resolution,
    ) -> Result<Vec<SeriesData>, StoreError> {
        struct Wanted {
            id: u32,
            labels: Labels,
            head: Option<(Vec<u8>, usize, Option<f64>)>,
            raw: Vec<(i64, f64)>,
            windows: Vec<Window>,
        }
        let (mut wanted, blocks) = {
            let st = self.lock();
            let by_name = matchers
                .iter()
                .find(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal)
                .map(|m| st.by_name.get(&m.value).cloned().unwrap_or_default());
            let candidates: Vec<u32> = match by_name {
                Some(ids) => ids.into_iter().collect(),
                None => {
                    let mut all: Vec<u32> = st.labels.keys().copied().collect();
                    all.sort_unstable();
                    all
                }
            };
            let mut wanted = Vec::new();
            for id in candidates {
                let Some(labels) = st.labels.get(&id) else {
                    continue;
                };
                if !labels.matches(matchers) {
                    continue;
                }
                let head = st
                    .head
                    .series
                    .get(&id)
                    .filter(|_| st.head.mint <= to && st.head.maxt >= from)
                    .map(|s| (s.chunk.bytes().to_vec(), s.chunk.count(), s.prev));
                wanted.push(Wanted {
                    id,
                    labels: labels.clone(),
                    head,
                    raw: Vec::new(),
                    windows: Vec::new(),
                });
            }
            let blocks: Vec<Arc<BlockRef>> = st
                .blocks
                .iter()
                .filter(|b| b.mint <= to && b.maxt >= from)
                .cloned()
                .collect();
            (wanted, blocks)
        };
        let corrupt = |path: &Path, what: String| StoreError::Corrupt {
            path: path.to_path_buf(),
            what,
        };
        let mut raw1: Vec<(i64, [f64; 1])> = Vec::new();
        let mut raw6: Vec<(i64, [f64; 6])> = Vec::new();
        for b in &blocks {
            let f = match File::open(&b.path) {
                Ok(f) => f,
                // Deleted by retention since we looked: its data has expired.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(StoreError::Io {
                        path: b.path.clone(),
                        source: e,
                    })
                }
            };
            for w in wanted.iter_mut() {
                let Ok(i) = b.entries.binary_search_by_key(&w.id, |e| e.0) else {
                    continue;
                };
                let (_, raw, agg) = b.entries[i];
                match resolution {
                    Resolution::Raw => {
                        let bytes = block::read_chunk(&f, raw).map_err(|e| corrupt(&b.path, e))?;
                        raw1.clear();
                        gorilla::decode::<1>(&bytes, raw.count as usize, &mut raw1)
                            .map_err(|e| corrupt(&b.path, e.to_string()))?;
                        w.raw.extend(
                            raw1.iter()
                                .filter(|(t, _)| *t >= from && *t <= to)
                                .map(|(t, [v])| (*t, *v)),
                        );
                    }
                    Resolution::FiveMinutes => {
                        let bytes = block::read_chunk(&f, agg).map_err(|e| corrupt(&b.path, e))?;
                        raw6.clear();
                        gorilla::decode::<6>(&bytes, agg.count as usize, &mut raw6)
                            .map_err(|e| corrupt(&b.path, e.to_string()))?;
                        w.windows.extend(
                            raw6.iter()
                                .filter(|(t, _)| *t >= from && *t <= to)
                                .map(|(t, f)| Window::from_fields(*t, *f)),
                        );
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(wanted.len());
        for mut w in wanted {
            if let Some((bytes, count, prev)) = w.head.take() {
                raw1.clear();
                gorilla::decode::<1>(&bytes, count, &mut raw1)
                    .map_err(|e| corrupt(&self.dir.join("wal"), e.to_string()))?;
                let points: Vec<(i64, f64)> = raw1.iter().map(|(t, [v])| (*t, *v)).collect();
                match resolution {
                    Resolution::Raw => w
                        .raw
                        .extend(points.into_iter().filter(|(t, _)| *t >= from && *t <= to)),
                    Resolution::FiveMinutes => w.windows.extend(
                        downsample::downsample(&points, prev)
                            .into_iter()
                            .filter(|x| x.t >= from && x.t <= to),
                    ),
                }
            }
            let points = match resolution {
                Resolution::Raw => Points::Raw(w.raw),
                Resolution::FiveMinutes => Points::Windows(w.windows),
            };
            if !points.is_empty() {
                out.push(SeriesData {
                    labels: w.labels,
                    points,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
