//! G-code: a strict streaming parser and a virtual print of what Marlin would execute.
//!
//! This module owns the *meaning* of a G-code program: [`parse`] turns bytes (fed in chunks of
//! any size) into [`Command`]s, refusing everything Marlin and other readers could read
//! differently, and writes each command back in one canonical text form; [`analyse`] runs a
//! virtual print over the commands (positions, extrusion → mass → dose, temperatures, feed rates,
//! dwell, bounding boxes, layers, time). It decides nothing about what is *allowed*: the product's
//! design space is applied by [`crate::policy`], which returns the proof type
//! [`crate::policy::VerifiedProgram`]. It does no I/O.

pub mod analyse;
pub mod parse;

use serde::Serialize;

pub use analyse::{Analysis, BoundingBox, Machine, MassModel, Step};
pub use parse::{Command, Decimal, GcodeError, MAX_LINE_LEN, MAX_PARAMS, Param, Parser};

/// A tool position in millimetres, in logical coordinates as Marlin's `M114` reports them (after
/// `G92` offsets). `e` is the logical extruder position.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Position {
    /// X, mm.
    pub x: f64,
    /// Y, mm.
    pub y: f64,
    /// Z, mm.
    pub z: f64,
    /// Extruder, mm of filament (or plunger travel).
    pub e: f64,
}

/// One command of a checked program, as the gateway will send it to the printer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgramCommand {
    /// 1-based line of the source file the command came from.
    pub source_line: u32,
    /// Canonical text (see [`Command::write_canonical`]); never the source bytes.
    pub text: String,
    /// Logical position after the command has run, for `M114` checkpoints.
    pub after: Position,
}
