//! The write-ahead log of the head: every scrape since the last block was cut, framed with
//! its length and CRC so that a record torn by a kill is found and dropped on open.

use crate::labels::Labels;

use super::bytes::{put_str, put_uvarint, put_varint, Reader};

const SERIES: u8 = 1;
const SCRAPE: u8 = 2;
/// Length and CRC before each record's payload.
const FRAME: usize = 8;

/// One record of the log. Series ids are the log's own: a `Series` record names one
/// before any `Scrape` record uses it.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Series { id: u32, labels: Labels },
    Scrape { t: i64, samples: Vec<(u32, f64)> },
}

fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

pub fn put_series(out: &mut Vec<u8>, id: u32, labels: &Labels) {
    let mut p = vec![SERIES];
    put_uvarint(&mut p, u64::from(id));
    put_uvarint(&mut p, labels.len() as u64);
    for (k, v) in labels.iter() {
        put_str(&mut p, k);
        put_str(&mut p, v);
    }
    frame(out, &p);
}

pub fn put_scrape(out: &mut Vec<u8>, t: i64, samples: &[(u32, f64)]) {
    let mut p = Vec::with_capacity(16 + samples.len() * 10);
    p.push(SCRAPE);
    put_varint(&mut p, t);
    put_uvarint(&mut p, samples.len() as u64);
    for (id, v) in samples {
        put_uvarint(&mut p, u64::from(*id));
        p.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    frame(out, &p);
}

fn parse(payload: &[u8]) -> Option<Record> {
    let mut r = Reader::new(payload);
    let kind = r.take(1)?[0];
    let rec = match kind {
        SERIES => {
            let id = u32::try_from(r.uvarint()?).ok()?;
            let n = r.len()?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                pairs.push((r.str()?.to_string(), r.str()?.to_string()));
            }
            Record::Series {
                id,
                labels: Labels::from_sorted(pairs)?,
            }
        }
        SCRAPE => {
            let t = r.varint()?;
            let n = r.len()?;
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                let id = u32::try_from(r.uvarint()?).ok()?;
                samples.push((id, f64::from_bits(r.u64()?)));
            }
            Record::Scrape { t, samples }
        }
        _ => return None,
    };
    r.is_empty().then_some(rec)
}

/// The records of a log and the length of its good prefix: reading stops at the first
/// record that is short, fails its CRC or does not parse (a write torn by a kill).
pub fn read(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(head) = bytes.get(pos..pos + FRAME) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let Some(payload) = bytes.get(pos + FRAME..pos + FRAME + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(rec) = parse(payload) else {
            break;
        };
        out.push(rec);
        pos += FRAME + len;
    }
    (out, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cut_of_a_log_reads_back_its_whole_records() {
        let mut log = Vec::new();
        let mut ends = vec![0];
        put_series(&mut log, 0, &Labels::metric("up", [("job", "a")]));
        ends.push(log.len());
        put_scrape(&mut log, 1000, &[(0, 1.0)]);
        ends.push(log.len());
        put_series(&mut log, 1, &Labels::metric("x", [("k", "v")]));
        ends.push(log.len());
        put_scrape(&mut log, 2000, &[(0, 2.0), (1, f64::NAN)]);
        ends.push(log.len());
        for cut in 0..=log.len() {
            let (records, good) = read(&log[..cut]);
            let whole = ends.iter().filter(|e| **e <= cut).count() - 1;
            assert_eq!(records.len(), whole, "cut at {cut}");
            assert_eq!(good, ends[whole]);
        }
        // A flipped bit in the last record: the record is dropped, the rest stays.
        let mut bad = log.clone();
        if let Some(b) = bad.last_mut() {
            *b ^= 1;
        }
        assert_eq!(read(&bad).0.len(), 3);
    }
}
