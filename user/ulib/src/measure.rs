//! Small statistics for measurements: percentiles of latency samples. Pure, host-tested.

use alloc::vec::Vec;

/// Summary of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Summary {
    pub count: usize,
    pub min: u64,
    pub median: u64,
    pub p90: u64,
    pub max: u64,
}

/// The `p`-th percentile (0..=100) of sorted samples, nearest-rank.
pub fn percentile(sorted: &[u64], p: u32) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() * p.min(100) as usize).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// Summarizes samples (their order does not matter).
pub fn summarize(samples: &[u64]) -> Summary {
    let mut sorted: Vec<u64> = samples.to_vec();
    sorted.sort_unstable();
    Summary {
        count: sorted.len(),
        min: sorted.first().copied().unwrap_or(0),
        median: percentile(&sorted, 50),
        p90: percentile(&sorted, 90),
        max: sorted.last().copied().unwrap_or(0),
    }
}

/// `a / b` as a fixed-point number with two decimals (`(whole, hundredths)`); (0, 0) if b is 0.
pub fn ratio(a: u64, b: u64) -> (u64, u64) {
    if b == 0 {
        return (0, 0);
    }
    let hundredths = (a as u128 * 100 + b as u128 / 2) / b as u128;
    ((hundredths / 100) as u64, (hundredths % 100) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let s: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&s, 50), 5);
        assert_eq!(percentile(&s, 90), 9);
        assert_eq!(percentile(&s, 100), 10);
        assert_eq!(percentile(&[], 50), 0);
        let sum = summarize(&[5, 1, 3]);
        assert_eq!((sum.count, sum.min, sum.median, sum.max), (3, 1, 3, 5));
    }

    #[test]
    fn ratio_rounds_to_hundredths() {
        assert_eq!(ratio(3, 2), (1, 50));
        assert_eq!(ratio(1, 3), (0, 33));
        assert_eq!(ratio(1, 0), (0, 0));
    }
}
