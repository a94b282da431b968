//! Latency percentiles from all recorded samples (no histogram buckets:
//! a 10-second run at tens of thousands of requests a second is a few
//! megabytes of samples, sorted once at the end).

use serde_json::{Value, json};

/// Samples in microseconds.
#[derive(Debug, Default)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    pub fn record(&mut self, micros: u64) {
        self.0.push(micros.min(u32::MAX as u64) as u32);
    }

    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// The value below which `q` (0..=1) of the samples lie (nearest rank).
    fn percentile(sorted: &[u32], q: f64) -> u32 {
        if sorted.is_empty() {
            return 0;
        }
        let rank = (q * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    /// p50, p90, p99, p99.9 and max in microseconds, as JSON.
    pub fn summary(mut self) -> Value {
        self.0.sort_unstable();
        let p = |q| Self::percentile(&self.0, q);
        json!({
            "samples": self.0.len(),
            "p50_us": p(0.50),
            "p90_us": p(0.90),
            "p99_us": p(0.99),
            "p999_us": p(0.999),
            "max_us": self.0.last().copied().unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut latencies = Latencies::default();
        for micros in (1..=100).rev() {
            latencies.record(micros);
        }
        let summary = latencies.summary();
        assert_eq!(summary["samples"], 100);
        assert_eq!(summary["p50_us"], 50);
        assert_eq!(summary["p99_us"], 99);
        assert_eq!(summary["max_us"], 100);
    }

    #[test]
    fn no_samples_gives_zeros_not_a_panic() {
        assert_eq!(Latencies::default().summary()["p99_us"], 0);
    }
}
