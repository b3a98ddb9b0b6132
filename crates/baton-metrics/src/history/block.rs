//! Block files: the chunks of every series over one span of time (raw Gorilla chunks and
//! their five-minute aggregates), written once to a temporary name and renamed into place.
//!
//! Layout: `MAGIC`, the chunks back to back, the index (time range, a symbol table of
//! label names and values, then per series its labels, where each chunk is with its
//! CRC, its last time and value), and a fixed footer (index offset, length and CRC,
//! `FOOTER_MAGIC`). A block is never changed after the rename; retention deletes it whole.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::labels::Labels;

use super::bytes::{put_str, put_uvarint, put_varint, Reader};
use super::FILE_MODE;

pub const MAGIC: &[u8; 8] = b"BTNBLK01";
const FOOTER_MAGIC: u32 = 0x4254_4e45;
const FOOTER: u64 = 24;
/// The extension of finished blocks; `.tmp` while written, `.corrupt` once set aside.
pub const EXT: &str = "blk";

/// Where one chunk is in a block file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub off: u64,
    pub len: u64,
    /// Points in the chunk.
    pub count: u64,
    pub crc: u32,
}

/// One series of a block, as its index says.
#[derive(Debug, Clone)]
pub struct Entry {
    pub labels: Labels,
    pub raw: Span,
    pub agg: Span,
    /// The time of its last sample and its last value that is not a staleness marker
    /// (NaN when there is none).
    pub maxt: i64,
    pub last: f64,
}

/// A block's index.
#[derive(Debug, Clone)]
pub struct Index {
    pub mint: i64,
    pub maxt: i64,
    /// The boundary the block was cut at: every later sample is in a later block.
    pub end: i64,
    pub series: Vec<Entry>,
}

/// A series to write into a new block.
#[derive(Debug)]
pub struct Chunks<'a> {
    pub labels: &'a Labels,
    pub raw: &'a [u8],
    pub raw_count: usize,
    pub agg: Vec<u8>,
    pub agg_count: usize,
    pub maxt: i64,
    pub last: f64,
}

/// The file name of a block: its time range, so `ls` tells what it holds.
pub fn file_name(mint: i64, end: i64) -> String {
    format!("{mint}-{end}.{EXT}")
}

/// Writes a block into `dir` (temporary name, data synced, renamed, directory synced).
pub fn write(dir: &Path, mint: i64, maxt: i64, end: i64, series: &[Chunks]) -> io::Result<PathBuf> {
    let mut data = MAGIC.to_vec();
    let mut spans = Vec::with_capacity(series.len());
    for s in series {
        let raw = Span {
            off: data.len() as u64,
            len: s.raw.len() as u64,
            count: s.raw_count as u64,
            crc: crc32fast::hash(s.raw),
        };
        data.extend_from_slice(s.raw);
        let agg = Span {
            off: data.len() as u64,
            len: s.agg.len() as u64,
            count: s.agg_count as u64,
            crc: crc32fast::hash(&s.agg),
        };
        data.extend_from_slice(&s.agg);
        spans.push((raw, agg));
    }
    let mut symbols: BTreeMap<&str, u64> = BTreeMap::new();
    for s in series {
        for (k, v) in s.labels.iter() {
            symbols.insert(k, 0);
            symbols.insert(v, 0);
        }
    }
    for (i, n) in symbols.values_mut().enumerate() {
        *n = i as u64;
    }
    let mut index = Vec::new();
    put_varint(&mut index, mint);
    put_varint(&mut index, maxt);
    put_varint(&mut index, end);
    put_uvarint(&mut index, symbols.len() as u64);
    for s in symbols.keys() {
        put_str(&mut index, s);
    }
    put_uvarint(&mut index, series.len() as u64);
    for (s, (raw, agg)) in series.iter().zip(&spans) {
        put_uvarint(&mut index, s.labels.len() as u64);
        for (k, v) in s.labels.iter() {
            put_uvarint(&mut index, symbols.get(k).copied().unwrap_or(0));
            put_uvarint(&mut index, symbols.get(v).copied().unwrap_or(0));
        }
        for span in [raw, agg] {
            put_uvarint(&mut index, span.off);
            put_uvarint(&mut index, span.len);
            put_uvarint(&mut index, span.count);
            index.extend_from_slice(&span.crc.to_le_bytes());
        }
        put_varint(&mut index, s.maxt.wrapping_sub(mint));
        index.extend_from_slice(&s.last.to_bits().to_le_bytes());
    }
    let index_off = data.len() as u64;
    data.extend_from_slice(&index);
    data.extend_from_slice(&index_off.to_le_bytes());
    data.extend_from_slice(&(index.len() as u64).to_le_bytes());
    data.extend_from_slice(&crc32fast::hash(&index).to_le_bytes());
    data.extend_from_slice(&FOOTER_MAGIC.to_le_bytes());

    let name = file_name(mint, end);
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(&name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&tmp)?;
    f.write_all(&data)?;
    f.sync_data()?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    Ok(path)
}

/// Reads and checks a block's index; `Err` says what is wrong with the file.
pub fn read_index(path: &Path) -> Result<Index, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    if size < MAGIC.len() as u64 + FOOTER {
        return Err(format!("{size} bytes is too short for a block"));
    }
    let mut footer = [0u8; FOOTER as usize];
    f.read_exact_at(&mut footer, size - FOOTER)
        .map_err(|e| e.to_string())?;
    let mut r = Reader::new(&footer);
    let (off, len, crc, magic) = (
        r.u64().unwrap_or(0),
        r.u64().unwrap_or(0),
        r.u32().unwrap_or(0),
        r.u32().unwrap_or(0),
    );
    if magic != FOOTER_MAGIC {
        return Err("no block footer".into());
    }
    if off.checked_add(len) != Some(size - FOOTER) {
        return Err("the footer's index does not end where the footer starts".into());
    }
    let mut index = vec![0u8; len as usize];
    f.read_exact_at(&mut index, off)
        .map_err(|e| e.to_string())?;
    if crc32fast::hash(&index) != crc {
        return Err("index CRC mismatch".into());
    }
    parse_index(&index, off).ok_or_else(|| "unreadable index".into())
}

fn parse_index(bytes: &[u8], data_end: u64) -> Option<Index> {
    let mut r = Reader::new(bytes);
    let mint = r.varint()?;
    let maxt = r.varint()?;
    let end = r.varint()?;
    let nsyms = r.len()?;
    let mut symbols = Vec::with_capacity(nsyms);
    for _ in 0..nsyms {
        symbols.push(r.str()?);
    }
    let n = r.len()?;
    let mut series = Vec::with_capacity(n);
    let sym = |r: &mut Reader| -> Option<String> {
        let i = usize::try_from(r.uvarint()?).ok()?;
        symbols.get(i).map(|s| s.to_string())
    };
    for _ in 0..n {
        let nl = r.len()?;
        let mut pairs = Vec::with_capacity(nl);
        for _ in 0..nl {
            pairs.push((sym(&mut r)?, sym(&mut r)?));
        }
        let mut spans = [Span {
            off: 0,
            len: 0,
            count: 0,
            crc: 0,
        }; 2];
        for span in spans.iter_mut() {
            *span = Span {
                off: r.uvarint()?,
                len: r.uvarint()?,
                count: r.uvarint()?,
                crc: r.u32()?,
            };
            if span.off.checked_add(span.len)? > data_end {
                return None;
            }
        }
        series.push(Entry {
            labels: Labels::from_sorted(pairs)?,
            raw: spans[0],
            agg: spans[1],
            maxt: mint.wrapping_add(r.varint()?),
            last: f64::from_bits(r.u64()?),
        });
    }
    r.is_empty().then_some(Index {
        mint,
        maxt,
        end,
        series,
    })
}

/// Reads one chunk and checks its CRC.
pub fn read_chunk(f: &File, span: Span) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; usize::try_from(span.len).map_err(|e| e.to_string())?];
    f.read_exact_at(&mut buf, span.off)
        .map_err(|e| e.to_string())?;
    if crc32fast::hash(&buf) != span.crc {
        return Err(format!("chunk at {} fails its CRC", span.off));
    }
    Ok(buf)
}
