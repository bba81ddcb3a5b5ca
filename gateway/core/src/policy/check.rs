//! The program check: parser + virtual print + policy + prescription, streaming, with the proof
//! type [`VerifiedProgram`] as its only way to say yes.
//!
//! [`ProgramChecker`] is fed chunks and keeps constant memory (one partial line, the machine
//! state, a bounded set of layer heights, at most [`MAX_REASONS`] reasons) unless it is asked to
//! keep the canonical commands for streaming (that is what [`verify_program`] does; the program's
//! size is capped by the policy). Every reason found is kept (up to the cap) so an operator sees
//! all of them at once; accepting requires that there are none.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Evidence, Policy, Reason, ReasonCode};
use crate::gcode::{
    Analysis, Command, GcodeError, Machine, MassModel, Parser, ProgramCommands, Step,
    analyse::{Heater, Move},
};
use crate::prescription::Prescription;

/// Height above the highest deposit the nozzle must be at before homing X or Y, mm.
pub const HOMING_CLEARANCE_MM: f64 = 1.0;

/// Most reasons kept in a report; further ones are only counted.
pub const MAX_REASONS: usize = 100;

/// The outcome of checking a program: what the virtual print found and every reason to refuse.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgramReport {
    /// SHA-256 of the program bytes, hex.
    pub sha256: String,
    /// The virtual print.
    pub analysis: Analysis,
    /// Reasons to refuse (the first [`MAX_REASONS`]).
    pub reasons: Vec<Reason>,
    /// Reasons found beyond [`MAX_REASONS`].
    pub reasons_omitted: u64,
}

impl ProgramReport {
    /// True if nothing was found.
    pub fn accepted(&self) -> bool {
        self.reasons.is_empty() && self.reasons_omitted == 0
    }
}

/// A refused program, with the report saying why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct Rejected {
    /// The full report.
    pub report: Box<ProgramReport>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.report.reasons.len() as u64 + self.report.reasons_omitted;
        write!(f, "program rejected for {n} reason(s)")?;
        if let Some(first) = self.report.reasons.first() {
            write!(f, "; first: {first}")?;
        }
        Ok(())
    }
}

/// Proof that a program was parsed, run virtually and found inside the policy's design space and
/// the prescription's dose window. Only [`verify_program`] makes one.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedProgram {
    sha256: [u8; 32],
    policy_id: String,
    policy_version: u32,
    analysis: Analysis,
    commands: ProgramCommands,
}

impl VerifiedProgram {
    /// The commands to send, in canonical form, with their source lines and expected positions.
    pub fn commands(&self) -> &ProgramCommands {
        &self.commands
    }
    /// The virtual print.
    pub fn analysis(&self) -> &Analysis {
        &self.analysis
    }
    /// SHA-256 of the program bytes that were checked.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }
    /// The policy it was checked against.
    pub fn policy(&self) -> (&str, u32) {
        (&self.policy_id, self.policy_version)
    }
}

/// Program bytes and the SHA-256 of exactly these bytes, computed once when they were taken.
///
/// The fields are private and the bytes cannot be changed afterwards, so whoever holds one knows
/// that [`HashedProgram::sha256`] is the hash of [`HashedProgram::bytes`]. A job's stage 1 makes
/// one and compares the hash with the signed prescription; stage 2 checks the same bytes through
/// [`verify_hashed_program`] without hashing them again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedProgram {
    bytes: Vec<u8>,
    sha256: [u8; 32],
}

impl HashedProgram {
    /// Takes the bytes and hashes them.
    pub fn new(bytes: Vec<u8>) -> Self {
        let sha256 = Sha256::digest(&bytes).into();
        Self { bytes, sha256 }
    }

    /// The program bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// SHA-256 of [`Self::bytes`].
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }
}

/// Checks a whole program held in memory; see [`ProgramChecker`] for chunks.
pub fn check(policy: &Policy, rx: &Prescription, gcode: &[u8]) -> ProgramReport {
    let mut c = ProgramChecker::new(policy, rx);
    c.feed(gcode);
    c.finish().0
}

/// Checks a program and returns the proof only if nothing was found. The program is hashed as it
/// is checked, in the same pass.
pub fn verify_program(
    policy: &Policy,
    rx: &Prescription,
    gcode: &[u8],
) -> Result<VerifiedProgram, Rejected> {
    verify_with(ProgramChecker::new(policy, rx), policy, gcode)
}

/// [`verify_program`] for bytes whose hash is already known: the proof carries that hash, and
/// the bytes are not hashed a second time.
pub fn verify_hashed_program(
    policy: &Policy,
    rx: &Prescription,
    program: &HashedProgram,
) -> Result<VerifiedProgram, Rejected> {
    let checker = ProgramChecker::with_digest(policy, rx, Digesting::Known(program.sha256));
    verify_with(checker, policy, program.bytes())
}

fn verify_with(
    checker: ProgramChecker<'_>,
    policy: &Policy,
    gcode: &[u8],
) -> Result<VerifiedProgram, Rejected> {
    let mut c = checker.keep_commands();
    c.feed(gcode);
    let (report, commands, sha256) = c.finish_with_digest();
    if !report.accepted() {
        return Err(Rejected {
            report: Box::new(report),
        });
    }
    Ok(VerifiedProgram {
        sha256,
        policy_id: policy.id().to_owned(),
        policy_version: policy.version(),
        analysis: report.analysis,
        commands: commands.unwrap_or_default(),
    })
}

/// Where the program's SHA-256 comes from.
#[derive(Debug, Clone)]
enum Digesting {
    /// Hashed as it is fed.
    Hashing(Sha256),
    /// Known from a [`HashedProgram`] (the bytes fed are its bytes).
    Known([u8; 32]),
    /// Hashed by the caller ([`CallerHashedChecker`]), given at the end.
    ByCaller,
}

/// A [`ProgramChecker`] that leaves hashing to its caller, who hashes the same chunks as it
/// reads them (`dosegate check-gcode` does so on its reader thread, beside the check) and
/// passes the digest to [`CallerHashedChecker::finish`] for the report. It makes a report, never
/// a [`VerifiedProgram`]: the proof is made only by [`verify_program`], which hashes, and by
/// [`verify_hashed_program`], which takes a [`HashedProgram`].
#[derive(Debug)]
pub struct CallerHashedChecker<'p>(ProgramChecker<'p>);

impl<'p> CallerHashedChecker<'p> {
    /// A check of one program against `policy` and `rx`.
    pub fn new(policy: &'p Policy, rx: &Prescription) -> Self {
        Self(ProgramChecker::with_digest(policy, rx, Digesting::ByCaller))
    }

    /// Feeds the next chunk of the program.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.0.feed(chunk);
    }

    /// Ends the program; `sha256` is the caller's digest of every chunk fed, in order.
    pub fn finish(self, sha256: [u8; 32]) -> ProgramReport {
        self.0.finish_with_digest_from(Some(sha256)).0
    }
}

/// Modal facts the policy needs beyond the machine state.
#[derive(Debug, Default, Clone, Copy)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts, not a state machine"
)]
struct Seen {
    g21: bool,
    g90: bool,
    m82: bool,
    /// The program waited (`M109`) for a nozzle temperature ≥ the extrusion minimum, and has
    /// not set a lower target since.
    nozzle_ready: bool,
}

/// A streaming program check.
#[derive(Debug)]
pub struct ProgramChecker<'p> {
    policy: &'p Policy,
    window_mg: (f64, f64),
    units: u32,
    parser: Parser,
    machine: Machine,
    digest: Digesting,
    seen: Seen,
    reasons: Vec<Reason>,
    omitted: u64,
    too_large: bool,
    commands: Option<ProgramCommands>,
}

impl<'p> ProgramChecker<'p> {
    /// A check of one program against `policy` and `rx`.
    pub fn new(policy: &'p Policy, rx: &Prescription) -> Self {
        Self::with_digest(policy, rx, Digesting::Hashing(Sha256::new()))
    }

    fn with_digest(policy: &'p Policy, rx: &Prescription, digest: Digesting) -> Self {
        let f = &rx.formulation;
        let mass = MassModel {
            area_mm2: policy.area_mm2(),
            density_mg_mm3: f.density_g_cm3,
            api_fraction: f.api_fraction,
            units: rx.units,
        };
        let mut c = Self {
            policy,
            window_mg: rx.dose_window_mg(),
            units: rx.units,
            parser: Parser::new(),
            machine: Machine::new(mass, policy.bed().home_mm),
            digest,
            seen: Seen::default(),
            reasons: Vec::new(),
            omitted: 0,
            too_large: false,
            commands: None,
        };
        if rx.policy.id != policy.id()
            || rx.policy.version != policy.version()
            || rx.product != policy.product()
        {
            c.push(
                Reason::new(ReasonCode::RxPolicyMismatch)
                    .value(Evidence::Text(format!(
                        "{} v{} for product {}",
                        rx.policy.id, rx.policy.version, rx.product
                    )))
                    .limit(Evidence::Text(format!(
                        "{} v{} for product {}",
                        policy.id(),
                        policy.version(),
                        policy.product()
                    ))),
            );
        }
        c
    }

    /// Also keep the canonical commands (for [`verify_program`]).
    #[must_use]
    pub fn keep_commands(mut self) -> Self {
        self.commands = Some(ProgramCommands::default());
        self
    }

    fn push(&mut self, r: Reason) {
        if self.reasons.len() < super::MAX_REASONS {
            self.reasons.push(r);
        } else {
            self.omitted += 1;
        }
    }

    /// Feeds the next chunk of the program.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.too_large {
            return;
        }
        let max = self.policy.program().max_bytes;
        let before = self.parser.bytes();
        if before + chunk.len() as u64 > max {
            self.too_large = true;
            self.push(
                Reason::new(ReasonCode::GcodeTooLarge)
                    .value(Evidence::Num((before + chunk.len() as u64) as f64))
                    .limit(Evidence::Num(max as f64)),
            );
            return;
        }
        if let Digesting::Hashing(h) = &mut self.digest {
            h.update(chunk);
        }
        let mut parser = std::mem::take(&mut self.parser);
        parser.feed(chunk, |line, r| self.on_line(line, r));
        self.parser = parser;
    }

    /// Ends the program and returns the report (and the commands, if kept).
    pub fn finish(self) -> (ProgramReport, Option<ProgramCommands>) {
        let (report, commands, _) = self.finish_with_digest();
        (report, commands)
    }

    fn finish_with_digest(self) -> (ProgramReport, Option<ProgramCommands>, [u8; 32]) {
        self.finish_with_digest_from(None)
    }

    fn finish_with_digest_from(
        mut self,
        caller: Option<[u8; 32]>,
    ) -> (ProgramReport, Option<ProgramCommands>, [u8; 32]) {
        let mut parser = std::mem::take(&mut self.parser);
        if !self.too_large {
            parser.finish(|line, r| self.on_line(line, r));
        }
        self.final_checks();
        let bytes = parser.bytes();
        let lines = parser.lines();
        let mut analysis = self.machine.finish();
        analysis.bytes = bytes;
        analysis.lines = lines;
        self.dose_and_layer_checks(&analysis);
        let sha256: [u8; 32] = match self.digest {
            Digesting::Hashing(h) => h.finalize().into(),
            Digesting::Known(d) => d,
            // Only `CallerHashedChecker` makes this one, and its `finish` passes the digest.
            Digesting::ByCaller => caller.unwrap_or_default(),
        };
        let report = ProgramReport {
            sha256: hex::encode(sha256),
            analysis,
            reasons: self.reasons,
            reasons_omitted: self.omitted,
        };
        (report, self.commands, sha256)
    }

    fn on_line(&mut self, line: u32, parsed: Result<&Command, GcodeError>) {
        match parsed {
            Err(e) => {
                let code = e.code();
                self.push(
                    Reason::new(code)
                        .at(e.line())
                        .value(Evidence::Text(e.to_string())),
                );
            }
            Ok(cmd) => self.on_command(line, cmd),
        }
    }

    fn on_command(&mut self, line: u32, cmd: &Command) {
        let Some(mask) = self
            .policy
            .allowed_params(cmd.letter(), cmd.code())
            .filter(|_| !cmd.has_text_argument())
        else {
            self.push(
                Reason::new(ReasonCode::GcodeForbiddenCommand)
                    .at(line)
                    .value(Evidence::Text(cmd.name())),
            );
            return;
        };
        for p in cmd.params() {
            if mask & (1u32 << (p.letter() - b'A')) == 0 {
                self.push(
                    Reason::new(ReasonCode::GcodeForbiddenParameter)
                        .at(line)
                        .value(Evidence::Text(format!(
                            "{} {}",
                            cmd.name(),
                            char::from(p.letter())
                        ))),
                );
            }
        }
        if cmd.is(b'G', 92) {
            let only_e0 = cmd.params().len() == 1 && cmd.value(b'E') == Some(0.0);
            if !only_e0 {
                self.push(
                    Reason::new(ReasonCode::GcodeG92NotE0)
                        .at(line)
                        .value(Evidence::Text(cmd.canonical()))
                        .limit(Evidence::Text("G92 E0".into())),
                );
            }
        }
        match (cmd.letter(), cmd.code()) {
            (b'G', 21) => self.seen.g21 = true,
            (b'G', 90) => self.seen.g90 = true,
            (b'M', 82) => self.seen.m82 = true,
            _ => {}
        }
        if cmd.is(b'G', 28) {
            self.check_homing(line, cmd);
        }
        let step = self.machine.apply(cmd);
        self.check_step(line, cmd, &step);
        if let Some(list) = &mut self.commands {
            list.push(line, cmd, self.machine.position());
        }
    }

    fn check_step(&mut self, line: u32, cmd: &Command, step: &Step) {
        match *step {
            Step::Move(m) => self.check_move(line, cmd, &m),
            Step::Dwell { seconds } => {
                let max = self.policy.program().max_dwell_s;
                if seconds > max {
                    self.push(
                        Reason::new(ReasonCode::DsDwellTooLong)
                            .at(line)
                            .value(Evidence::Num(seconds))
                            .limit(Evidence::Num(max)),
                    );
                }
            }
            Step::Temperature {
                heater,
                target_c,
                wait,
            } => self.check_temperature(line, heater, target_c, wait),
            Step::Fan { value } => {
                let [lo, hi] = self.policy.program().fan;
                if !(lo..=hi).contains(&value) {
                    self.push(
                        Reason::new(ReasonCode::DsFanOutOfRange)
                            .at(line)
                            .value(Evidence::Num(value))
                            .limit(Evidence::Range(lo, hi)),
                    );
                }
            }
            Step::SetPosition | Step::Other => {}
        }
    }

    fn check_temperature(&mut self, line: u32, heater: Heater, target: f64, wait: bool) {
        let t = self.policy.temperature();
        let ([lo, hi], high, low) = match heater {
            Heater::Nozzle => (
                t.nozzle_c,
                ReasonCode::DsNozzleTempHigh,
                ReasonCode::DsNozzleTempLow,
            ),
            Heater::Bed => (t.bed_c, ReasonCode::DsBedTempHigh, ReasonCode::DsBedTempLow),
        };
        // 0 switches the heater off and is always allowed.
        let code = if target > hi {
            Some(high)
        } else if target != 0.0 && target < lo {
            Some(low)
        } else {
            None
        };
        if let Some(code) = code {
            self.push(
                Reason::new(code)
                    .at(line)
                    .value(Evidence::Num(target))
                    .limit(Evidence::Range(lo, hi)),
            );
        }
        if heater == Heater::Nozzle {
            let min = t.extrude_min_nozzle_c;
            if target < min {
                self.seen.nozzle_ready = false;
            } else if wait {
                self.seen.nozzle_ready = true;
            }
        }
    }

    #[expect(
        clippy::too_many_lines,
        clippy::many_single_char_names,
        reason = "one block per design-space rule on a move; one letter per policy section"
    )]
    fn check_move(&mut self, line: u32, cmd: &Command, m: &Move) {
        let p = self.policy;
        if m.moves_axes && !(self.seen.g21 && self.seen.g90) {
            let missing = if self.seen.g21 { "G90" } else { "G21" };
            self.push(
                Reason::new(ReasonCode::GcodeModeNotSet)
                    .at(line)
                    .value(Evidence::Text(format!(
                        "{missing} not set before the first move"
                    ))),
            );
            // Report once: pretend it was set.
            self.seen.g21 = true;
            self.seen.g90 = true;
        }
        if m.has_e && p.extrusion().absolute_e {
            if m.e_relative {
                self.push(
                    Reason::new(ReasonCode::DsRelativeExtrusion)
                        .at(line)
                        .value(Evidence::Text(cmd.canonical())),
                );
            } else if !self.seen.m82 {
                self.push(
                    Reason::new(ReasonCode::GcodeModeNotSet)
                        .at(line)
                        .value(Evidence::Text("M82 not set before the first E".into())),
                );
                self.seen.m82 = true;
            }
        }
        if m.moves_axes && !self.machine.homed() {
            self.push(Reason::new(ReasonCode::DsMoveBeforeHome).at(line));
        }
        if m.moves_axes {
            let b = p.bed();
            let [x, y, z] = m.to;
            // Fast path: inside the bed volume (plain comparisons; no reason to build).
            let inside = (b.x_mm[0]..=b.x_mm[1]).contains(&x)
                && (b.y_mm[0]..=b.y_mm[1]).contains(&y)
                && (b.z_mm[0]..=b.z_mm[1]).contains(&z);
            if !inside {
                self.outside_bed(line, m.to);
            }
        }
        let s = p.speed();
        if m.length_mm > 0.0 && m.e_delta > 0.0 {
            let [lo, hi] = s.print_mm_s;
            let code = if m.feed_mm_s > hi {
                Some(ReasonCode::DsPrintSpeedHigh)
            } else if m.feed_mm_s < lo {
                Some(ReasonCode::DsPrintSpeedLow)
            } else {
                None
            };
            if let Some(code) = code {
                self.push(
                    Reason::new(code)
                        .at(line)
                        .value(Evidence::Num(m.feed_mm_s))
                        .limit(Evidence::Range(lo, hi)),
                );
            }
        } else if m.length_mm > 0.0 && m.feed_mm_s > s.max_travel_mm_s {
            self.push(
                Reason::new(ReasonCode::DsTravelSpeedHigh)
                    .at(line)
                    .value(Evidence::Num(m.feed_mm_s))
                    .limit(Evidence::Num(s.max_travel_mm_s)),
            );
        } else if m.length_mm == 0.0 && m.e_delta != 0.0 && m.feed_mm_s > s.max_extruder_mm_s {
            self.push(
                Reason::new(ReasonCode::DsExtruderSpeedHigh)
                    .at(line)
                    .value(Evidence::Num(m.feed_mm_s))
                    .limit(Evidence::Num(s.max_extruder_mm_s)),
            );
        }
        let x = p.extrusion();
        if m.deposited_mm > 0.0 {
            if m.length_mm > 0.0 {
                let ratio = m.deposited_mm / m.length_mm;
                if ratio > x.max_e_per_mm {
                    self.push(
                        Reason::new(ReasonCode::DsOverExtrusion)
                            .at(line)
                            .value(Evidence::Num(ratio))
                            .limit(Evidence::Num(x.max_e_per_mm)),
                    );
                }
            } else if m.deposited_mm > x.max_prime_mm {
                self.push(
                    Reason::new(ReasonCode::DsPrimeTooLong)
                        .at(line)
                        .value(Evidence::Num(m.deposited_mm))
                        .limit(Evidence::Num(x.max_prime_mm)),
                );
            }
            let min = p.temperature().extrude_min_nozzle_c;
            if min > 0.0 && !self.seen.nozzle_ready {
                self.push(
                    Reason::new(ReasonCode::DsColdExtrusion)
                        .at(line)
                        .value(Evidence::Num(self.machine.nozzle_target_c()))
                        .limit(Evidence::Num(min)),
                );
            }
        }
        let depth = self.machine.retracted_depth();
        if m.e_delta < 0.0 && depth > x.max_retract_mm {
            self.push(
                Reason::new(ReasonCode::DsRetractTooDeep)
                    .at(line)
                    .value(Evidence::Num(depth))
                    .limit(Evidence::Num(x.max_retract_mm)),
            );
        }
    }

    /// After material has been deposited, homing Z (a bare `G28` or `G28 Z`) drives the nozzle
    /// down through the part, and homing X/Y drags it across the part unless it was first lifted
    /// clear of the highest deposit.
    fn check_homing(&mut self, line: u32, cmd: &Command) {
        let Some(top) = self.machine.analysis().bbox_extrude.map(|b| b.max[2]) else {
            return;
        };
        let homes_z =
            cmd.param(b'Z').is_some() || (cmd.param(b'X').is_none() && cmd.param(b'Y').is_none());
        let z = self.machine.native()[2];
        let clear = top + HOMING_CLEARANCE_MM;
        if homes_z {
            self.push(
                Reason::new(ReasonCode::DsHomeMidPrint)
                    .at(line)
                    .value(Evidence::Text(cmd.canonical()))
                    .limit(Evidence::Text(
                        "no Z homing once material is deposited".into(),
                    )),
            );
        } else if z < clear {
            self.push(
                Reason::new(ReasonCode::DsHomeMidPrint)
                    .at(line)
                    .value(Evidence::Num(z))
                    .limit(Evidence::Num(clear)),
            );
        }
    }

    fn outside_bed(&mut self, line: u32, to: [f64; 3]) {
        let b = self.policy.bed();
        for ((axis, [lo, hi]), v) in ["X", "Y", "Z"]
            .into_iter()
            .zip([b.x_mm, b.y_mm, b.z_mm])
            .zip(to)
        {
            if axis == "Z" && v < lo {
                self.push(
                    Reason::new(ReasonCode::DsZBelowBed)
                        .at(line)
                        .value(Evidence::Num(v))
                        .limit(Evidence::Num(lo)),
                );
            } else if !(lo..=hi).contains(&v) {
                self.push(
                    Reason::new(ReasonCode::DsOutsideBed)
                        .at(line)
                        .value(Evidence::Text(format!("{axis} {v}")))
                        .limit(Evidence::Range(lo, hi)),
                );
            }
        }
    }

    fn final_checks(&mut self) {
        let p = self.policy;
        let a = self.machine.analysis().clone();
        let rules = p.program();
        let t = p.temperature();
        let limits = [
            (
                ReasonCode::DsDwellTotalTooLong,
                a.dwell_s,
                rules.max_total_dwell_s,
            ),
            (
                ReasonCode::DsTimeAtTempTooLong,
                a.nozzle_on_s,
                t.max_nozzle_on_s,
            ),
            (
                ReasonCode::DsPrintTimeTooLong,
                a.est_time_s,
                rules.max_time_s,
            ),
        ];
        for (code, value, max) in limits {
            if value > max {
                self.push(
                    Reason::new(code)
                        .value(Evidence::Num(value))
                        .limit(Evidence::Num(max)),
                );
            }
        }
        if t.heaters_off_at_end {
            for (name, c) in [
                ("nozzle", self.machine.nozzle_target_c()),
                ("bed", self.machine.bed_target_c()),
            ] {
                if c != 0.0 {
                    self.push(
                        Reason::new(ReasonCode::DsHeaterOnAtEnd)
                            .value(Evidence::Text(format!("{name} {c} °C")))
                            .limit(Evidence::Num(0.0)),
                    );
                }
            }
        }
    }

    fn dose_and_layer_checks(&mut self, a: &Analysis) {
        let l = self.policy.layers();
        if let Some(z) = a.first_layer_z_mm {
            let [lo, hi] = l.first_layer_mm;
            if !(lo..=hi).contains(&z) {
                self.push(
                    Reason::new(ReasonCode::DsFirstLayerHeight)
                        .value(Evidence::Num(z))
                        .limit(Evidence::Range(lo, hi)),
                );
            }
        }
        let [lo, hi] = l.height_mm;
        for h in [a.min_layer_height_mm, a.max_layer_height_mm]
            .into_iter()
            .flatten()
        {
            if !(lo - 1e-9..=hi + 1e-9).contains(&h) {
                self.push(
                    Reason::new(ReasonCode::DsLayerHeight)
                        .value(Evidence::Num(h))
                        .limit(Evidence::Range(lo, hi)),
                );
            }
        }
        if a.layers > l.max_layers {
            self.push(
                Reason::new(ReasonCode::DsTooManyLayers)
                    .value(Evidence::Num(f64::from(a.layers)))
                    .limit(Evidence::Num(f64::from(l.max_layers))),
            );
        }
        let (lo, hi) = self.window_mg;
        if !(lo..=hi).contains(&a.dose_mg) {
            self.push(
                Reason::new(ReasonCode::DsDoseOutOfTolerance)
                    .value(Evidence::Num(a.dose_mg))
                    .limit(Evidence::Range(lo, hi)),
            );
        }
        // Each unit on its own: the total can be right while one unit is short and material
        // sits elsewhere.
        if a.units_found == self.units {
            for (i, &d) in a.unit_doses_mg.iter().enumerate() {
                if !(lo..=hi).contains(&d) {
                    self.push(
                        Reason::new(ReasonCode::DsUnitDoseOutOfTolerance)
                            .value(Evidence::Text(format!("unit {}: {d:.4} mg", i + 1)))
                            .limit(Evidence::Range(lo, hi)),
                    );
                }
            }
        } else {
            self.push(
                Reason::new(ReasonCode::DsUnitCount)
                    .value(Evidence::Num(f64::from(a.units_found)))
                    .limit(Evidence::Num(f64::from(self.units))),
            );
        }
    }
}
