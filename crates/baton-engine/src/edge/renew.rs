//! When a certificate is renewed: at two thirds of its lifetime (Let's Encrypt's advice,
//! Caddy's and certbot's practice), and how long a failed attempt waits before the next.
//! Pure: times come in as Unix milliseconds.

/// The first wait after a failed issuance or renewal; doubles up to `MAX_RETRY_MS`.
pub const FIRST_RETRY_MS: u64 = 60_000;
/// The longest wait between two attempts.
pub const MAX_RETRY_MS: u64 = 3_600_000;

/// Where a certificate stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Nothing to do until `at_ms`, two thirds into its lifetime.
    Fresh { at_ms: u64 },
    /// Past two thirds of its lifetime: renew now (it still serves).
    Due,
    /// Past its end: clients refuse it.
    Expired,
}

/// Where a certificate valid from `not_before_ms` to `not_after_ms` stands at `now_ms`.
pub fn renewal(now_ms: u64, not_before_ms: u64, not_after_ms: u64) -> Renewal {
    if now_ms >= not_after_ms {
        return Renewal::Expired;
    }
    let lifetime = not_after_ms.saturating_sub(not_before_ms);
    let at_ms = not_before_ms.saturating_add(lifetime / 3 * 2 + lifetime % 3 * 2 / 3);
    if now_ms >= at_ms {
        Renewal::Due
    } else {
        Renewal::Fresh { at_ms }
    }
}

/// How long to wait after the `failures`-th failure in a row (1 for the first).
pub fn retry_delay_ms(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_RETRY_MS
        .saturating_mul(1 << doublings)
        .min(MAX_RETRY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000;

    #[test]
    fn a_90_day_certificate_is_renewed_after_60_days() {
        let nb = 1_000 * DAY;
        let na = nb + 90 * DAY;
        assert_eq!(
            renewal(nb, nb, na),
            Renewal::Fresh {
                at_ms: nb + 60 * DAY
            }
        );
        assert_eq!(
            renewal(nb + 60 * DAY - 1, nb, na),
            Renewal::Fresh {
                at_ms: nb + 60 * DAY
            }
        );
        assert_eq!(renewal(nb + 60 * DAY, nb, na), Renewal::Due);
        assert_eq!(renewal(na - 1, nb, na), Renewal::Due);
        assert_eq!(renewal(na, nb, na), Renewal::Expired);
        // Odd lifetimes round down, never past the end.
        assert_eq!(renewal(0, 0, 10), Renewal::Fresh { at_ms: 6 });
        assert_eq!(renewal(7, 10, 5), Renewal::Expired);
    }

    #[test]
    fn failures_back_off_from_a_minute_to_an_hour() {
        let waits: Vec<u64> = (1..=9).map(retry_delay_ms).collect();
        assert_eq!(
            waits,
            [
                60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000, 3_600_000, 3_600_000,
                3_600_000
            ]
        );
        assert_eq!(retry_delay_ms(0), 60_000);
        assert_eq!(retry_delay_ms(u32::MAX), 3_600_000);
    }
}
