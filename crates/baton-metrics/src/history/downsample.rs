//! Five-minute aggregates of raw samples (min, max, sum, count, last and the counter
//! increase), kept beside the raw chunks and read instead of them for long ranges.

use crate::sample::is_stale;

/// The width of one aggregate window, in milliseconds.
pub const WINDOW_MS: i64 = 5 * 60 * 1000;

/// One series' samples inside one five-minute window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// The time of the window's last sample.
    pub t: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: f64,
    pub last: f64,
    /// How much the series grew as a counter from the sample before the window's first
    /// to its last, resets accounted for as `rate` does (a drop is a restart from zero).
    pub inc: f64,
}

impl Window {
    pub fn to_fields(self) -> [f64; 6] {
        [
            self.min, self.max, self.sum, self.count, self.last, self.inc,
        ]
    }

    pub fn from_fields(t: i64, f: [f64; 6]) -> Self {
        let [min, max, sum, count, last, inc] = f;
        Window {
            t,
            min,
            max,
            sum,
            count,
            last,
            inc,
        }
    }
}

/// The window a timestamp falls in.
pub fn window_of(t: i64) -> i64 {
    t.div_euclid(WINDOW_MS)
}

/// Aggregates `points` (in time order) into windows. `prev` is the series' last value
/// before them, so the first window's `inc` counts growth since then. Staleness markers
/// are skipped.
pub fn downsample(points: &[(i64, f64)], mut prev: Option<f64>) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    let mut current: Option<(i64, Window)> = None;
    for &(t, v) in points {
        if is_stale(v) {
            continue;
        }
        let grew = match prev {
            Some(p) if v >= p => v - p,
            Some(p) if v < p => v,
            _ => 0.0,
        };
        if !v.is_nan() {
            prev = Some(v);
        }
        let w = window_of(t);
        match &mut current {
            Some((cw, win)) if *cw == w => {
                win.t = t;
                win.min = win.min.min(v);
                win.max = win.max.max(v);
                win.sum += v;
                win.count += 1.0;
                win.last = v;
                win.inc += grew;
            }
            _ => {
                if let Some((_, win)) = current.take() {
                    out.push(win);
                }
                current = Some((
                    w,
                    Window {
                        t,
                        min: v,
                        max: v,
                        sum: v,
                        count: 1.0,
                        last: v,
                        inc: grew,
                    },
                ));
            }
        }
    }
    if let Some((_, win)) = current {
        out.push(win);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::STALE_NAN_BITS;

    #[test]
    fn windows_hold_min_max_sum_count_last_and_reset_aware_growth() {
        let m = WINDOW_MS;
        let points = [
            (10, 5.0),
            (m / 2, 8.0),
            (m - 1, 2.0), // a reset: grew by 2
            (m, f64::from_bits(STALE_NAN_BITS)),
            (m + 10, 3.0),
            (3 * m, 10.0),
        ];
        let w = downsample(&points, Some(4.0));
        assert_eq!(w.len(), 3);
        assert_eq!(
            w[0],
            Window {
                t: m - 1,
                min: 2.0,
                max: 8.0,
                sum: 15.0,
                count: 3.0,
                last: 2.0,
                inc: 1.0 + 3.0 + 2.0
            }
        );
        assert_eq!(w[1].inc, 1.0);
        assert_eq!(w[1].count, 1.0);
        assert_eq!(w[2].inc, 7.0);
        assert_eq!(w[2].t, 3 * m);
    }
}
