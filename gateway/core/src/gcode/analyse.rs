//! The virtual print: what a Marlin printer would do with a sequence of parsed commands.
//!
//! [`Machine`] follows Marlin 2.1's modal state exactly where it matters for a dose: absolute or
//! relative XYZ (`G90`/`G91`), the extruder mode (`M82`/`M83`, which `G90`/`G91` reset so that E
//! follows them again, as in Marlin), `G92` offsets (logical = native + shift), `G28` homing,
//! units (`G20` scales by 25.4), the modal feed rate (shared by `G0` and `G1`, mm/min, `F` ≤ 0
//! ignored, 1500 mm/min at boot), temperatures set with `M104`/`M109`/`M140`/`M190` (`S` wins over
//! `R`), fan and dwell (`G4`: `S` seconds win over `P` milliseconds).
//!
//! Extrusion is tracked as **deposited filament**: a negative E move retracts (the nozzle now
//! holds a retracted depth), a positive E move first refills that depth and only the excess is
//! deposited. So retract/unretract pairs cancel, a final retract does not subtract from what was
//! printed, and a "prime" larger than the retraction counts in full — `G92 E` resets and relative
//! tricks change nothing because only deltas are summed. This equals PrusaSlicer's
//! `filament used [mm]`. Mass = deposited × cross-section × density; dose = mass × API fraction ÷
//! units. Deposits are also grouped into printed islands (XY extents closer than [`UNIT_GAP_MM`]
//! merge), so each unit's own dose is known, not only the average.
//!
//! Time is a simple estimate: each move's length (XYZ, or E for extruder-only moves) divided by
//! its feed rate, plus dwell. Acceleration, jerk and the printer's feed-rate caps are ignored and
//! heat-up waits are not counted, so it is a lower bound of the real time. This module decides
//! nothing; [`crate::policy`] compares each [`Step`] and the final [`Analysis`] with the design
//! space. Numbers are `f64` (Marlin uses `float`; the difference is far below any tolerance).

use std::collections::BTreeSet;

use serde::Serialize;

use super::{Command, Position};

/// Marlin's feed rate at boot, mm/s (1500 mm/min).
const BOOT_FEED_MM_S: f64 = 25.0;
/// Deposits closer than this in XY belong to the same printed unit, mm.
pub const UNIT_GAP_MM: f64 = 2.0;
/// Most separate islands tracked (memory bound); more are counted as one extra.
pub const MAX_ISLANDS: usize = 1024;
/// Most distinct layer heights remembered (memory bound); more are counted as overflow.
pub const MAX_TRACKED_LAYERS: usize = 100_000;

/// How extruder travel becomes a dose.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MassModel {
    /// Cross-section pushed per mm of E: filament area, or plunger area for a syringe, mm².
    pub area_mm2: f64,
    /// Ink density, mg/mm³ (= g/cm³).
    pub density_mg_mm3: f64,
    /// Mass fraction of API in the ink.
    pub api_fraction: f64,
    /// Units the program prints.
    pub units: u32,
}

/// An axis-aligned box in native (bed) coordinates, mm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BoundingBox {
    /// Lowest X, Y, Z.
    pub min: [f64; 3],
    /// Highest X, Y, Z.
    pub max: [f64; 3],
}

impl BoundingBox {
    fn include(b: &mut Option<Self>, p: [f64; 3]) {
        match b {
            None => {
                *b = Some(Self { min: p, max: p });
            }
            Some(bb) => {
                for ((lo, hi), v) in bb.min.iter_mut().zip(bb.max.iter_mut()).zip(p) {
                    *lo = lo.min(v);
                    *hi = hi.max(v);
                }
            }
        }
    }
}

/// What the virtual print found. JSON field names are part of the CLI's stable output.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Analysis {
    /// Bytes of G-code read.
    pub bytes: u64,
    /// Source lines read.
    pub lines: u32,
    /// Commands executed (parsed lines that are not blank or comments).
    pub commands: u64,
    /// Deposited filament (or plunger travel), mm: retractions that are refilled cancel out.
    pub filament_mm: f64,
    /// Sum of all E changes, mm (what leaves the spool).
    pub net_filament_mm: f64,
    /// Total retracted, mm, and number of retracting moves.
    pub retracted_mm: f64,
    /// Number of moves with negative E.
    pub retractions: u64,
    /// Deposited volume, mm³.
    pub volume_mm3: f64,
    /// Deposited mass, all units, mg.
    pub mass_mg: f64,
    /// API in all units, mg.
    pub api_mg: f64,
    /// Units the dose is divided by.
    pub units: u32,
    /// Estimated API dose per unit, mg.
    pub dose_mg: f64,
    /// Highest nozzle target, °C.
    pub max_nozzle_c: f64,
    /// Highest bed target, °C.
    pub max_bed_c: f64,
    /// Estimated time with the nozzle heater on, s.
    pub nozzle_on_s: f64,
    /// Estimated time with the bed heater on, s.
    pub bed_on_s: f64,
    /// Fastest move, mm/s.
    pub max_feed_mm_s: f64,
    /// Fastest extruding move, mm/s.
    pub max_print_feed_mm_s: f64,
    /// Slowest extruding move, mm/s (0 if none).
    pub min_print_feed_mm_s: f64,
    /// Fastest non-extruding move, mm/s.
    pub max_travel_feed_mm_s: f64,
    /// Total dwell, s.
    pub dwell_s: f64,
    /// Longest single dwell, s.
    pub max_dwell_s: f64,
    /// Highest fan PWM value set (0–255).
    pub max_fan: f64,
    /// Where material was deposited (native coordinates).
    pub bbox_extrude: Option<BoundingBox>,
    /// Where the nozzle went (native coordinates).
    pub bbox_moves: Option<BoundingBox>,
    /// Distinct Z heights (0.001 mm) at which material was deposited.
    pub layers: u32,
    /// Lowest of them, mm.
    pub first_layer_z_mm: Option<f64>,
    /// Smallest step between consecutive layer heights, mm.
    pub min_layer_height_mm: Option<f64>,
    /// Largest step between consecutive layer heights, mm.
    pub max_layer_height_mm: Option<f64>,
    /// Length of all moves (XYZ), mm.
    pub path_mm: f64,
    /// Estimated time (moves + dwell; no acceleration, no heat-up), s.
    pub est_time_s: f64,
    /// Separate printed islands (units) found from where material went: deposits closer than
    /// [`UNIT_GAP_MM`] in XY belong to the same unit.
    pub units_found: u32,
    /// Estimated API dose of each island, mg, ordered by position (lowest X, then Y).
    pub unit_doses_mg: Vec<f64>,
}

/// Which heater a temperature command sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Heater {
    /// The hot end (or heated syringe).
    Nozzle,
    /// The bed.
    Bed,
}

/// One XYZ/E move as the virtual printer ran it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Move {
    /// Native start, mm.
    pub from: [f64; 3],
    /// Native end, mm.
    pub to: [f64; 3],
    /// XYZ length, mm.
    pub length_mm: f64,
    /// E change, mm (negative = retraction).
    pub e_delta: f64,
    /// Filament deposited by this move, mm.
    pub deposited_mm: f64,
    /// Feed rate, mm/s.
    pub feed_mm_s: f64,
    /// True if E was given in relative mode.
    pub e_relative: bool,
    /// True if any of X/Y/Z was given (a move, not only a feed-rate change).
    pub moves_axes: bool,
    /// True if E was given.
    pub has_e: bool,
}

/// What one command did, for the policy to judge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// `G0`/`G1`.
    Move(Move),
    /// `G4`.
    Dwell {
        /// Seconds.
        seconds: f64,
    },
    /// `M104`/`M109`/`M140`/`M190` with a value.
    Temperature {
        /// Which heater.
        heater: Heater,
        /// New target, °C.
        target_c: f64,
        /// `M109`/`M190`: waits for it.
        wait: bool,
    },
    /// `M106`/`M107`.
    Fan {
        /// PWM value set (0–255).
        value: f64,
    },
    /// `G92`.
    SetPosition,
    /// Anything else (no change to what is tracked here).
    Other,
}

/// The virtual printer.
#[derive(Debug, Clone)]
pub struct Machine {
    mass: MassModel,
    home: [f64; 3],
    native: [f64; 3],
    shift: [f64; 3],
    e: f64,
    homed: [bool; 3],
    relative_xyz: bool,
    /// `Some(true)` after M83, `Some(false)` after M82, `None` = follow G90/G91.
    e_relative: Option<bool>,
    inch: bool,
    feed_mm_s: f64,
    nozzle_c: f64,
    bed_c: f64,
    retracted_depth: f64,
    layer_z_um: BTreeSet<i64>,
    last_layer_um: Option<i64>,
    layers_overflow: u32,
    islands: Vec<Island>,
    /// The last island overlaps no other: a deposit inside its box then belongs to it alone.
    last_island_clean: bool,
    a: Analysis,
}

/// One printed island: its XY extent and the filament deposited in it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Island {
    min: [f64; 2],
    max: [f64; 2],
    filament_mm: f64,
}

impl Island {
    fn near(&self, p: [f64; 2]) -> bool {
        p[0] >= self.min[0] - UNIT_GAP_MM
            && p[0] <= self.max[0] + UNIT_GAP_MM
            && p[1] >= self.min[1] - UNIT_GAP_MM
            && p[1] <= self.max[1] + UNIT_GAP_MM
    }
    fn overlaps(&self, o: &Self) -> bool {
        self.min[0] - UNIT_GAP_MM <= o.max[0]
            && o.min[0] <= self.max[0] + UNIT_GAP_MM
            && self.min[1] - UNIT_GAP_MM <= o.max[1]
            && o.min[1] <= self.max[1] + UNIT_GAP_MM
    }
    fn contains(&self, p: [f64; 2]) -> bool {
        p[0] >= self.min[0] && p[0] <= self.max[0] && p[1] >= self.min[1] && p[1] <= self.max[1]
    }
    fn include(&mut self, p: [f64; 2]) {
        self.min = [self.min[0].min(p[0]), self.min[1].min(p[1])];
        self.max = [self.max[0].max(p[0]), self.max[1].max(p[1])];
    }
}

fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    let [dx, dy, dz] = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
    (dx * dx + dy * dy + dz * dz).sqrt()
}

impl Machine {
    /// A freshly booted printer: position unknown (reported as 0), not homed, absolute XYZ and E,
    /// millimetres, heaters off. `home` is where `G28` puts the nozzle, native mm.
    pub fn new(mass: MassModel, home: [f64; 3]) -> Self {
        Self {
            mass,
            home,
            native: [0.0; 3],
            shift: [0.0; 3],
            e: 0.0,
            homed: [false; 3],
            relative_xyz: false,
            e_relative: None,
            inch: false,
            feed_mm_s: BOOT_FEED_MM_S,
            nozzle_c: 0.0,
            bed_c: 0.0,
            retracted_depth: 0.0,
            layer_z_um: BTreeSet::new(),
            last_layer_um: None,
            layers_overflow: 0,
            islands: Vec::new(),
            last_island_clean: false,
            a: Analysis {
                units: mass.units,
                ..Analysis::default()
            },
        }
    }

    /// The logical position, as `M114` would report it.
    pub fn position(&self) -> Position {
        Position {
            x: self.native[0] + self.shift[0],
            y: self.native[1] + self.shift[1],
            z: self.native[2] + self.shift[2],
            e: self.e,
        }
    }

    /// Native (bed) coordinates of the nozzle.
    pub fn native(&self) -> [f64; 3] {
        self.native
    }

    /// Whether X, Y and Z have all been homed.
    pub fn homed(&self) -> bool {
        self.homed.iter().all(|&h| h)
    }

    /// Current nozzle target, °C.
    pub fn nozzle_target_c(&self) -> f64 {
        self.nozzle_c
    }

    /// Current bed target, °C.
    pub fn bed_target_c(&self) -> f64 {
        self.bed_c
    }

    /// Whether E is currently relative.
    pub fn e_is_relative(&self) -> bool {
        self.e_relative.unwrap_or(self.relative_xyz)
    }

    /// Whether inch units are in force.
    pub fn inch_units(&self) -> bool {
        self.inch
    }

    /// How much filament is currently retracted, mm.
    pub fn retracted_depth(&self) -> f64 {
        self.retracted_depth
    }

    /// The analysis so far (mass and dose are filled in by [`Machine::finish`]).
    pub fn analysis(&self) -> &Analysis {
        &self.a
    }

    fn advance_time(&mut self, seconds: f64) {
        self.a.est_time_s += seconds;
        if self.nozzle_c > 0.0 {
            self.a.nozzle_on_s += seconds;
        }
        if self.bed_c > 0.0 {
            self.a.bed_on_s += seconds;
        }
    }

    /// Runs one command.
    #[inline]
    #[expect(clippy::too_many_lines, reason = "one arm per Marlin command, flat")]
    pub fn apply(&mut self, cmd: &Command) -> Step {
        self.a.commands += 1;
        let unit = if self.inch { 25.4 } else { 1.0 };
        match (cmd.letter(), cmd.code()) {
            (b'G', 0 | 1) => Step::Move(self.linear_move(cmd, unit)),
            (b'G', 4) => {
                let seconds = match (cmd.value(b'S'), cmd.value(b'P')) {
                    (Some(s), _) => s,
                    (None, Some(p)) => p / 1000.0,
                    (None, None) => 0.0,
                }
                .max(0.0);
                self.a.dwell_s += seconds;
                self.a.max_dwell_s = self.a.max_dwell_s.max(seconds);
                self.advance_time(seconds);
                Step::Dwell { seconds }
            }
            (b'G', 20) => {
                self.inch = true;
                Step::Other
            }
            (b'G', 21) => {
                self.inch = false;
                Step::Other
            }
            (b'G', 28) => {
                let named: Vec<usize> = [b'X', b'Y', b'Z']
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| cmd.param(**l).is_some())
                    .map(|(i, _)| i)
                    .collect();
                let axes = if named.is_empty() {
                    vec![0, 1, 2]
                } else {
                    named
                };
                for i in axes {
                    if let (Some(n), Some(s), Some(h), Some(home)) = (
                        self.native.get_mut(i),
                        self.shift.get_mut(i),
                        self.homed.get_mut(i),
                        self.home.get(i),
                    ) {
                        *n = *home;
                        *s = 0.0;
                        *h = true;
                    }
                }
                Step::Other
            }
            (b'G', 90) => {
                self.relative_xyz = false;
                self.e_relative = None;
                Step::Other
            }
            (b'G', 91) => {
                self.relative_xyz = true;
                self.e_relative = None;
                Step::Other
            }
            (b'G', 92) => {
                for ((letter, n), s) in [b'X', b'Y', b'Z']
                    .iter()
                    .zip(self.native.iter())
                    .zip(self.shift.iter_mut())
                {
                    if let Some(v) = cmd.value(*letter) {
                        *s = v * unit - n;
                    }
                }
                if let Some(v) = cmd.value(b'E') {
                    self.e = v * unit;
                }
                Step::SetPosition
            }
            (b'M', 82) => {
                self.e_relative = Some(false);
                Step::Other
            }
            (b'M', 83) => {
                self.e_relative = Some(true);
                Step::Other
            }
            (b'M', code @ (104 | 109 | 140 | 190)) => {
                let wait = matches!(code, 109 | 190);
                let value = cmd
                    .value(b'S')
                    .or_else(|| if wait { cmd.value(b'R') } else { None });
                let Some(target_c) = value else {
                    return Step::Other;
                };
                let heater = if matches!(code, 104 | 109) {
                    self.nozzle_c = target_c;
                    self.a.max_nozzle_c = self.a.max_nozzle_c.max(target_c);
                    Heater::Nozzle
                } else {
                    self.bed_c = target_c;
                    self.a.max_bed_c = self.a.max_bed_c.max(target_c);
                    Heater::Bed
                };
                Step::Temperature {
                    heater,
                    target_c,
                    wait,
                }
            }
            (b'M', 106) => {
                let value = cmd.value(b'S').unwrap_or(255.0);
                self.a.max_fan = self.a.max_fan.max(value);
                Step::Fan { value }
            }
            (b'M', 107) => Step::Fan { value: 0.0 },
            _ => Step::Other,
        }
    }

    #[inline]
    fn linear_move(&mut self, cmd: &Command, unit: f64) -> Move {
        // One pass over the parameters into scalars (kept in registers: an array indexed by
        // letter, written 8 bytes at a time and read back 16, stalls store forwarding).
        let (mut x_mm, mut y_mm, mut z_mm, mut e_mm, mut feed_mm_min) =
            (None, None, None, None, None);
        for p in cmd.params() {
            let v = p.value().map(super::Decimal::to_f64);
            match p.letter() {
                b'X' => x_mm = v,
                b'Y' => y_mm = v,
                b'Z' => z_mm = v,
                b'E' => e_mm = v,
                b'F' => feed_mm_min = v,
                _ => {}
            }
        }
        if let Some(feed) = feed_mm_min {
            if feed > 0.0 {
                self.feed_mm_s = feed * unit / 60.0;
            }
        }
        let from = self.native;
        let [sx, sy, sz] = self.shift;
        let relative = self.relative_xyz;
        let axis = |native: f64, shift: f64, value: Option<f64>| match value {
            None => native,
            Some(v) if relative => native + v * unit,
            Some(v) => v * unit - shift,
        };
        let to = [
            axis(from[0], sx, x_mm),
            axis(from[1], sy, y_mm),
            axis(from[2], sz, z_mm),
        ];
        let moves_axes = x_mm.is_some() || y_mm.is_some() || z_mm.is_some();
        let e_relative = self.e_is_relative();
        let mut e_delta = 0.0;
        if let Some(v) = e_mm {
            let target = if e_relative {
                self.e + v * unit
            } else {
                v * unit
            };
            e_delta = target - self.e;
            self.e = target;
        }
        self.native = to;
        let length_mm = dist(from, to);
        let mut deposited_mm = 0.0;
        if e_delta < 0.0 {
            self.retracted_depth -= e_delta;
            self.a.retracted_mm -= e_delta;
            self.a.retractions += 1;
        } else if e_delta > 0.0 {
            let refill = e_delta.min(self.retracted_depth);
            self.retracted_depth -= refill;
            deposited_mm = e_delta - refill;
        }
        self.a.filament_mm += deposited_mm;
        self.a.net_filament_mm += e_delta;
        let feed = self.feed_mm_s;
        let travel = if length_mm > 0.0 {
            length_mm
        } else {
            e_delta.abs()
        };
        if travel > 0.0 {
            self.advance_time(travel / feed);
            self.a.max_feed_mm_s = self.a.max_feed_mm_s.max(feed);
        }
        if length_mm > 0.0 {
            self.a.path_mm += length_mm;
            BoundingBox::include(&mut self.a.bbox_moves, to);
            if e_delta > 0.0 {
                self.a.max_print_feed_mm_s = self.a.max_print_feed_mm_s.max(feed);
                if self.a.min_print_feed_mm_s == 0.0 || feed < self.a.min_print_feed_mm_s {
                    self.a.min_print_feed_mm_s = feed;
                }
            } else {
                self.a.max_travel_feed_mm_s = self.a.max_travel_feed_mm_s.max(feed);
            }
        }
        if deposited_mm > 0.0 {
            BoundingBox::include(&mut self.a.bbox_extrude, from);
            BoundingBox::include(&mut self.a.bbox_extrude, to);
            self.note_island([from[0], from[1]], [to[0], to[1]], deposited_mm);
            if length_mm > 0.0 {
                self.note_layer(to[2]);
            }
        }
        Move {
            from,
            to,
            length_mm,
            e_delta,
            deposited_mm,
            feed_mm_s: feed,
            e_relative,
            moves_axes,
            has_e: e_mm.is_some(),
        }
    }

    /// Adds a deposit to the island it touches (merging islands it joins), or starts one.
    fn note_island(&mut self, from: [f64; 2], to: [f64; 2], filament_mm: f64) {
        // Fast path, same result as the search below: both ends inside the last island's box,
        // and no other island overlaps that box. Any island near a point of the box overlaps
        // it, so the last island is the only one hit; its box does not grow, and there is
        // nothing to merge.
        if self.last_island_clean {
            if let Some(last) = self.islands.last_mut() {
                if last.contains(from) && last.contains(to) {
                    last.filament_mm += filament_mm;
                    return;
                }
            }
        }
        self.note_island_search(from, to, filament_mm);
        self.last_island_clean = match self.islands.split_last() {
            Some((last, others)) => !others.iter().any(|o| o.overlaps(last)),
            None => false,
        };
    }

    fn note_island_search(&mut self, from: [f64; 2], to: [f64; 2], filament_mm: f64) {
        let hit = self.islands.iter().position(|i| i.near(from) || i.near(to));
        let Some(k) = hit else {
            if self.islands.len() < MAX_ISLANDS {
                let mut island = Island {
                    min: from,
                    max: from,
                    filament_mm,
                };
                island.include(to);
                self.islands.push(island);
            } else if let Some(last) = self.islands.last_mut() {
                // Beyond the bound: lumped into the last island (the count is then wrong anyway
                // and the unit-count check refuses the program).
                last.filament_mm += filament_mm;
            }
            return;
        };
        let mut grown = self.islands.swap_remove(k);
        grown.include(from);
        grown.include(to);
        grown.filament_mm += filament_mm;
        // Merge every island the grown one now reaches.
        let mut j = 0;
        while let Some(other) = self.islands.get(j) {
            if grown.overlaps(other) {
                let o = self.islands.swap_remove(j);
                grown.include(o.min);
                grown.include(o.max);
                grown.filament_mm += o.filament_mm;
            } else {
                j += 1;
            }
        }
        self.islands.push(grown);
    }

    #[expect(
        clippy::cast_possible_truncation,
        reason = "Z is bounded by the bed check"
    )]
    fn note_layer(&mut self, z: f64) {
        let key = (z * 1000.0).round() as i64;
        // Most extruding moves stay on the layer of the previous one.
        if self.last_layer_um == Some(key) {
            return;
        }
        self.last_layer_um = Some(key);
        if self.layer_z_um.len() < MAX_TRACKED_LAYERS || self.layer_z_um.contains(&key) {
            self.layer_z_um.insert(key);
        } else {
            self.layers_overflow = self.layers_overflow.saturating_add(1);
        }
    }

    /// Ends the virtual print: fills in mass, dose and layers.
    pub fn finish(&self) -> Analysis {
        let m = self.mass;
        let mut out = self.a.clone();
        let a = &mut out;
        a.volume_mm3 = a.filament_mm * m.area_mm2;
        a.mass_mg = a.volume_mm3 * m.density_mg_mm3;
        a.api_mg = a.mass_mg * m.api_fraction;
        let per_mm = m.area_mm2 * m.density_mg_mm3 * m.api_fraction;
        a.units_found = u32::try_from(self.islands.len()).unwrap_or(u32::MAX);
        let mut islands = self.islands.clone();
        islands.sort_by(|p, q| {
            p.min[0]
                .total_cmp(&q.min[0])
                .then(p.min[1].total_cmp(&q.min[1]))
        });
        a.unit_doses_mg = islands.iter().map(|i| i.filament_mm * per_mm).collect();
        a.dose_mg = if m.units == 0 {
            a.api_mg
        } else {
            a.api_mg / f64::from(m.units)
        };
        let count = u32::try_from(self.layer_z_um.len()).unwrap_or(u32::MAX);
        a.layers = count.saturating_add(self.layers_overflow);
        let mut prev: Option<i64> = None;
        for &z in &self.layer_z_um {
            let mm = z as f64 / 1000.0;
            match prev {
                None => a.first_layer_z_mm = Some(mm),
                Some(p) => {
                    let step = (z - p) as f64 / 1000.0;
                    a.min_layer_height_mm =
                        Some(a.min_layer_height_mm.map_or(step, |s| s.min(step)));
                    a.max_layer_height_mm =
                        Some(a.max_layer_height_mm.map_or(step, |s| s.max(step)));
                }
            }
            prev = Some(z);
        }
        out
    }
}

#[cfg(test)]
mod tests;
