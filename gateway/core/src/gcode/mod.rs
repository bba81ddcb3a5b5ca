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

/// One command of a checked program, as the gateway will send it to the printer: a view into
/// [`ProgramCommands`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProgramCommand<'a> {
    /// 1-based line of the source file the command came from.
    pub source_line: u32,
    /// Canonical text (see [`Command::write_canonical`]); never the source bytes.
    pub text: &'a str,
    /// Logical position after the command has run, for `M114` checkpoints.
    pub after: Position,
}

/// The commands of a checked program, in order. Their canonical texts are written back to back
/// into one buffer (one allocation for the whole program, not one per command).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProgramCommands {
    /// Canonical texts back to back (ASCII only).
    text: Vec<u8>,
    entries: Vec<CommandEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct CommandEntry {
    source_line: u32,
    start: usize,
    end: usize,
    after: Position,
}

impl ProgramCommands {
    /// Appends a command: its canonical text, source line and the position after it.
    pub fn push(&mut self, source_line: u32, command: &Command, after: Position) {
        let start = self.text.len();
        command.write_canonical_bytes(&mut self.text);
        self.entries.push(CommandEntry {
            source_line,
            start,
            end: self.text.len(),
            after,
        });
    }

    fn view(&self, e: &CommandEntry) -> ProgramCommand<'_> {
        ProgramCommand {
            source_line: e.source_line,
            // Always in bounds and ASCII: `push` wrote exactly this range.
            text: self
                .text
                .get(e.start..e.end)
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or_default(),
            after: e.after,
        }
    }

    /// Number of commands.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The command at `index`.
    pub fn get(&self, index: usize) -> Option<ProgramCommand<'_>> {
        self.entries.get(index).map(|e| self.view(e))
    }

    /// The last command.
    pub fn last(&self) -> Option<ProgramCommand<'_>> {
        self.entries.last().map(|e| self.view(e))
    }

    /// The commands, in order.
    pub fn iter(&self) -> ProgramCommandsIter<'_> {
        ProgramCommandsIter {
            commands: self,
            entries: self.entries.iter(),
        }
    }
}

impl<'a> IntoIterator for &'a ProgramCommands {
    type Item = ProgramCommand<'a>;
    type IntoIter = ProgramCommandsIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over [`ProgramCommands`].
#[derive(Debug, Clone)]
pub struct ProgramCommandsIter<'a> {
    commands: &'a ProgramCommands,
    entries: std::slice::Iter<'a, CommandEntry>,
}

impl<'a> Iterator for ProgramCommandsIter<'a> {
    type Item = ProgramCommand<'a>;
    fn next(&mut self) -> Option<Self::Item> {
        self.entries.next().map(|e| self.commands.view(e))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl ExactSizeIterator for ProgramCommandsIter<'_> {}

impl DoubleEndedIterator for ProgramCommandsIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.entries.next_back().map(|e| self.commands.view(e))
    }
}
