//! Design-space policies: what a product × printer is validated to do, and the check of a G-code
//! program against it.
//!
//! A policy is a TOML file under `policies/` (see `docs/gcode.md`): a deny-by-default allowlist of
//! commands with the parameter letters each may carry, the extruder geometry, and ranges for
//! temperatures, speeds, bed volume, layers, dwell and fan. [`Policy::from_toml`] validates it
//! once (every range `min ≤ max`, finite, physical). [`check`] / [`ProgramChecker`] run the parser
//! and the virtual print ([`crate::gcode`]) and compare every step and the final analysis with
//! the policy and the prescription's dose window; [`verify_program`] returns the proof type
//! [`VerifiedProgram`] only when nothing was found. This module does no I/O.

mod check;
mod reason;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use check::{
    CallerHashedChecker, HOMING_CLEARANCE_MM, HashedProgram, MAX_REASONS, ProgramChecker,
    ProgramReport, Rejected, VerifiedProgram, check, verify_hashed_program, verify_program,
};
pub use reason::{Evidence, Reason, ReasonCode};

/// Largest policy file accepted, bytes.
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// Why a policy was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// Larger than [`MAX_POLICY_BYTES`].
    #[error("policy is {len} bytes; at most {MAX_POLICY_BYTES}")]
    TooLarge {
        /// Its size.
        len: usize,
    },
    /// Not valid TOML for the schema (unknown keys included).
    #[error("policy is not valid: {reason}")]
    Syntax {
        /// What the TOML parser reported.
        reason: String,
    },
    /// An identifier is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error("{field} {value:?} is not a valid identifier")]
    BadIdentifier {
        /// The field.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// A number is not finite or outside its physical range.
    #[error("{field} = {value} is outside {min} … {max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value.
        value: f64,
        /// Lowest allowed.
        min: f64,
        /// Highest allowed.
        max: f64,
    },
    /// A range whose minimum is above its maximum.
    #[error("{field} = [{min}, {max}]: minimum above maximum")]
    InvertedRange {
        /// The field.
        field: &'static str,
        /// Its minimum.
        min: f64,
        /// Its maximum.
        max: f64,
    },
    /// An allowlist key that is not a command word (`G1`, `M104`, `T0`).
    #[error("[commands] key {key:?} is not a G, M or T command word")]
    BadCommand {
        /// The key.
        key: String,
    },
    /// Parameter letters that are not `A`–`Z` (or `N`, never allowed).
    #[error("[commands] {key} = {letters:?}: parameters must be distinct letters A–Z except N")]
    BadParameters {
        /// The command.
        key: String,
        /// The letters given.
        letters: String,
    },
    /// A command no policy may allow: inch units, free-text commands, and the dangerous ones of
    /// [`NEVER_ALLOWED`] (firmware, EEPROM, calibration, SD card, macros, pins, overrides).
    #[error("[commands] {key} may never be allowed ({why})")]
    NeverAllowed {
        /// The command.
        key: String,
        /// Why.
        why: &'static str,
    },
    /// The extruder section does not give the geometry its kind needs.
    #[error("[extrusion] {reason}")]
    Extrusion {
        /// What is wrong.
        reason: &'static str,
    },
}

/// Commands no policy may allow, with the reason (research: printer.md §5).
pub const NEVER_ALLOWED: &[(u8, u16, u16, &str)] = &[
    (b'G', 20, 20, "inch units"),
    (b'M', 23, 33, "SD card"),
    (b'M', 42, 43, "pin access"),
    (b'M', 92, 92, "steps per mm"),
    (b'M', 117, 118, "free text; M118 can fake an ok"),
    (b'M', 149, 149, "temperature units"),
    (b'M', 200, 200, "volumetric extrusion changes the E scale"),
    (b'M', 220, 221, "feed/flow overrides"),
    (b'M', 260, 261, "I2C bus"),
    (b'M', 301, 306, "PID and thermal model"),
    (b'M', 302, 302, "cold extrusion"),
    (b'M', 350, 351, "microstepping"),
    (b'M', 500, 504, "EEPROM"),
    (b'M', 575, 575, "serial baud rate"),
    (b'M', 808, 808, "repeat loops"),
    (b'M', 810, 819, "macros"),
    (b'M', 906, 914, "motor drivers"),
    (b'M', 928, 928, "SD logging"),
    (b'M', 997, 997, "firmware update"),
];

/// Which kind of extruder turns E into material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtruderKind {
    /// Fused deposition: E is filament length; `diameter_mm` is the filament diameter.
    Filament,
    /// Semi-solid extrusion: E is plunger travel; `diameter_mm` is the syringe barrel's inner
    /// diameter (the firmware is calibrated so E1 moves the plunger 1 mm).
    Syringe,
}

/// `[extrusion]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extrusion {
    /// Filament or syringe.
    pub kind: ExtruderKind,
    /// Filament or barrel diameter, mm.
    pub diameter_mm: f64,
    /// Require absolute E (`M82`) for every E value.
    pub absolute_e: bool,
    /// Most material per mm of XYZ path, mm of E per mm.
    pub max_e_per_mm: f64,
    /// Most material deposited by one extruder-only move, mm of E.
    pub max_prime_mm: f64,
    /// Deepest retraction, mm of E.
    pub max_retract_mm: f64,
}

/// `[temperature]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Temperature {
    /// Allowed nozzle set points, °C (0 = off is always allowed).
    pub nozzle_c: [f64; 2],
    /// Allowed bed set points, °C (0 = off is always allowed).
    pub bed_c: [f64; 2],
    /// Material may only be deposited after the program waited (`M109`) for at least this, °C;
    /// 0 for an unheated syringe.
    pub extrude_min_nozzle_c: f64,
    /// Longest (estimated) time with the nozzle heater on, s.
    pub max_nozzle_on_s: f64,
    /// The program must end with every heater off.
    pub heaters_off_at_end: bool,
    /// Live monitoring during the print: how far outside its band a heater's reading may be
    /// without counting as a deviation, °C (sensor noise, PID overshoot).
    #[serde(default = "default_tolerance_c")]
    pub tolerance_c: f64,
    /// Live monitoring: how long a deviation beyond the tolerance may last before the job is
    /// aborted, s.
    #[serde(default = "default_grace_s")]
    pub grace_s: f64,
    /// Live monitoring: how long a heater may take to reach its band after a set-point inside it,
    /// s.
    #[serde(default = "default_heatup_timeout_s")]
    pub heatup_timeout_s: f64,
}

/// Default of [`Temperature::tolerance_c`] for policies written before the field existed.
pub const DEFAULT_TOLERANCE_C: f64 = 3.0;
/// Default of [`Temperature::grace_s`].
pub const DEFAULT_GRACE_S: f64 = 10.0;
/// Default of [`Temperature::heatup_timeout_s`].
pub const DEFAULT_HEATUP_TIMEOUT_S: f64 = 600.0;
/// Bounds of [`Temperature::tolerance_c`], °C.
pub const TOLERANCE_C_RANGE: [f64; 2] = [0.0, 25.0];
/// Bounds of [`Temperature::grace_s`], s.
pub const GRACE_S_RANGE: [f64; 2] = [0.0, 300.0];
/// Bounds of [`Temperature::heatup_timeout_s`], s.
pub const HEATUP_TIMEOUT_S_RANGE: [f64; 2] = [10.0, 7200.0];

fn default_tolerance_c() -> f64 {
    DEFAULT_TOLERANCE_C
}

fn default_grace_s() -> f64 {
    DEFAULT_GRACE_S
}

fn default_heatup_timeout_s() -> f64 {
    DEFAULT_HEATUP_TIMEOUT_S
}

/// `[speed]`, mm/s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Speed {
    /// Extruding moves.
    pub print_mm_s: [f64; 2],
    /// Fastest non-extruding move.
    pub max_travel_mm_s: f64,
    /// Fastest extruder-only move (retract, prime).
    pub max_extruder_mm_s: f64,
}

/// `[bed]`: the printable volume in native coordinates, mm, and where `G28` parks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bed {
    /// X range.
    pub x_mm: [f64; 2],
    /// Y range.
    pub y_mm: [f64; 2],
    /// Z range (the minimum is the bed surface).
    pub z_mm: [f64; 2],
    /// Nozzle position after `G28`.
    pub home_mm: [f64; 3],
}

/// `[layers]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layers {
    /// Height of the first layer above the bed, mm.
    pub first_layer_mm: [f64; 2],
    /// Steps between consecutive layers, mm.
    pub height_mm: [f64; 2],
    /// Most layers.
    pub max_layers: u32,
}

/// `[program]`: limits on the whole program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramRules {
    /// Largest program, bytes.
    pub max_bytes: u64,
    /// Longest single dwell, s.
    pub max_dwell_s: f64,
    /// Longest total dwell, s.
    pub max_total_dwell_s: f64,
    /// Longest estimated print time, s.
    pub max_time_s: f64,
    /// Allowed fan PWM values.
    pub fan: [f64; 2],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    id: String,
    version: u32,
    product: String,
    description: String,
    commands: BTreeMap<String, String>,
    extrusion: Extrusion,
    temperature: Temperature,
    speed: Speed,
    bed: Bed,
    layers: Layers,
    program: ProgramRules,
}

/// A validated design-space policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    file: PolicyFile,
    /// Sorted `(command key, allowed parameter mask)`; key = letter × 10000 + code.
    allow: Vec<(u32, u32)>,
    /// The same for G, M and T codes below [`DENSE_CODES`], indexed directly (hot path):
    /// `ALLOWED | mask`, or 0 when not allowed.
    dense: Vec<u32>,
    area_mm2: f64,
}

/// Codes below this are looked up in a flat table.
const DENSE_CODES: usize = 1024;
/// Marks an allowed entry in the flat table (bit 31; letters use bits 0–25).
const ALLOWED: u32 = 1 << 31;

fn dense_index(letter: u8, code: u16) -> Option<usize> {
    let row = match letter {
        b'G' => 0,
        b'M' => 1,
        b'T' => 2,
        _ => return None,
    };
    let code = usize::from(code);
    (code < DENSE_CODES).then_some(row * DENSE_CODES + code)
}

fn command_key(letter: u8, code: u16) -> u32 {
    u32::from(letter) * 10_000 + u32::from(code)
}

fn check_id(field: &'static str, value: &str) -> Result<(), PolicyError> {
    let ok = !value.is_empty()
        && value.len() <= crate::prescription::MAX_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PolicyError::BadIdentifier {
            field,
            value: value.chars().take(80).collect(),
        })
    }
}

fn check_num(field: &'static str, value: f64, min: f64, max: f64) -> Result<(), PolicyError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(PolicyError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

fn check_range(
    field: &'static str,
    [lo, hi]: [f64; 2],
    min: f64,
    max: f64,
) -> Result<(), PolicyError> {
    check_num(field, lo, min, max)?;
    check_num(field, hi, min, max)?;
    if lo > hi {
        return Err(PolicyError::InvertedRange {
            field,
            min: lo,
            max: hi,
        });
    }
    Ok(())
}

fn parse_command_key(key: &str) -> Option<(u8, u16)> {
    let bytes = key.as_bytes();
    let (&letter, digits) = bytes.split_first()?;
    if !matches!(letter, b'G' | b'M' | b'T')
        || digits.is_empty()
        || digits.len() > 4
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits.len() > 1 && digits.first() == Some(&b'0'))
    {
        return None;
    }
    let code = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((letter, code))
}

fn parse_letters(key: &str, letters: &str) -> Result<u32, PolicyError> {
    let bad = || PolicyError::BadParameters {
        key: key.to_owned(),
        letters: letters.chars().take(40).collect(),
    };
    let mut mask = 0u32;
    for b in letters.bytes() {
        if !b.is_ascii_uppercase() || b == b'N' {
            return Err(bad());
        }
        let bit = 1u32 << (b - b'A');
        if mask & bit != 0 {
            return Err(bad());
        }
        mask |= bit;
    }
    Ok(mask)
}

impl Policy {
    /// Parses and validates a policy from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge { len: text.len() });
        }
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            reason: e.message().to_owned(),
        })?;
        Self::validate(file)
    }

    #[expect(
        clippy::many_single_char_names,
        reason = "one letter per policy section"
    )]
    fn validate(file: PolicyFile) -> Result<Self, PolicyError> {
        check_id("id", &file.id)?;
        check_id("product", &file.product)?;
        check_num("version", f64::from(file.version), 1.0, f64::from(u32::MAX))?;
        let mut allow = Vec::with_capacity(file.commands.len());
        let mut dense = vec![0u32; 3 * DENSE_CODES];
        for (key, letters) in &file.commands {
            let (letter, code) = parse_command_key(key)
                .ok_or_else(|| PolicyError::BadCommand { key: key.clone() })?;
            if let Some(&(_, _, _, why)) = NEVER_ALLOWED
                .iter()
                .find(|(l, lo, hi, _)| *l == letter && (*lo..=*hi).contains(&code))
            {
                return Err(PolicyError::NeverAllowed {
                    key: key.clone(),
                    why,
                });
            }
            let mask = parse_letters(key, letters)?;
            allow.push((command_key(letter, code), mask));
            if let Some(slot) = dense_index(letter, code).and_then(|i| dense.get_mut(i)) {
                *slot = ALLOWED | mask;
            }
        }
        allow.sort_unstable();

        let x = &file.extrusion;
        check_num("extrusion.diameter_mm", x.diameter_mm, 0.1, 50.0)?;
        check_num("extrusion.max_e_per_mm", x.max_e_per_mm, 0.0, 100.0)?;
        check_num("extrusion.max_prime_mm", x.max_prime_mm, 0.0, 100.0)?;
        check_num("extrusion.max_retract_mm", x.max_retract_mm, 0.0, 100.0)?;
        if x.kind == ExtruderKind::Filament && x.diameter_mm > 5.0 {
            return Err(PolicyError::Extrusion {
                reason: "a filament diameter above 5 mm is not a filament (use kind = \"syringe\")",
            });
        }
        let area_mm2 = std::f64::consts::PI * x.diameter_mm * x.diameter_mm / 4.0;

        let t = &file.temperature;
        check_range("temperature.nozzle_c", t.nozzle_c, 0.0, 450.0)?;
        check_range("temperature.bed_c", t.bed_c, 0.0, 150.0)?;
        check_num(
            "temperature.extrude_min_nozzle_c",
            t.extrude_min_nozzle_c,
            0.0,
            t.nozzle_c[1],
        )?;
        check_num(
            "temperature.max_nozzle_on_s",
            t.max_nozzle_on_s,
            0.0,
            7.0 * 86_400.0,
        )?;
        for (field, v, [lo, hi]) in [
            ("temperature.tolerance_c", t.tolerance_c, TOLERANCE_C_RANGE),
            ("temperature.grace_s", t.grace_s, GRACE_S_RANGE),
            (
                "temperature.heatup_timeout_s",
                t.heatup_timeout_s,
                HEATUP_TIMEOUT_S_RANGE,
            ),
        ] {
            check_num(field, v, lo, hi)?;
        }

        let s = &file.speed;
        check_range("speed.print_mm_s", s.print_mm_s, 0.0, 1000.0)?;
        check_num("speed.max_travel_mm_s", s.max_travel_mm_s, 0.0, 1000.0)?;
        check_num("speed.max_extruder_mm_s", s.max_extruder_mm_s, 0.0, 1000.0)?;

        let b = &file.bed;
        check_range("bed.x_mm", b.x_mm, -1000.0, 1000.0)?;
        check_range("bed.y_mm", b.y_mm, -1000.0, 1000.0)?;
        check_range("bed.z_mm", b.z_mm, -10.0, 1000.0)?;
        for h in b.home_mm {
            check_num("bed.home_mm", h, -1000.0, 1000.0)?;
        }

        let l = &file.layers;
        check_range("layers.first_layer_mm", l.first_layer_mm, 0.0, 10.0)?;
        check_range("layers.height_mm", l.height_mm, 0.0, 10.0)?;
        check_num("layers.max_layers", f64::from(l.max_layers), 1.0, 100_000.0)?;

        let p = &file.program;
        #[expect(clippy::cast_precision_loss, reason = "a size, compared with a bound")]
        check_num("program.max_bytes", p.max_bytes as f64, 1.0, 1e12)?;
        check_num("program.max_dwell_s", p.max_dwell_s, 0.0, 86_400.0)?;
        check_num(
            "program.max_total_dwell_s",
            p.max_total_dwell_s,
            0.0,
            86_400.0,
        )?;
        check_num("program.max_time_s", p.max_time_s, 0.0, 7.0 * 86_400.0)?;
        check_range("program.fan", p.fan, 0.0, 255.0)?;

        Ok(Self {
            file,
            allow,
            dense,
            area_mm2,
        })
    }

    /// The policy's id (a prescription's `[policy] id`).
    pub fn id(&self) -> &str {
        &self.file.id
    }
    /// The policy's version.
    pub fn version(&self) -> u32 {
        self.file.version
    }
    /// The product it validates.
    pub fn product(&self) -> &str {
        &self.file.product
    }
    /// One-line description.
    pub fn description(&self) -> &str {
        &self.file.description
    }
    /// `[extrusion]`.
    pub fn extrusion(&self) -> &Extrusion {
        &self.file.extrusion
    }
    /// Cross-section pushed per mm of E, mm².
    pub fn area_mm2(&self) -> f64 {
        self.area_mm2
    }
    /// `[temperature]`.
    pub fn temperature(&self) -> &Temperature {
        &self.file.temperature
    }
    /// `[speed]`.
    pub fn speed(&self) -> &Speed {
        &self.file.speed
    }
    /// `[bed]`.
    pub fn bed(&self) -> &Bed {
        &self.file.bed
    }
    /// `[layers]`.
    pub fn layers(&self) -> &Layers {
        &self.file.layers
    }
    /// `[program]`.
    pub fn program(&self) -> &ProgramRules {
        &self.file.program
    }

    /// The parameter letters allowed on a command (bit `n` = letter `A + n`), or `None` if the
    /// command is not on the allowlist.
    pub fn allowed_params(&self, letter: u8, code: u16) -> Option<u32> {
        if let Some(&entry) = dense_index(letter, code).and_then(|i| self.dense.get(i)) {
            return (entry & ALLOWED != 0).then_some(entry & !ALLOWED);
        }
        let key = command_key(letter, code);
        self.allow
            .binary_search_by_key(&key, |&(k, _)| k)
            .ok()
            .and_then(|i| self.allow.get(i))
            .map(|&(_, m)| m)
    }
}

#[cfg(test)]
mod tests;
