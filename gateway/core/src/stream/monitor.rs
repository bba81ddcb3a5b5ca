//! Live design-space monitoring of temperatures during a print.
//!
//! Owns the rule "a heater whose target lies in the design space must reach its band within the
//! heat-up timeout, and then may leave the band (widened by the tolerance) for at most the grace
//! time". It does not read the policy file or parse reports (the streamer feeds it readings and
//! the set-points of commands the firmware has acknowledged).

use std::time::Duration;

use super::{AbortReason, Heater};
use crate::policy::Policy;

/// The temperature part of a design space, as the monitor applies it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MonitorLimits {
    /// Hot-end band (min, max) in °C; `None`: not monitored.
    pub hotend_c: Option<(f64, f64)>,
    /// Bed band (min, max) in °C; `None`: not monitored.
    pub bed_c: Option<(f64, f64)>,
    /// How far outside the band a reading may be without counting as a deviation, °C.
    pub tolerance_c: f64,
    /// How long a deviation may last before the job is aborted.
    pub grace: Duration,
    /// How long a heater may take to reach its band after a set-point inside it.
    pub heatup_timeout: Duration,
    /// Longest gap between temperature reports while a heater is monitored.
    pub report_timeout: Duration,
}

impl MonitorLimits {
    /// The limits a policy implies: its nozzle and bed set-point ranges as bands (an unheated
    /// `[0, 0]` range is not monitored), and its `temperature.tolerance_c`, `grace_s` and
    /// `heatup_timeout_s` (validated and bounded when the policy was parsed). The gap between
    /// reports is the link's, not the product's: this module's default.
    pub fn from_policy(policy: &Policy) -> Self {
        let band = |r: [f64; 2]| (r[1] > 0.0).then_some((r[0], r[1]));
        let t = policy.temperature();
        let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO);
        Self {
            hotend_c: band(t.nozzle_c),
            bed_c: band(t.bed_c),
            tolerance_c: t.tolerance_c,
            grace: secs(t.grace_s),
            heatup_timeout: secs(t.heatup_timeout_s),
            ..Self::default()
        }
    }
}

impl Default for MonitorLimits {
    fn default() -> Self {
        Self {
            hotend_c: None,
            bed_c: None,
            tolerance_c: 3.0,
            grace: Duration::from_secs(10),
            heatup_timeout: Duration::from_secs(600),
            report_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum HeaterState {
    /// Set-point outside the band (off, or cooling at the end): not monitored.
    Idle,
    /// Set-point inside the band since `since`; waiting to enter the band.
    HeatingUp { since: Duration, target: f64 },
    /// In the band (or out of it for less than the grace time, since `out_since`).
    Holding { out_since: Option<Duration> },
}

#[derive(Debug, Clone, Copy)]
struct HeaterMonitor {
    heater: Heater,
    band: Option<(f64, f64)>,
    state: HeaterState,
    last: Option<f64>,
}

impl HeaterMonitor {
    fn new(heater: Heater, band: Option<(f64, f64)>) -> Self {
        Self {
            heater,
            band,
            state: HeaterState::Idle,
            last: None,
        }
    }

    fn set_point(&mut self, target: f64, now: Duration) {
        let Some((min, max)) = self.band else { return };
        self.state = if (min..=max).contains(&target) {
            match self.state {
                HeaterState::Holding { .. } => self.state,
                _ => HeaterState::HeatingUp { since: now, target },
            }
        } else {
            HeaterState::Idle
        };
    }

    fn reading(&mut self, measured: f64, limits: &MonitorLimits, now: Duration) {
        self.last = Some(measured);
        let Some((min, max)) = self.band else { return };
        let inside = measured >= min - limits.tolerance_c && measured <= max + limits.tolerance_c;
        self.state = match self.state {
            HeaterState::HeatingUp { .. } | HeaterState::Holding { .. } if inside => {
                HeaterState::Holding { out_since: None }
            }
            HeaterState::Holding { out_since: None } => HeaterState::Holding {
                out_since: Some(now),
            },
            s => s,
        };
    }

    fn check(&self, limits: &MonitorLimits, now: Duration) -> Option<AbortReason> {
        let (min_c, max_c) = self.band?;
        match self.state {
            HeaterState::Idle | HeaterState::Holding { out_since: None } => None,
            HeaterState::HeatingUp { since, target } => (now.saturating_sub(since)
                > limits.heatup_timeout)
                .then(|| AbortReason::HeatupTimeout {
                    heater: self.heater,
                    target_c: target,
                    last_c: self.last,
                    waited_ms: millis(now.saturating_sub(since)),
                }),
            HeaterState::Holding {
                out_since: Some(since),
            } => (now.saturating_sub(since) > limits.grace).then(|| {
                AbortReason::TemperatureDeviation {
                    heater: self.heater,
                    measured_c: self.last.unwrap_or(f64::NAN),
                    min_c,
                    max_c,
                    tolerance_c: limits.tolerance_c,
                    lasted_ms: millis(now.saturating_sub(since)),
                }
            }),
        }
    }

    fn deadline(&self, limits: &MonitorLimits) -> Option<Duration> {
        match self.state {
            HeaterState::HeatingUp { since, .. } => {
                Some(since + limits.heatup_timeout + Duration::from_millis(1))
            }
            HeaterState::Holding { out_since: Some(s) } => {
                Some(s + limits.grace + Duration::from_millis(1))
            }
            _ => None,
        }
    }

    fn monitored(&self) -> bool {
        self.state != HeaterState::Idle
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Watches hot end and bed against [`MonitorLimits`].
#[derive(Debug, Clone)]
pub struct TemperatureMonitor {
    limits: MonitorLimits,
    hotend: HeaterMonitor,
    bed: HeaterMonitor,
    last_report: Option<Duration>,
}

impl TemperatureMonitor {
    /// A monitor with nothing set yet (both heaters idle).
    pub fn new(limits: MonitorLimits) -> Self {
        Self {
            hotend: HeaterMonitor::new(Heater::Hotend, limits.hotend_c),
            bed: HeaterMonitor::new(Heater::Bed, limits.bed_c),
            limits,
            last_report: None,
        }
    }

    /// The firmware acknowledged a command setting `heater`'s target to `target_c`.
    pub fn set_point(&mut self, heater: Heater, target_c: f64, now: Duration) {
        match heater {
            Heater::Hotend => self.hotend.set_point(target_c, now),
            Heater::Bed => self.bed.set_point(target_c, now),
        }
        if self.last_report.is_none() {
            self.last_report = Some(now);
        }
    }

    /// A temperature report arrived.
    pub fn report(&mut self, hotend_c: Option<f64>, bed_c: Option<f64>, now: Duration) {
        if let Some(t) = hotend_c {
            self.hotend.reading(t, &self.limits, now);
        }
        if let Some(t) = bed_c {
            self.bed.reading(t, &self.limits, now);
        }
        self.last_report = Some(now);
    }

    /// The reason to abort, if any limit is exceeded at `now`.
    pub fn check(&self, now: Duration) -> Option<AbortReason> {
        if let Some(r) = self
            .hotend
            .check(&self.limits, now)
            .or_else(|| self.bed.check(&self.limits, now))
        {
            return Some(r);
        }
        let watching = self.hotend.monitored() || self.bed.monitored();
        match self.last_report {
            Some(last) if watching && now.saturating_sub(last) > self.limits.report_timeout => {
                Some(AbortReason::TemperatureReportsStopped {
                    silent_ms: millis(now.saturating_sub(last)),
                })
            }
            _ => None,
        }
    }

    /// When [`Self::check`] may next change its answer.
    pub fn deadline(&self) -> Option<Duration> {
        let stale = (self.hotend.monitored() || self.bed.monitored())
            .then(|| {
                self.last_report
                    .map(|l| l + self.limits.report_timeout + Duration::from_millis(1))
            })
            .flatten();
        [
            self.hotend.deadline(&self.limits),
            self.bed.deadline(&self.limits),
            stale,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}
