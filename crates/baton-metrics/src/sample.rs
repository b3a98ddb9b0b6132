//! Samples: what one sampling of the registry (a scrape) gives the history, every series'
//! value at one caller-given time.

use crate::labels::Labels;

/// The value Prometheus writes when a series stops being scraped (a staleness marker):
/// one NaN among the many, told apart by its bits.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is a staleness marker (not any NaN: a series may well be NaN).
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Every series' value at `t` (Unix milliseconds). A scrape is whole: a series that was in
/// the previous scrape and is not in this one has ended (the history marks it stale).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    pub t: i64,
    pub samples: Vec<(Labels, f64)>,
}
