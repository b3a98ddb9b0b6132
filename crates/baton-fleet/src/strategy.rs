//! How hosts are scheduled: parallel (bounded by forks), sequential, or rolling in
//! batches of N or N%; what a failure does (stop, continue, ignore); and when the share
//! of failed hosts aborts the run. Pure decisions, tested here.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    #[default]
    Parallel,
    Sequential,
    Rolling,
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "parallel" => Ok(Strategy::Parallel),
            "sequential" => Ok(Strategy::Sequential),
            "rolling" => Ok(Strategy::Rolling),
            _ => Err(format!(
                "unknown strategy `{s}` (parallel, sequential, rolling)"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Start nothing new anywhere once a host fails.
    #[default]
    Stop,
    /// The failed host stops; the others go on.
    Continue,
    /// The failed step is recorded and the host goes on with its next steps.
    Ignore,
}

impl FromStr for OnFailure {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stop" => Ok(OnFailure::Stop),
            "continue" => Ok(OnFailure::Continue),
            "ignore" => Ok(OnFailure::Ignore),
            _ => Err(format!(
                "unknown failure policy `{s}` (stop, continue, ignore)"
            )),
        }
    }
}

/// A rolling batch size: a count or a percentage of the selected hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Batch {
    Count(usize),
    Percent(u8),
}

impl FromStr for Batch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("batch `{s}` must be a count (5) or a percentage (25%)");
        if let Some(p) = s.strip_suffix('%') {
            let p: u8 = p.trim().parse().map_err(|_| bad())?;
            if p == 0 || p > 100 {
                return Err(bad());
            }
            Ok(Batch::Percent(p))
        } else {
            let n: usize = s.trim().parse().map_err(|_| bad())?;
            if n == 0 {
                return Err(bad());
            }
            Ok(Batch::Count(n))
        }
    }
}

impl Batch {
    pub fn size(self, total: usize) -> usize {
        match self {
            Batch::Count(n) => n,
            Batch::Percent(p) => (total * p as usize).div_ceil(100),
        }
        .max(1)
    }
}

/// The waves hosts run in: one for parallel, one per host for sequential, batches for
/// rolling (default batch: 1).
pub fn waves<T: Clone>(hosts: &[T], strategy: Strategy, batch: Option<Batch>) -> Vec<Vec<T>> {
    if hosts.is_empty() {
        return Vec::new();
    }
    let size = match strategy {
        Strategy::Parallel => hosts.len(),
        Strategy::Sequential => 1,
        Strategy::Rolling => batch.unwrap_or(Batch::Count(1)).size(hosts.len()),
    };
    hosts.chunks(size).map(|c| c.to_vec()).collect()
}

/// True when `failed` hosts out of `wave_len` exceed `max_fail_percentage` (Ansible's
/// rule: strictly greater aborts).
pub fn too_many_failures(failed: usize, wave_len: usize, max_fail_percentage: Option<u8>) -> bool {
    match max_fail_percentage {
        None => false,
        Some(p) => wave_len > 0 && failed * 100 > p as usize * wave_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_follow_the_strategy() {
        let h: Vec<u32> = (0..20).collect();
        assert_eq!(waves(&h, Strategy::Parallel, None).len(), 1);
        assert_eq!(waves(&h, Strategy::Sequential, None).len(), 20);
        let w = waves(&h, Strategy::Rolling, Some(Batch::Count(5)));
        assert_eq!(w.len(), 4);
        assert!(w.iter().all(|w| w.len() == 5));
        assert_eq!(
            waves(&h, Strategy::Rolling, Some(Batch::Percent(30))).len(),
            4
        );
        assert_eq!(
            waves(&h[..7], Strategy::Rolling, Some(Batch::Count(5)))[1],
            vec![5, 6]
        );
        assert!(waves::<u32>(&[], Strategy::Rolling, None).is_empty());
    }

    #[test]
    fn batches_and_policies_parse() {
        assert_eq!("5".parse::<Batch>(), Ok(Batch::Count(5)));
        assert_eq!("25%".parse::<Batch>(), Ok(Batch::Percent(25)));
        assert!("0".parse::<Batch>().is_err());
        assert!("120%".parse::<Batch>().is_err());
        assert!("x".parse::<Strategy>().is_err());
        assert_eq!("ignore".parse::<OnFailure>(), Ok(OnFailure::Ignore));
    }

    #[test]
    fn max_fail_percentage_is_strict() {
        assert!(!too_many_failures(1, 5, Some(20)));
        assert!(too_many_failures(2, 5, Some(20)));
        assert!(too_many_failures(1, 5, Some(0)));
        assert!(!too_many_failures(5, 5, None));
    }
}
