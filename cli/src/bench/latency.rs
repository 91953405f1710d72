//! Per-send latencies, recorded without allocating inside the timed loop.

use std::time::Duration;

/// Latency samples in nanoseconds, in a buffer sized before timing starts.
///
/// [`record`](LatencyRecorder::record) never allocates: once the buffer is
/// full, further samples are counted in [`dropped`](LatencyRecorder::dropped)
/// and left out. Size it with the count of timed sends (per thread, then
/// [`merge`](LatencyRecorder::merge) after the run).
///
/// ```
/// use sessionrepl_cli::bench::LatencyRecorder;
/// use std::time::Duration;
///
/// let mut rec = LatencyRecorder::with_capacity(100);
/// for us in 1..=100 {
///     rec.record(Duration::from_micros(us));
/// }
/// let p = rec.percentiles();
/// assert_eq!((p.p50_us, p.p99_us, p.max_us), (50.0, 99.0, 100.0));
/// ```
#[derive(Debug, Clone, Default)]
pub struct LatencyRecorder {
    samples: Vec<u64>,
    dropped: u64,
}

/// The latency figures of one run, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Percentiles {
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest sample.
    pub max_us: f64,
    /// How many samples the figures come from.
    pub samples: u64,
}

impl LatencyRecorder {
    /// A recorder holding up to `capacity` samples, allocated now.
    pub fn with_capacity(capacity: usize) -> LatencyRecorder {
        LatencyRecorder {
            samples: Vec::with_capacity(capacity),
            dropped: 0,
        }
    }

    /// Records one latency (saturating at `u64::MAX` ns).
    #[inline]
    pub fn record(&mut self, latency: Duration) {
        self.record_ns(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records one latency given in nanoseconds.
    #[inline]
    pub fn record_ns(&mut self, nanos: u64) {
        if self.samples.len() < self.samples.capacity() {
            self.samples.push(nanos);
        } else {
            self.dropped += 1;
        }
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample is held.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Samples left out because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Adds `other`'s samples to these (allocates: call after timing).
    pub fn merge(&mut self, other: &LatencyRecorder) {
        self.samples.extend_from_slice(&other.samples);
        self.dropped += other.dropped;
    }

    /// Empties the recorder, keeping its capacity (for a warm-up pass).
    pub fn clear(&mut self) {
        self.samples.clear();
        self.dropped = 0;
    }

    /// p50, p99 and max by nearest rank; all 0 when there is no sample.
    /// Sorts the samples in place.
    pub fn percentiles(&mut self) -> Percentiles {
        self.samples.sort_unstable();
        let us = |ns: u64| ns as f64 / 1_000.0;
        Percentiles {
            p50_us: us(percentile_of_sorted(&self.samples, 0.50)),
            p99_us: us(percentile_of_sorted(&self.samples, 0.99)),
            max_us: us(self.samples.last().copied().unwrap_or(0)),
            samples: self.samples.len() as u64,
        }
    }
}

/// The nearest-rank `p` quantile (`0.0..=1.0`) of ascending `sorted`: the
/// smallest sample with at least `p` of all samples at or below it; 0 for an
/// empty slice.
///
/// ```
/// use sessionrepl_cli::bench::percentile_of_sorted;
/// assert_eq!(percentile_of_sorted(&[10, 20, 30, 40], 0.5), 20);
/// assert_eq!(percentile_of_sorted(&[10, 20, 30, 40], 0.99), 40);
/// ```
pub fn percentile_of_sorted(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile_of_sorted(&v, 0.5), 500);
        assert_eq!(percentile_of_sorted(&v, 0.99), 990);
        assert_eq!(percentile_of_sorted(&v, 1.0), 1000);
        assert_eq!(percentile_of_sorted(&v, 0.0), 1);
        assert_eq!(percentile_of_sorted(&[7], 0.99), 7);
        assert_eq!(percentile_of_sorted(&[], 0.5), 0);
    }

    #[test]
    fn unsorted_samples_give_their_percentiles_in_microseconds() {
        let mut rec = LatencyRecorder::with_capacity(200);
        // 1..=200 µs, shuffled by a fixed stride (coprime with 200).
        for i in 0..200u64 {
            rec.record_ns(((i * 77) % 200 + 1) * 1_000);
        }
        let p = rec.percentiles();
        assert_eq!(p.samples, 200);
        assert_eq!(p.p50_us, 100.0);
        assert_eq!(p.p99_us, 198.0);
        assert_eq!(p.max_us, 200.0);
    }

    #[test]
    fn full_recorder_counts_instead_of_growing() {
        let mut rec = LatencyRecorder::with_capacity(4);
        let cap = rec.samples.capacity();
        for _ in 0..cap + 3 {
            rec.record(Duration::from_nanos(1500));
        }
        assert_eq!(rec.len(), cap);
        assert_eq!(rec.dropped(), 3);
        assert_eq!(rec.samples.capacity(), cap);
        assert_eq!(rec.percentiles().p50_us, 1.5);
    }

    #[test]
    fn merged_recorders_and_empty_ones() {
        let mut a = LatencyRecorder::with_capacity(2);
        let mut b = LatencyRecorder::with_capacity(2);
        a.record_ns(1_000);
        b.record_ns(3_000);
        b.record_ns(2_000);
        a.merge(&b);
        let p = a.percentiles();
        assert_eq!((p.samples, p.p50_us, p.max_us), (3, 2.0, 3.0));
        a.clear();
        assert!(a.is_empty());
        assert_eq!(a.percentiles(), Percentiles::default());
    }
}
