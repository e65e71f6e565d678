//! Turns load outcomes into the summaries the tool prints, as text for people or JSON for scripts.

use std::fmt::Write as _;

use serde::Serialize;

use crate::load::{LoadOutcome, LoadPlan, StatusCounts};

#[derive(Clone, Debug, Serialize)]
pub struct LatencySummary {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub url: String,
    pub method: String,
    pub connections: usize,
    pub warmup_secs: f64,
    /// For a merged baseline this covers both runs.
    pub measured_secs: f64,
    pub requests: u64,
    pub requests_per_sec: f64,
    pub latency_us: LatencySummary,
    pub status: StatusCounts,
    pub transport_errors: u64,
    pub reconnects: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl RunSummary {
    pub fn new(url: &str, method: &str, plan: &LoadPlan, outcome: &LoadOutcome) -> Self {
        let latency = &outcome.latency;
        Self {
            url: url.to_owned(),
            method: method.to_owned(),
            connections: plan.connections,
            warmup_secs: plan.warmup.as_secs_f64(),
            measured_secs: outcome.measured.as_secs_f64(),
            requests: outcome.requests(),
            requests_per_sec: outcome.requests_per_sec(),
            latency_us: LatencySummary {
                p50: latency.value_at_percentile(50.0),
                p90: latency.value_at_percentile(90.0),
                p99: latency.value_at_percentile(99.0),
                max: latency.max_us(),
                mean: latency.mean_us(),
            },
            status: outcome.status,
            transport_errors: outcome.transport_errors,
            reconnects: outcome.reconnects,
            first_error: outcome.first_error.clone(),
        }
    }

    pub fn to_text(&self) -> String {
        let latency = &self.latency_us;
        let status = &self.status;
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{} {}  {} connections, {:.1} s measured after {:.1} s warm-up",
            self.method, self.url, self.connections, self.measured_secs, self.warmup_secs
        );
        let _ = writeln!(
            text,
            "  requests   {} ({:.1} req/s)",
            self.requests, self.requests_per_sec
        );
        let _ = writeln!(
            text,
            "  latency    p50 {}  p90 {}  p99 {}  max {}  mean {}",
            format_micros(latency.p50),
            format_micros(latency.p90),
            format_micros(latency.p99),
            format_micros(latency.max),
            format_micros(latency.mean.round() as u64),
        );
        let _ = writeln!(
            text,
            "  responses  2xx {}  3xx {}  4xx {}  5xx {}{}",
            status.success,
            status.redirection,
            status.client_error,
            status.server_error,
            if status.other > 0 {
                format!("  other {}", status.other)
            } else {
                String::new()
            },
        );
        let _ = writeln!(
            text,
            "  errors     {} transport, {} reconnects",
            self.transport_errors, self.reconnects
        );
        if let Some(error) = &self.first_error {
            let _ = writeln!(text, "  first error: {error}");
        }
        text
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CompareSummary {
    pub connections: usize,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    /// Both baseline runs pooled: throughput is their mean, percentiles cover all samples.
    pub baseline: RunSummary,
    pub baseline_runs_rps: [f64; 2],
    /// How far the two baseline runs disagree; a large value means the machine was too
    /// noisy for the ratio to be trusted.
    pub baseline_drift_pct: f64,
    pub target: RunSummary,
    /// target requests/s as a percentage of baseline requests/s.
    pub ratio_pct: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_ratio_pct: Option<f64>,
    pub passed: bool,
}

impl CompareSummary {
    pub fn new(
        plan: &LoadPlan,
        baseline_runs: [&RunSummary; 2],
        baseline: RunSummary,
        target: RunSummary,
        min_ratio_pct: Option<f64>,
    ) -> Self {
        let runs_rps = baseline_runs.map(|run| run.requests_per_sec);
        let baseline_mean = (runs_rps[0] + runs_rps[1]) / 2.0;
        let baseline_drift_pct = percentage((runs_rps[0] - runs_rps[1]).abs(), baseline_mean);
        let ratio_pct = percentage(target.requests_per_sec, baseline.requests_per_sec);
        Self {
            connections: plan.connections,
            warmup_secs: plan.warmup.as_secs_f64(),
            duration_secs: plan.duration.as_secs_f64(),
            baseline,
            baseline_runs_rps: runs_rps,
            baseline_drift_pct,
            target,
            ratio_pct,
            min_ratio_pct,
            passed: min_ratio_pct.is_none_or(|minimum| ratio_pct >= minimum),
        }
    }

    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "target {} {}", self.target.method, self.target.url);
        let _ = writeln!(
            text,
            "{} connections, {:.1} s per run after {:.1} s warm-up; order: baseline, target, baseline",
            self.connections, self.duration_secs, self.warmup_secs
        );
        let _ = writeln!(
            text,
            "{:<18} {:>10} {:>10} {:>10} {:>10} {:>8} {:>7}",
            "", "req/s", "p50", "p99", "max", "non-2xx", "errors"
        );
        for (label, run) in [
            ("baseline (hello)", &self.baseline),
            ("target", &self.target),
        ] {
            let _ = writeln!(
                text,
                "{:<18} {:>10.1} {:>10} {:>10} {:>10} {:>8} {:>7}",
                label,
                run.requests_per_sec,
                format_micros(run.latency_us.p50),
                format_micros(run.latency_us.p99),
                format_micros(run.latency_us.max),
                run.status.non_success(),
                run.transport_errors,
            );
        }
        let _ = writeln!(
            text,
            "baseline runs: {:.1} and {:.1} req/s (drift {:.1}%)",
            self.baseline_runs_rps[0], self.baseline_runs_rps[1], self.baseline_drift_pct
        );
        let _ = writeln!(
            text,
            "ratio: target throughput is {:.1}% of baseline (p99 {} vs {})",
            self.ratio_pct,
            format_micros(self.target.latency_us.p99),
            format_micros(self.baseline.latency_us.p99),
        );
        for (label, run) in [("baseline", &self.baseline), ("target", &self.target)] {
            if let Some(error) = &run.first_error {
                let _ = writeln!(text, "{label} first error: {error}");
            }
        }
        if let Some(minimum) = self.min_ratio_pct {
            let verdict = if self.passed { "PASS" } else { "FAIL" };
            let relation = if self.passed { ">=" } else { "<" };
            let _ = writeln!(
                text,
                "{verdict}: {:.1}% {relation} required {minimum:.1}%",
                self.ratio_pct
            );
        }
        text
    }
}

fn percentage(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole * 100.0
    } else {
        0.0
    }
}

/// Microseconds in the unit a person reads fastest.
pub fn format_micros(micros: u64) -> String {
    if micros < 1_000 {
        format!("{micros} µs")
    } else if micros < 1_000_000 {
        format!("{:.2} ms", micros as f64 / 1e3)
    } else {
        format!("{:.2} s", micros as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::histogram::LatencyHistogram;

    fn run_with(requests_per_sec: u64, latency_us: u64) -> RunSummary {
        let mut latency = LatencyHistogram::new();
        for _ in 0..requests_per_sec {
            latency.record(latency_us);
        }
        let outcome = LoadOutcome {
            latency,
            status: StatusCounts::default(),
            transport_errors: 0,
            reconnects: 0,
            first_error: None,
            measured: Duration::from_secs(1),
        };
        RunSummary::new("http://127.0.0.1:1/", "GET", &plan(), &outcome)
    }

    fn plan() -> LoadPlan {
        LoadPlan {
            connections: 2,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
        }
    }

    #[test]
    fn micros_are_shown_in_a_readable_unit() {
        assert_eq!(format_micros(999), "999 µs");
        assert_eq!(format_micros(1_500), "1.50 ms");
        assert_eq!(format_micros(2_500_000), "2.50 s");
    }

    #[test]
    fn ratio_compares_against_the_baseline_mean_and_gates_on_the_minimum() {
        let first = run_with(900, 100);
        let second = run_with(1_100, 100);
        let mut pooled = run_with(2_000, 100);
        pooled.requests_per_sec = 1_000.0;
        let target = run_with(800, 200);
        let summary = CompareSummary::new(
            &plan(),
            [&first, &second],
            pooled.clone(),
            target.clone(),
            Some(85.0),
        );
        assert!((summary.ratio_pct - 80.0).abs() < 1e-9);
        assert!((summary.baseline_drift_pct - 20.0).abs() < 1e-9);
        assert!(!summary.passed);
        assert!(summary.to_text().contains("FAIL"));

        let summary = CompareSummary::new(&plan(), [&first, &second], pooled, target, None);
        assert!(summary.passed);
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["target"]["latency_us"]["p99"], 200);
        assert_eq!(json["target"]["status"]["2xx"], 0);
        assert!(json.get("min_ratio_pct").is_none());
    }
}
