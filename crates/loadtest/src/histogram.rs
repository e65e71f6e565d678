//! Fixed-size log-linear latency histogram (HDR-style) so every request can be recorded without a dependency or any allocation on the hot path.

/// Each power-of-two range is split into this many equal buckets, which bounds the
/// relative error of a reported value by 1/128 (< 0.8 %).
const SUB_BUCKET_BITS: u32 = 7;
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;

/// 2^32 µs is over an hour; slower samples are clamped into the top bucket
/// (the exact maximum is still kept separately).
const TRACKABLE_BITS: u32 = 32;
const MAX_TRACKABLE_US: u64 = (1 << TRACKABLE_BITS) - 1;
const BUCKET_COUNT: usize = ((TRACKABLE_BITS - SUB_BUCKET_BITS + 1) as u64 * SUB_BUCKETS) as usize;

/// Latencies in whole microseconds.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    buckets: Box<[u64]>,
    count: u64,
    sum_us: u64,
    max_us: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        Self {
            buckets: vec![0; BUCKET_COUNT].into_boxed_slice(),
            count: 0,
            sum_us: 0,
            max_us: 0,
        }
    }

    pub fn record(&mut self, latency_us: u64) {
        self.buckets[bucket_index(latency_us)] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(latency_us);
        self.max_us = self.max_us.max(latency_us);
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    pub fn mean_us(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_us as f64 / self.count as f64
        }
    }

    /// Smallest recorded value such that `percentile` % of samples are at or below it,
    /// reported as the top of its bucket (never above the true maximum), as HdrHistogram does.
    pub fn value_at_percentile(&self, percentile: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let wanted_rank =
            ((percentile.clamp(0.0, 100.0) / 100.0) * self.count as f64).ceil() as u64;
        let wanted_rank = wanted_rank.clamp(1, self.count);
        let mut seen = 0;
        for (index, &in_bucket) in self.buckets.iter().enumerate() {
            seen += in_bucket;
            if seen >= wanted_rank {
                return bucket_highest_value(index).min(self.max_us);
            }
        }
        self.max_us
    }
}

fn bucket_index(value_us: u64) -> usize {
    let value_us = value_us.min(MAX_TRACKABLE_US);
    if value_us < 2 * SUB_BUCKETS {
        return value_us as usize;
    }
    let highest_bit = 63 - value_us.leading_zeros();
    let shift = highest_bit - SUB_BUCKET_BITS;
    (u64::from(shift) * SUB_BUCKETS + (value_us >> shift)) as usize
}

fn bucket_highest_value(index: usize) -> u64 {
    let index = index as u64;
    if index < 2 * SUB_BUCKETS {
        return index;
    }
    let shift = index / SUB_BUCKETS - 1;
    let mantissa = index % SUB_BUCKETS + SUB_BUCKETS;
    ((mantissa + 1) << shift) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_within_one_percent(actual: u64, expected: u64) {
        let error = (actual as f64 - expected as f64).abs() / expected as f64;
        assert!(
            error <= 0.01,
            "{actual} is not within 1% of {expected} ({:.3}%)",
            error * 100.0
        );
    }

    #[test]
    fn buckets_are_contiguous_and_cover_the_trackable_range() {
        let mut previous_highest = None;
        for index in 0..BUCKET_COUNT {
            let highest = bucket_highest_value(index);
            assert_eq!(bucket_index(highest), index);
            if let Some(previous) = previous_highest {
                assert_eq!(
                    bucket_index(previous + 1),
                    index,
                    "gap before bucket {index}"
                );
            }
            previous_highest = Some(highest);
        }
        assert_eq!(previous_highest, Some(MAX_TRACKABLE_US));
    }

    #[test]
    fn every_bucket_is_narrower_than_one_percent_of_its_values() {
        for value in [
            256,
            300,
            1_000,
            12_345,
            999_999,
            5_000_000,
            MAX_TRACKABLE_US,
        ] {
            let highest = bucket_highest_value(bucket_index(value));
            assert!(highest >= value);
            assert_within_one_percent(highest, value);
        }
    }

    #[test]
    fn small_values_are_exact() {
        let mut histogram = LatencyHistogram::new();
        for value in [3, 7, 200] {
            histogram.record(value);
        }
        assert_eq!(histogram.value_at_percentile(0.0), 3);
        assert_eq!(histogram.value_at_percentile(50.0), 7);
        assert_eq!(histogram.value_at_percentile(100.0), 200);
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut histogram = LatencyHistogram::new();
        for value in 1..=100_000 {
            histogram.record(value);
        }
        assert_eq!(histogram.count(), 100_000);
        assert_within_one_percent(histogram.value_at_percentile(50.0), 50_000);
        assert_within_one_percent(histogram.value_at_percentile(90.0), 90_000);
        assert_within_one_percent(histogram.value_at_percentile(99.0), 99_000);
        assert_eq!(histogram.value_at_percentile(100.0), 100_000);
        assert_eq!(histogram.max_us(), 100_000);
        assert!((histogram.mean_us() - 50_000.5).abs() < 1e-6);
    }

    #[test]
    fn a_single_sample_is_reported_exactly_at_every_percentile() {
        let mut histogram = LatencyHistogram::new();
        histogram.record(12_345);
        for percentile in [0.0, 50.0, 99.0, 100.0] {
            assert_eq!(histogram.value_at_percentile(percentile), 12_345);
        }
    }

    #[test]
    fn outliers_beyond_the_range_keep_their_exact_maximum() {
        let mut histogram = LatencyHistogram::new();
        histogram.record(u64::MAX);
        assert_eq!(histogram.max_us(), u64::MAX);
        assert_eq!(histogram.value_at_percentile(100.0), MAX_TRACKABLE_US);
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let histogram = LatencyHistogram::new();
        assert_eq!(histogram.value_at_percentile(99.0), 0);
        assert_eq!(histogram.mean_us(), 0.0);
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let mut fast = LatencyHistogram::new();
        let mut slow = LatencyHistogram::new();
        let mut together = LatencyHistogram::new();
        for value in 1..=1_000 {
            fast.record(value);
            together.record(value);
            slow.record(value * 1_000);
            together.record(value * 1_000);
        }
        fast.merge(&slow);
        assert_eq!(fast.count(), together.count());
        assert_eq!(fast.max_us(), together.max_us());
        for percentile in [10.0, 50.0, 75.0, 99.9] {
            assert_eq!(
                fast.value_at_percentile(percentile),
                together.value_at_percentile(percentile)
            );
        }
    }
}
