//! Pure backend selection: the revision a request goes to (weighted split), then the backend.
//! No I/O and no clock: callers pass counters and health flags, so every decision is testable.

use crate::config::Balance;

/// What selection needs to know about one backend at the moment of choosing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate<'a> {
    pub revision: &'a str,
    /// Requests or connections in flight.
    pub active: u64,
    /// False while passive health check skips it (recent connect failure).
    pub healthy: bool,
    /// Already tried for this request.
    pub excluded: bool,
}

/// Indices of the candidates a request may go to, all of one revision when a split applies.
///
/// Healthy candidates are preferred; when every eligible one is marked unhealthy they are
/// all tried anyway (a stale mark must not turn into a 503). With a split, the revision is
/// chosen by weight among listed revisions that have an eligible backend; when none of them
/// has one, traffic falls back to every eligible backend rather than failing.
pub(crate) fn pool(
    cands: &[Candidate<'_>],
    split: Option<&[(String, u32)]>,
    ticket: u64,
) -> Vec<usize> {
    let eligible = |c: &Candidate<'_>| !c.excluded;
    let any_healthy = cands.iter().any(|c| eligible(c) && c.healthy);
    let usable = |c: &Candidate<'_>| eligible(c) && (c.healthy || !any_healthy);
    let mut pool: Vec<usize> = (0..cands.len()).filter(|&i| usable(&cands[i])).collect();
    let Some(split) = split else { return pool };
    let present = |rev: &str| pool.iter().any(|&i| cands[i].revision == rev);
    let weighted: Vec<(&str, u64)> = split
        .iter()
        .filter(|(rev, w)| *w > 0 && present(rev))
        .map(|(rev, w)| (rev.as_str(), u64::from(*w)))
        .collect();
    let total: u64 = weighted.iter().map(|(_, w)| w).sum();
    if total == 0 {
        return pool;
    }
    let mut point = spread(ticket, total);
    let mut chosen = weighted[0].0;
    for (rev, w) in &weighted {
        if point < *w {
            chosen = rev;
            break;
        }
        point -= w;
    }
    pool.retain(|&i| cands[i].revision == chosen);
    pool
}

/// Picks one index out of a non-empty `pool`; `rr` is a per-revision rotating counter.
pub(crate) fn pick(
    cands: &[Candidate<'_>],
    pool: &[usize],
    balance: Balance,
    rr: u64,
) -> Option<usize> {
    if pool.is_empty() {
        return None;
    }
    // The modulo is below pool.len(), which fits in usize.
    let start = (rr % pool.len() as u64) as usize;
    match balance {
        Balance::RoundRobin => Some(pool[start]),
        Balance::LeastConnections => {
            // Rotate the starting point so ties are shared instead of always hitting the first.
            let mut best = pool[start];
            for k in 1..pool.len() {
                let i = pool[(start + k) % pool.len()];
                if cands[i].active < cands[best].active {
                    best = i;
                }
            }
            Some(best)
        }
    }
}

/// `pick` over a pool of every item, without building it: what the hot path uses when
/// no split applies, nothing was tried yet and every backend is healthy.
pub(crate) fn pick_all<T>(
    items: &[T],
    balance: Balance,
    rr: u64,
    active: impl Fn(&T) -> u64,
) -> Option<usize> {
    if items.is_empty() {
        return None;
    }
    let n = items.len();
    let start = (rr % n as u64) as usize;
    match balance {
        Balance::RoundRobin => Some(start),
        Balance::LeastConnections => {
            let mut best = start;
            let mut least = active(&items[start]);
            for k in 1..n {
                let i = (start + k) % n;
                let a = active(&items[i]);
                if a < least {
                    best = i;
                    least = a;
                }
            }
            Some(best)
        }
    }
}

/// Maps a ticket to a point in `[0, total)`; consecutive tickets are spread evenly over the
/// range (golden-ratio Weyl sequence), so a 10/90 split alternates instead of bursting.
pub(crate) fn spread(ticket: u64, total: u64) -> u64 {
    let frac = ticket.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((u128::from(frac) * u128::from(total)) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(revision: &str, active: u64) -> Candidate<'_> {
        Candidate {
            revision,
            active,
            healthy: true,
            excluded: false,
        }
    }

    fn split(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
        pairs.iter().map(|(r, w)| (r.to_string(), *w)).collect()
    }

    #[test]
    fn round_robin_rotates_over_the_pool() {
        let cands = [cand("v1", 0), cand("v1", 5), cand("v1", 9)];
        let pool = pool(&cands, None, 0);
        let picks: Vec<_> = (0..6)
            .map(|rr| pick(&cands, &pool, Balance::RoundRobin, rr))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2].map(Some));
    }

    #[test]
    fn least_connections_prefers_the_idlest_and_shares_ties() {
        let cands = [cand("v1", 3), cand("v1", 0), cand("v1", 7)];
        let pool = pool(&cands, None, 0);
        for rr in 0..3 {
            assert_eq!(pick(&cands, &pool, Balance::LeastConnections, rr), Some(1));
        }
        let tied = [cand("v1", 1), cand("v1", 1)];
        let pool = super::pool(&tied, None, 0);
        let picks: Vec<_> = (0..2)
            .map(|rr| pick(&tied, &pool, Balance::LeastConnections, rr))
            .collect();
        assert_eq!(picks, [Some(0), Some(1)]);
    }

    #[test]
    fn unhealthy_and_excluded_are_skipped_but_all_unhealthy_still_serve() {
        let mut cands = [cand("v1", 0), cand("v1", 0), cand("v1", 0)];
        cands[0].healthy = false;
        cands[1].excluded = true;
        assert_eq!(pool(&cands, None, 0), [2]);
        cands[2].healthy = false;
        assert_eq!(pool(&cands, None, 0), [0, 2]);
        cands[0].excluded = true;
        cands[2].excluded = true;
        assert!(pool(&cands, None, 0).is_empty());
        assert_eq!(pick(&cands, &[], Balance::RoundRobin, 0), None);
    }

    #[test]
    fn split_lands_on_weights_and_ignores_unlisted_revisions() {
        let cands = [cand("v1", 0), cand("v2", 0), cand("v3", 0)];
        let split = split(&[("v2", 10), ("v1", 90)]);
        let mut counts = [0u32; 3];
        for ticket in 0..1000 {
            let pool = pool(&cands, Some(&split), ticket);
            let revs: Vec<_> = pool.iter().map(|&i| cands[i].revision).collect();
            assert_eq!(revs.len(), 1, "one revision per decision: {revs:?}");
            counts[pool[0]] += 1;
        }
        assert!((95..=105).contains(&counts[1]), "v2 got {}", counts[1]);
        assert_eq!(counts[0] + counts[1], 1000);
        assert_eq!(counts[2], 0);
    }

    #[test]
    fn split_falls_back_when_listed_revisions_have_no_backend() {
        let cands = [cand("v1", 0), cand("v1", 0)];
        let gone = split(&[("v2", 100)]);
        assert_eq!(pool(&cands, Some(&gone), 7), [0, 1]);
        let zero = split(&[("v1", 0), ("v2", 0)]);
        assert_eq!(pool(&cands, Some(&zero), 7), [0, 1]);
        // Weighted revision whose backends are all excluded: the other listed one takes it.
        let mut cands = [cand("v1", 0), cand("v2", 0)];
        cands[1].excluded = true;
        let both = split(&[("v2", 50), ("v1", 50)]);
        for ticket in 0..20 {
            assert_eq!(pool(&cands, Some(&both), ticket), [0]);
        }
    }

    #[test]
    fn pick_all_agrees_with_pick_over_the_full_pool() {
        let actives = [[0, 0, 0], [3, 0, 7], [1, 1, 0], [5, 5, 5]];
        for active in actives {
            let cands: Vec<_> = active.iter().map(|&a| cand("v1", a)).collect();
            let pool = pool(&cands, None, 0);
            for balance in [Balance::RoundRobin, Balance::LeastConnections] {
                for rr in 0..7 {
                    assert_eq!(
                        pick_all(&cands, balance, rr, |c| c.active),
                        pick(&cands, &pool, balance, rr),
                        "{active:?} {balance:?} {rr}"
                    );
                }
            }
        }
        assert_eq!(
            pick_all(&[] as &[u64], Balance::RoundRobin, 0, |a| *a),
            None
        );
    }

    #[test]
    fn spread_stays_in_range() {
        for total in [1, 2, 3, 7, 100, u64::from(u32::MAX)] {
            for ticket in [0, 1, 2, 999, u64::MAX] {
                assert!(spread(ticket, total) < total);
            }
        }
    }
}
