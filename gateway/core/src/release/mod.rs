//! The real-time release decision, per unit and per job.
//!
//! A unit is **released** when its dose is within the prescription's tolerance and its spectrum
//! lies inside the model's domain (T² and Q within their 99 % limits), **released with a warning**
//! when either statistic is above its 95 % limit, **quarantined** for the hub's Qualified Person
//! when the prediction cannot be trusted (spectrum outside the domain, axis not the model's, no
//! measurement, an implausible mass) and **rejected** when it is out of specification (dose, or
//! mass when the balance weighed it). Domain comes first: a prediction from a spectrum the model
//! has never seen decides nothing, in either direction.
//!
//! Doses are explicit about their basis: a % w/w model's content is turned into mg with the unit's
//! mass, from the balance when it weighed the unit, else the nominal mass `dose / API fraction`
//! of the prescription's formulation ([`MassSource`]); an mg model's prediction is the dose.
//! Per job, [`decide_job`] accounts for every unit of the prescription exactly once. This module
//! does no I/O and takes only [`Prediction`]s made by a validated model.

use serde::Serialize;

use crate::inference::{Domain, Prediction, Quantity};
use crate::prescription::Prescription;
use crate::spectrum::AxisMismatch;

/// Where the unit mass used for a % w/w → mg conversion came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MassSource {
    /// Weighed on the balance.
    Balance,
    /// Nominal: prescription dose / API mass fraction of the ink.
    Nominal,
    /// Not needed: the model predicts mg per unit.
    NotNeeded,
}

/// The dose of a unit and how it was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DoseEstimate {
    /// Dose, mg.
    pub dose_mg: f64,
    /// The model's prediction, in its own unit.
    pub predicted: f64,
    /// What the model predicts.
    pub quantity: Quantity,
    /// Unit mass used, mg (for % w/w models).
    pub mass_mg: Option<f64>,
    /// Where that mass came from.
    pub mass_source: MassSource,
}

/// A domain statistic above its 95 % limit (still within 99 %).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "statistic")]
pub enum Warning {
    /// Hotelling T² above its 95 % limit.
    T2Above95 {
        /// T².
        t2: f64,
        /// The 95 % limit.
        limit: f64,
    },
    /// Q above its 95 % limit.
    QAbove95 {
        /// Q.
        q: f64,
        /// The 95 % limit.
        limit: f64,
    },
}

/// Why a unit is held for the Qualified Person.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "code")]
pub enum QuarantineReason {
    /// T² or Q above its 99 % limit: the spectrum lies outside the model's domain.
    OutOfDomain {
        /// T².
        t2: f64,
        /// T² 99 % limit.
        t2_limit99: f64,
        /// Q.
        q: f64,
        /// Q 99 % limit.
        q_limit99: f64,
    },
    /// The spectrum's axis is not the model's.
    AxisMismatch {
        /// The mismatch.
        mismatch: AxisMismatch,
    },
    /// No spectrum was measured for the unit.
    NotMeasured,
    /// More than one measurement claims the unit.
    DuplicateMeasurement {
        /// How many.
        count: usize,
    },
    /// The balance gave a mass that is not a positive finite number.
    ImplausibleMass {
        /// The mass, mg.
        mass_mg: f64,
    },
}

/// Why a unit is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "code")]
pub enum RejectReason {
    /// The dose is outside the prescription's tolerance.
    DoseOutOfSpecification {
        /// The dose estimate.
        dose: DoseEstimate,
        /// Lowest allowed, mg.
        low_mg: f64,
        /// Highest allowed, mg.
        high_mg: f64,
    },
    /// The weighed mass is outside the nominal mass ± the prescription's tolerance.
    MassOutOfSpecification {
        /// Mass, mg.
        mass_mg: f64,
        /// Lowest allowed, mg.
        low_mg: f64,
        /// Highest allowed, mg.
        high_mg: f64,
    },
}

/// The decision for one unit.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "decision")]
pub enum Decision {
    /// In specification, inside the domain.
    Released {
        /// The dose.
        dose: DoseEstimate,
    },
    /// In specification, inside the 99 % domain but above a 95 % limit.
    ReleasedWithWarning {
        /// The dose.
        dose: DoseEstimate,
        /// What was above 95 %.
        warnings: Vec<Warning>,
    },
    /// Held for the Qualified Person.
    Quarantined {
        /// Why.
        reason: QuarantineReason,
    },
    /// Out of specification.
    Rejected {
        /// Why.
        reason: RejectReason,
    },
}

impl Decision {
    /// The dose estimate, when the unit got one (released, or rejected for its dose).
    pub fn dose(&self) -> Option<&DoseEstimate> {
        match self {
            Self::Released { dose }
            | Self::ReleasedWithWarning { dose, .. }
            | Self::Rejected {
                reason: RejectReason::DoseOutOfSpecification { dose, .. },
            } => Some(dose),
            Self::Quarantined { .. }
            | Self::Rejected {
                reason: RejectReason::MassOutOfSpecification { .. },
            } => None,
        }
    }

    /// Stable code: `released`, `released-with-warning`, or the quarantine or reject reason's.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Released { .. } => "released",
            Self::ReleasedWithWarning { .. } => "released-with-warning",
            Self::Quarantined { reason } => match reason {
                QuarantineReason::OutOfDomain { .. } => "out-of-domain",
                QuarantineReason::AxisMismatch { .. } => "axis-mismatch",
                QuarantineReason::NotMeasured => "not-measured",
                QuarantineReason::DuplicateMeasurement { .. } => "duplicate-measurement",
                QuarantineReason::ImplausibleMass { .. } => "implausible-mass",
            },
            Self::Rejected { reason } => match reason {
                RejectReason::DoseOutOfSpecification { .. } => "dose-out-of-specification",
                RejectReason::MassOutOfSpecification { .. } => "mass-out-of-specification",
            },
        }
    }

    /// True for both release forms.
    pub fn is_released(&self) -> bool {
        matches!(
            self,
            Decision::Released { .. } | Decision::ReleasedWithWarning { .. }
        )
    }
}

/// What was measured for one unit.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitMeasurement {
    /// Unit number, 1 … prescription units.
    pub unit: u32,
    /// The model's prediction, or why the spectrum could not be predicted.
    pub spectrum: Result<Prediction, AxisMismatch>,
    /// Mass from the balance, mg, when the unit was weighed.
    pub mass_mg: Option<f64>,
}

/// Nominal unit mass: dose / API mass fraction, mg.
pub fn nominal_mass_mg(rx: &Prescription) -> f64 {
    rx.dose_mg / rx.formulation.api_fraction
}

/// Decides one unit.
pub fn decide_unit(
    rx: &Prescription,
    spectrum: &Result<Prediction, AxisMismatch>,
    mass_mg: Option<f64>,
) -> Decision {
    let p = match spectrum {
        Err(mismatch) => {
            return Decision::Quarantined {
                reason: QuarantineReason::AxisMismatch {
                    mismatch: mismatch.clone(),
                },
            };
        }
        Ok(p) => p,
    };
    let l = p.limits();
    if p.domain() == Domain::Outside {
        return Decision::Quarantined {
            reason: QuarantineReason::OutOfDomain {
                t2: p.t2(),
                t2_limit99: l.t2_99,
                q: p.q(),
                q_limit99: l.q99,
            },
        };
    }
    if let Some(m) = mass_mg {
        if !(m.is_finite() && m > 0.0) {
            return Decision::Quarantined {
                reason: QuarantineReason::ImplausibleMass { mass_mg: m },
            };
        }
    }
    let dose = match p.quantity() {
        Quantity::AmountMg => DoseEstimate {
            dose_mg: p.value(),
            predicted: p.value(),
            quantity: p.quantity(),
            mass_mg,
            mass_source: MassSource::NotNeeded,
        },
        Quantity::ContentPctWw => {
            let (mass, source) = match mass_mg {
                Some(m) => (m, MassSource::Balance),
                None => (nominal_mass_mg(rx), MassSource::Nominal),
            };
            DoseEstimate {
                dose_mg: p.value() / 100.0 * mass,
                predicted: p.value(),
                quantity: p.quantity(),
                mass_mg: Some(mass),
                mass_source: source,
            }
        }
    };
    let (low_mg, high_mg) = rx.dose_window_mg();
    if !(low_mg..=high_mg).contains(&dose.dose_mg) {
        return Decision::Rejected {
            reason: RejectReason::DoseOutOfSpecification {
                dose,
                low_mg,
                high_mg,
            },
        };
    }
    if let Some(m) = mass_mg {
        let nominal = nominal_mass_mg(rx);
        let delta = nominal * rx.tolerance_pct / 100.0;
        let (lo, hi) = (nominal - delta, nominal + delta);
        if !(lo..=hi).contains(&m) {
            return Decision::Rejected {
                reason: RejectReason::MassOutOfSpecification {
                    mass_mg: m,
                    low_mg: lo,
                    high_mg: hi,
                },
            };
        }
    }
    let mut warnings = Vec::new();
    if p.t2() > l.t2_95 {
        warnings.push(Warning::T2Above95 {
            t2: p.t2(),
            limit: l.t2_95,
        });
    }
    if p.q() > l.q95 {
        warnings.push(Warning::QAbove95 {
            q: p.q(),
            limit: l.q95,
        });
    }
    if warnings.is_empty() {
        Decision::Released { dose }
    } else {
        Decision::ReleasedWithWarning { dose, warnings }
    }
}

/// One unit's line in the job account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitDecision {
    /// Unit number.
    pub unit: u32,
    /// The decision.
    pub decision: Decision,
}

/// The state of a job after release testing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobOutcome {
    /// Every unit released (with or without warning).
    Released,
    /// At least one unit awaits the Qualified Person.
    Quarantined,
    /// No unit quarantined, at least one rejected.
    Rejected,
}

/// Every unit of a job, each decided exactly once.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobAccount {
    units: Vec<UnitDecision>,
    released: u32,
    released_with_warning: u32,
    quarantined: u32,
    rejected: u32,
    outcome: JobOutcome,
}

impl JobAccount {
    /// Decisions, in unit order 1 … N.
    pub fn units(&self) -> &[UnitDecision] {
        &self.units
    }
    /// Units released without warning.
    pub fn released(&self) -> u32 {
        self.released
    }
    /// Units released with a warning.
    pub fn released_with_warning(&self) -> u32 {
        self.released_with_warning
    }
    /// Units quarantined.
    pub fn quarantined(&self) -> u32 {
        self.quarantined
    }
    /// Units rejected.
    pub fn rejected(&self) -> u32 {
        self.rejected
    }
    /// The job's outcome.
    pub fn outcome(&self) -> JobOutcome {
        self.outcome
    }
}

/// Why a job could not be accounted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// A measurement names a unit the prescription does not have.
    #[error("measurement for unit {unit}, but the job has units 1 … {units}")]
    UnknownUnit {
        /// The unit named.
        unit: u32,
        /// Units in the prescription.
        units: u32,
    },
}

/// Decides every unit of a job: units without a measurement, or with more than one, are
/// quarantined; a measurement for a unit the job does not have is refused.
pub fn decide_job(
    rx: &Prescription,
    measurements: &[UnitMeasurement],
) -> Result<JobAccount, ReleaseError> {
    if let Some(m) = measurements
        .iter()
        .find(|m| m.unit == 0 || m.unit > rx.units)
    {
        return Err(ReleaseError::UnknownUnit {
            unit: m.unit,
            units: rx.units,
        });
    }
    let mut units = Vec::with_capacity(rx.units as usize);
    let (mut released, mut warned, mut quarantined, mut rejected) = (0, 0, 0, 0);
    for unit in 1..=rx.units {
        let mine: Vec<&UnitMeasurement> = measurements.iter().filter(|m| m.unit == unit).collect();
        let decision = match mine.as_slice() {
            [] => Decision::Quarantined {
                reason: QuarantineReason::NotMeasured,
            },
            [m] => decide_unit(rx, &m.spectrum, m.mass_mg),
            many => Decision::Quarantined {
                reason: QuarantineReason::DuplicateMeasurement { count: many.len() },
            },
        };
        match decision {
            Decision::Released { .. } => released += 1,
            Decision::ReleasedWithWarning { .. } => warned += 1,
            Decision::Quarantined { .. } => quarantined += 1,
            Decision::Rejected { .. } => rejected += 1,
        }
        units.push(UnitDecision { unit, decision });
    }
    let outcome = if quarantined > 0 {
        JobOutcome::Quarantined
    } else if rejected > 0 {
        JobOutcome::Rejected
    } else {
        JobOutcome::Released
    };
    Ok(JobAccount {
        units,
        released,
        released_with_warning: warned,
        quarantined,
        rejected,
        outcome,
    })
}

#[cfg(test)]
mod tests;
