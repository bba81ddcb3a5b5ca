//! Continued process verification (stage 3 of process validation): trend charts kept on the
//! gateway across jobs for predicted content and process temperatures, so a drift raises a
//! warning event *before* a unit goes out of specification.
//!
//! Each characteristic has an individuals (Shewhart) chart — centre line and σ from a baseline
//! phase (σ from the average moving range, MR̄/1.128), action beyond 3σ, warning when two of three
//! successive points lie beyond 2σ on the same side — and a tabular CUSUM (reference value k and
//! decision interval h in σ units, reset after a signal) that catches small sustained shifts
//! Shewhart limits miss. A value outside the specification limits is reported as such. The state
//! is plain data (serde) for the daemon to persist; this module does no I/O and keeps no clock —
//! observations carry the caller's sequence number.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What is being trended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Characteristic {
    /// Predicted drug content, % w/w.
    ContentPctWw,
    /// Predicted dose per unit, mg.
    DoseMg,
    /// Nozzle (hot-end) temperature, °C.
    NozzleTempC,
    /// Bed temperature, °C.
    BedTempC,
}

/// How a chart is set up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartSpec {
    /// Centre line (target or baseline mean).
    pub centre: f64,
    /// Process standard deviation.
    pub sigma: f64,
    /// Lower specification limit.
    pub spec_low: Option<f64>,
    /// Upper specification limit.
    pub spec_high: Option<f64>,
    /// CUSUM reference value, in σ (0.5 detects a 1σ shift fastest).
    pub cusum_k: f64,
    /// CUSUM decision interval, in σ.
    pub cusum_h: f64,
}

/// Why a chart could not be set up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CpvError {
    /// Fewer than 8 baseline points.
    #[error("{0} baseline points; at least 8 are needed")]
    ShortBaseline(usize),
    /// σ is not a positive finite number.
    #[error("σ = {0} is not positive and finite")]
    BadSigma(f64),
    /// A baseline value is not finite.
    #[error("baseline value {index} is not finite")]
    NotFinite {
        /// Index.
        index: usize,
    },
}

impl ChartSpec {
    /// A chart whose centre and σ come from a baseline phase (mean and MR̄/1.128), with
    /// k = 0.5σ and h = 5σ (in-control average run length ≈ 465 points).
    pub fn from_baseline(
        baseline: &[f64],
        spec_low: Option<f64>,
        spec_high: Option<f64>,
    ) -> Result<Self, CpvError> {
        if baseline.len() < 8 {
            return Err(CpvError::ShortBaseline(baseline.len()));
        }
        if let Some(index) = baseline.iter().position(|v| !v.is_finite()) {
            return Err(CpvError::NotFinite { index });
        }
        let centre = baseline.iter().sum::<f64>() / baseline.len() as f64;
        let mr: f64 = baseline
            .windows(2)
            .filter_map(|w| match w {
                [a, b] => Some((b - a).abs()),
                _ => None,
            })
            .sum::<f64>()
            / (baseline.len() - 1) as f64;
        let sigma = mr / 1.128;
        if !(sigma > 0.0 && sigma.is_finite()) {
            return Err(CpvError::BadSigma(sigma));
        }
        Ok(ChartSpec {
            centre,
            sigma,
            spec_low,
            spec_high,
            cusum_k: 0.5,
            cusum_h: 5.0,
        })
    }
}

/// A rule that fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// One point beyond 3σ (action).
    BeyondThreeSigma,
    /// Two of three successive points beyond 2σ on one side (warning).
    TwoOfThreeBeyondTwoSigma,
    /// Upper CUSUM above h (sustained upward shift; warning).
    CusumHigh,
    /// Lower CUSUM above h (sustained downward shift; warning).
    CusumLow,
    /// The value is outside the specification limits.
    OutOfSpecification,
}

/// How urgent a signal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// A trend: investigate before units go out of specification.
    Warning,
    /// The process is out of control or out of specification.
    Action,
}

/// A trend event for the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrendSignal {
    /// Characteristic.
    pub characteristic: Characteristic,
    /// Rule.
    pub rule: Rule,
    /// Severity.
    pub severity: Severity,
    /// The caller's sequence number of the observation.
    pub seq: u64,
    /// The observed value.
    pub value: f64,
    /// The statistic compared (the value, or the CUSUM sum in process units).
    pub statistic: f64,
    /// The limit it crossed.
    pub limit: f64,
}

/// One characteristic's chart and its running state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendChart {
    characteristic: Characteristic,
    spec: ChartSpec,
    cusum_high: f64,
    cusum_low: f64,
    /// Sides (−1, 0, +1) of the last three points relative to ±2σ.
    recent: Vec<i8>,
    observations: u64,
}

impl TrendChart {
    /// A new chart.
    pub fn new(characteristic: Characteristic, spec: ChartSpec) -> Result<Self, CpvError> {
        if !(spec.sigma > 0.0 && spec.sigma.is_finite()) {
            return Err(CpvError::BadSigma(spec.sigma));
        }
        Ok(TrendChart {
            characteristic,
            spec,
            cusum_high: 0.0,
            cusum_low: 0.0,
            recent: Vec::with_capacity(3),
            observations: 0,
        })
    }

    /// The chart's set-up.
    pub fn spec(&self) -> &ChartSpec {
        &self.spec
    }

    /// Observations so far.
    pub fn observations(&self) -> u64 {
        self.observations
    }

    /// Adds one observation and returns the rules it fired. A non-finite value fires
    /// [`Rule::OutOfSpecification`] and leaves the CUSUM untouched.
    pub fn observe(&mut self, seq: u64, value: f64) -> Vec<TrendSignal> {
        let s = self.spec;
        let mut out = Vec::new();
        let mut signal = |rule, severity, statistic, limit| {
            out.push(TrendSignal {
                characteristic: self.characteristic,
                rule,
                severity,
                seq,
                value,
                statistic,
                limit,
            });
        };
        self.observations += 1;
        if !value.is_finite() {
            signal(Rule::OutOfSpecification, Severity::Action, value, f64::NAN);
            return out;
        }
        if let Some(lo) = s.spec_low.filter(|lo| value < *lo) {
            signal(Rule::OutOfSpecification, Severity::Action, value, lo);
        }
        if let Some(hi) = s.spec_high.filter(|hi| value > *hi) {
            signal(Rule::OutOfSpecification, Severity::Action, value, hi);
        }
        let z = (value - s.centre) / s.sigma;
        if z.abs() > 3.0 {
            let limit = s.centre + 3.0 * s.sigma * z.signum();
            signal(Rule::BeyondThreeSigma, Severity::Action, value, limit);
        }
        let side: i8 = if z > 2.0 {
            1
        } else if z < -2.0 {
            -1
        } else {
            0
        };
        if self.recent.len() == 3 {
            self.recent.remove(0);
        }
        self.recent.push(side);
        if side != 0 && self.recent.iter().filter(|&&x| x == side).count() >= 2 {
            let limit = s.centre + 2.0 * s.sigma * f64::from(side);
            signal(
                Rule::TwoOfThreeBeyondTwoSigma,
                Severity::Warning,
                value,
                limit,
            );
        }
        let k = s.cusum_k * s.sigma;
        let h = s.cusum_h * s.sigma;
        self.cusum_high = (self.cusum_high + value - s.centre - k).max(0.0);
        self.cusum_low = (self.cusum_low + s.centre - value - k).max(0.0);
        if self.cusum_high > h {
            signal(Rule::CusumHigh, Severity::Warning, self.cusum_high, h);
            self.cusum_high = 0.0;
        }
        if self.cusum_low > h {
            signal(Rule::CusumLow, Severity::Warning, self.cusum_low, h);
            self.cusum_low = 0.0;
        }
        out
    }
}

/// All the charts a gateway keeps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessVerification {
    charts: BTreeMap<Characteristic, TrendChart>,
}

impl ProcessVerification {
    /// Installs (or replaces) the chart of a characteristic.
    pub fn set_chart(&mut self, chart: TrendChart) {
        self.charts.insert(chart.characteristic, chart);
    }

    /// The chart of a characteristic.
    pub fn chart(&self, c: Characteristic) -> Option<&TrendChart> {
        self.charts.get(&c)
    }

    /// Observes a value; characteristics without a chart are not trended (empty result).
    pub fn observe(&mut self, c: Characteristic, seq: u64, value: f64) -> Vec<TrendSignal> {
        self.charts
            .get_mut(&c)
            .map(|chart| chart.observe(seq, value))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed, deterministic, roughly normal noise sequence with SD 1 (sum of 12 uniforms − 6).
    fn noise(n: usize) -> Vec<f64> {
        let mut state: u64 = 42;
        let mut uniform = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| (0..12).map(|_| uniform()).sum::<f64>() - 6.0)
            .collect()
    }

    fn content_chart() -> TrendChart {
        // Baseline: 8.0 % w/w with noise SD 0.1; specification 7.4 … 8.6.
        let base: Vec<f64> = noise(50).iter().map(|e| 8.0 + 0.1 * e).collect();
        let spec = ChartSpec::from_baseline(&base, Some(7.4), Some(8.6)).unwrap();
        TrendChart::new(Characteristic::ContentPctWw, spec).unwrap()
    }

    #[test]
    fn a_stable_process_raises_nothing() {
        let mut chart = content_chart();
        for (i, e) in noise(150).iter().enumerate().skip(50) {
            let signals = chart.observe(i as u64, 8.0 + 0.1 * e);
            assert!(signals.is_empty(), "{i}: {signals:?}");
        }
    }

    #[test]
    fn a_slow_drift_warns_before_the_first_unit_is_out_of_specification() {
        let mut chart = content_chart();
        let mut first_warning = None;
        let mut first_oos = None;
        for (i, e) in noise(400).iter().enumerate() {
            let value = 8.0 + 0.002 * i as f64 + 0.1 * e;
            for s in chart.observe(i as u64, value) {
                if s.severity == Severity::Warning && first_warning.is_none() {
                    first_warning = Some(i);
                }
                if s.rule == Rule::OutOfSpecification && first_oos.is_none() {
                    first_oos = Some(i);
                }
            }
        }
        let (w, o) = (first_warning.unwrap(), first_oos.unwrap());
        assert!(w + 20 < o, "warning at {w}, out of specification at {o}");
    }

    #[test]
    fn a_jump_beyond_three_sigma_is_an_action() {
        let mut chart = content_chart();
        let sigma = chart.spec().sigma;
        let s = chart.observe(0, 8.0 - 3.5 * sigma);
        assert!(
            s.iter()
                .any(|s| s.rule == Rule::BeyondThreeSigma && s.severity == Severity::Action)
        );
        let s = chart.observe(1, f64::NAN);
        assert_eq!(s[0].rule, Rule::OutOfSpecification);
    }

    #[test]
    fn charts_persist_as_data_and_unknown_characteristics_are_not_trended() {
        let mut pv = ProcessVerification::default();
        pv.set_chart(content_chart());
        assert!(pv.observe(Characteristic::BedTempC, 0, 1e9).is_empty());
        pv.observe(Characteristic::ContentPctWw, 0, 8.1);
        let json = serde_json::to_string(&pv).unwrap();
        let back: ProcessVerification = serde_json::from_str(&json).unwrap();
        assert_eq!(back, pv);
        assert_eq!(
            back.chart(Characteristic::ContentPctWw)
                .unwrap()
                .observations(),
            1
        );
    }

    #[test]
    fn refuses_short_baselines() {
        assert_eq!(
            ChartSpec::from_baseline(&[1.0; 3], None, None),
            Err(CpvError::ShortBaseline(3))
        );
        assert_eq!(
            ChartSpec::from_baseline(&[1.0; 10], None, None),
            Err(CpvError::BadSigma(0.0))
        );
    }
}
