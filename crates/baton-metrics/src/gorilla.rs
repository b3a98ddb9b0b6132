//! Gorilla compression of one series' samples: delta-of-delta timestamps and XOR'd float
//! values packed in a bit stream (Pelkonen et al., VLDB 2015, with Prometheus's widths).
//!
//! A chunk holds `(timestamp, [f64; N])` points: raw samples are `N = 1`, the 5-minute
//! aggregates of `history::downsample` are `N = 6`, each value XOR'd against the same
//! field of the previous point. The first point is written in full (64 + 64·N bits);
//! every later timestamp as the change of its delta (one bit when samples come at a
//! steady interval) and every value as its XOR with the previous one (one bit when it
//! did not change). Decoding never panics: a stream that ends early or says nonsense is
//! `Corrupt`.

/// A chunk's bits ended before its points did, or held an impossible field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("corrupt chunk: its bits end before its {0} points do")]
pub struct Corrupt(pub usize);

/// Appends bits, most significant first, to a byte vector.
#[derive(Debug, Clone, Default)]
pub struct BitWriter {
    bytes: Vec<u8>,
    /// Bits still free in the last byte (0: a new byte is needed).
    free: u32,
}

impl BitWriter {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    fn bit(&mut self, bit: bool) {
        self.bits(u64::from(bit), 1);
    }

    /// Writes the low `n` bits of `value` (n ≤ 64).
    fn bits(&mut self, value: u64, mut n: u32) {
        while n > 0 {
            if self.free == 0 {
                self.bytes.push(0);
                self.free = 8;
            }
            let take = n.min(self.free);
            let chunk = ((value >> (n - take)) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= chunk << (self.free - take);
            }
            self.free -= take;
            n -= take;
        }
    }
}

/// Reads bits written by `BitWriter`; `None` past the end.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        BitReader { bytes, pos: 0 }
    }

    fn bit(&mut self) -> Option<bool> {
        self.bits(1).map(|b| b == 1)
    }

    fn bits(&mut self, mut n: u32) -> Option<u64> {
        let mut out = 0u64;
        while n > 0 {
            let byte = *self.bytes.get(self.pos / 8)?;
            let used = (self.pos % 8) as u32;
            let avail = 8 - used;
            let take = n.min(avail);
            let chunk = (u64::from(byte) >> (avail - take)) & ((1u64 << take) - 1);
            out = (out << take) | chunk;
            self.pos += take as usize;
            n -= take;
        }
        Some(out)
    }
}

/// Whether `x` fits the signed `n`-bit field Prometheus uses for a delta of deltas.
fn fits(x: i64, n: u32) -> bool {
    let half = 1i64 << (n - 1);
    -(half - 1) <= x && x <= half
}

/// The timestamp buckets: prefix, prefix length, payload bits.
const DOD_BUCKETS: [(u64, u32, u32); 3] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)];

/// XOR state of one value field.
#[derive(Debug, Clone, Copy)]
struct Field {
    prev: u64,
    /// Leading and trailing zeros of the current window; `leading == u32::MAX`: none yet.
    leading: u32,
    trailing: u32,
}

impl Default for Field {
    fn default() -> Self {
        Field {
            prev: 0,
            leading: u32::MAX,
            trailing: 0,
        }
    }
}

/// Encodes points into one chunk, in time order.
#[derive(Debug, Clone)]
pub struct ChunkWriter<const N: usize> {
    out: BitWriter,
    count: usize,
    t: i64,
    delta: i64,
    fields: [Field; N],
}

impl<const N: usize> Default for ChunkWriter<N> {
    fn default() -> Self {
        ChunkWriter {
            out: BitWriter::default(),
            count: 0,
            t: 0,
            delta: 0,
            fields: [Field::default(); N],
        }
    }
}

impl<const N: usize> ChunkWriter<N> {
    pub fn count(&self) -> usize {
        self.count
    }

    pub fn bytes(&self) -> &[u8] {
        self.out.bytes()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.out.into_bytes()
    }

    /// Appends a point; the caller keeps timestamps increasing.
    pub fn push(&mut self, t: i64, values: [f64; N]) {
        if self.count == 0 {
            self.out.bits(t as u64, 64);
            for (field, v) in self.fields.iter_mut().zip(values) {
                field.prev = v.to_bits();
                self.out.bits(field.prev, 64);
            }
        } else {
            let delta = t.wrapping_sub(self.t);
            let dod = delta.wrapping_sub(self.delta);
            self.write_dod(dod);
            self.delta = delta;
            for (i, v) in values.into_iter().enumerate() {
                self.write_value(i, v.to_bits());
            }
        }
        self.t = t;
        self.count += 1;
    }

    fn write_dod(&mut self, dod: i64) {
        if dod == 0 {
            self.out.bit(false);
            return;
        }
        for (prefix, len, width) in DOD_BUCKETS {
            if fits(dod, width) {
                self.out.bits(prefix, len);
                self.out.bits(dod as u64, width);
                return;
            }
        }
        self.out.bits(0b1111, 4);
        self.out.bits(dod as u64, 64);
    }

    fn write_value(&mut self, i: usize, bits: u64) {
        let Some(field) = self.fields.get_mut(i) else {
            return;
        };
        let xor = bits ^ field.prev;
        field.prev = bits;
        if xor == 0 {
            self.out.bit(false);
            return;
        }
        self.out.bit(true);
        let leading = xor.leading_zeros().min(31);
        let trailing = xor.trailing_zeros();
        if field.leading != u32::MAX && leading >= field.leading && trailing >= field.trailing {
            // Inside the previous window: only its meaningful bits.
            self.out.bit(false);
            self.out
                .bits(xor >> field.trailing, 64 - field.leading - field.trailing);
        } else {
            field.leading = leading;
            field.trailing = trailing;
            let significant = 64 - leading - trailing;
            self.out.bit(true);
            self.out.bits(u64::from(leading), 5);
            // 64 significant bits are written as 0: a zero XOR took the branch above.
            self.out.bits(u64::from(significant & 63), 6);
            self.out.bits(xor >> trailing, significant);
        }
    }
}

/// Decodes `count` points of a chunk into `out`.
pub fn decode<const N: usize>(
    bytes: &[u8],
    count: usize,
    out: &mut Vec<(i64, [f64; N])>,
) -> Result<(), Corrupt> {
    let corrupt = Corrupt(count);
    let mut r = BitReader::new(bytes);
    let mut fields = [Field::default(); N];
    let mut t = 0i64;
    let mut delta = 0i64;
    for n in 0..count {
        if n == 0 {
            t = r.bits(64).ok_or(corrupt)? as i64;
            for f in fields.iter_mut() {
                f.prev = r.bits(64).ok_or(corrupt)?;
            }
        } else {
            delta = delta.wrapping_add(read_dod(&mut r).ok_or(corrupt)?);
            t = t.wrapping_add(delta);
            for f in fields.iter_mut() {
                read_value(&mut r, f).ok_or(corrupt)?;
            }
        }
        let mut values = [0.0; N];
        for (v, f) in values.iter_mut().zip(&fields) {
            *v = f64::from_bits(f.prev);
        }
        out.push((t, values));
    }
    Ok(())
}

fn read_dod(r: &mut BitReader) -> Option<i64> {
    let mut prefix = 0u32;
    while prefix < 4 && r.bit()? {
        prefix += 1;
    }
    let width = match prefix {
        0 => return Some(0),
        1 => 14,
        2 => 17,
        3 => 20,
        _ => return Some(r.bits(64)? as i64),
    };
    let raw = r.bits(width)? as i64;
    let half = 1i64 << (width - 1);
    Some(if raw > half {
        raw - (1i64 << width)
    } else {
        raw
    })
}

fn read_value(r: &mut BitReader, f: &mut Field) -> Option<()> {
    if !r.bit()? {
        return Some(());
    }
    if r.bit()? {
        f.leading = r.bits(5)? as u32;
        let significant = match r.bits(6)? as u32 {
            0 => 64,
            n => n,
        };
        if f.leading + significant > 64 {
            return None;
        }
        f.trailing = 64 - f.leading - significant;
    } else if f.leading == u32::MAX {
        // A window reused before any was set: not something the writer produces.
        return None;
    }
    let significant = 64 - f.leading - f.trailing;
    let xor = r.bits(significant)?;
    let xor = if f.trailing >= 64 {
        0
    } else {
        xor << f.trailing
    };
    f.prev ^= xor;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<const N: usize>(points: &[(i64, [f64; N])]) -> usize {
        let mut w = ChunkWriter::<N>::default();
        for &(t, v) in points {
            w.push(t, v);
        }
        let bytes = w.into_bytes();
        let mut out = Vec::new();
        decode::<N>(&bytes, points.len(), &mut out).expect("decodes");
        assert_eq!(out.len(), points.len());
        for (a, b) in out.iter().zip(points) {
            assert_eq!(a.0, b.0);
            for (x, y) in a.1.iter().zip(&b.1) {
                assert_eq!(x.to_bits(), y.to_bits(), "{x} vs {y}");
            }
        }
        bytes.len()
    }

    #[test]
    fn bits_round_trip_across_byte_edges() {
        let mut w = BitWriter::default();
        w.bits(0b101, 3);
        w.bits(u64::MAX, 64);
        w.bits(0x1234, 13);
        w.bit(true);
        let bytes = w.into_bytes();
        let mut r = BitReader::new(&bytes);
        assert_eq!(r.bits(3), Some(0b101));
        assert_eq!(r.bits(64), Some(u64::MAX));
        assert_eq!(r.bits(13), Some(0x1234 & 0x1fff));
        assert_eq!(r.bit(), Some(true));
        assert_eq!(r.bits(8), None);
    }

    #[test]
    fn steady_samples_cost_two_bits_each() {
        let points: Vec<(i64, [f64; 1])> =
            (0..1000).map(|i| (1_000_000 + i * 10_000, [7.0])).collect();
        let bytes = round_trip(&points);
        // 16 bytes for the first point, 16 bits for the first delta, then one bit of
        // timestamp and one of value.
        assert!(bytes <= 16 + 2 + 1000 * 2 / 8 + 1, "{bytes} bytes");
    }

    #[test]
    fn every_kind_of_value_and_jump_round_trips() {
        let mut points = Vec::new();
        let mut t = -5_000i64;
        let specials = [
            0.0,
            -0.0,
            1.5,
            f64::NAN,
            f64::from_bits(0x7ff0_0000_0000_0002),
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            1e-300,
            123_456_789.125,
        ];
        let jumps = [
            1,
            10_000,
            10_003,
            9_000,
            70_000,
            5_000_000,
            i64::from(u32::MAX) * 4,
            1,
        ];
        for (i, v) in specials.iter().cycle().take(200).enumerate() {
            t += jumps[i % jumps.len()];
            points.push((t, [*v]));
        }
        round_trip(&points);
    }

    #[test]
    fn several_fields_round_trip() {
        let points: Vec<(i64, [f64; 6])> = (0..300)
            .map(|i| {
                let x = i as f64;
                (i * 300_000 + (i % 3), [x, x * 2.0, 30.0, x.sqrt(), 0.0, -x])
            })
            .collect();
        round_trip(&points);
    }

    #[test]
    fn truncated_or_garbage_chunks_are_errors_not_panics() {
        let points: Vec<(i64, [f64; 1])> = (0..50).map(|i| (i * 1000, [i as f64 * 1.1])).collect();
        let mut w = ChunkWriter::<1>::default();
        for &(t, v) in &points {
            w.push(t, v);
        }
        let bytes = w.into_bytes();
        for cut in 0..bytes.len() {
            let mut out = Vec::new();
            assert!(decode::<1>(&bytes[..cut], 50, &mut out).is_err());
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200 {
            let garbage: Vec<u8> = (0..64)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let mut out = Vec::new();
            let _ = decode::<6>(&garbage, 100, &mut out);
        }
    }
}
