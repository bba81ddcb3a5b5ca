//! The logical position model `M114` reports: absolute/relative XYZ (`G90`/`G91`), absolute or
//! relative E (`M82`/`M83`), `G92` offsets, `G28` homing to zero.
//!
//! Owns only positions; it does not time moves or check limits.

/// A logical position, mm.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Position {
    /// X.
    pub x: f64,
    /// Y.
    pub y: f64,
    /// Z.
    pub z: f64,
    /// Extruder.
    pub e: f64,
}

/// Tracks the logical position through a command stream.
#[derive(Debug, Clone, Default)]
pub struct Motion {
    pos: Position,
    relative_xyz: bool,
    relative_e: bool,
}

fn param(words: &[&str], letter: char) -> Option<f64> {
    // Marlin's parser keeps the last occurrence of a repeated parameter.
    words
        .iter()
        .skip(1)
        .rev()
        .find_map(|w| w.strip_prefix(letter))
        .and_then(|v| v.parse().ok())
}

impl Motion {
    /// A model at the origin, absolute mode.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current logical position.
    pub fn position(&self) -> Position {
        self.pos
    }

    /// Applies one canonical command; returns whether it was a move (`G0`/`G1`).
    pub fn apply(&mut self, command: &str) -> bool {
        let words: Vec<&str> = command.split_whitespace().collect();
        let Some(&word) = words.first() else {
            return false;
        };
        match word {
            "G0" | "G1" => {
                for (letter, slot, rel) in [
                    ('X', &mut self.pos.x, self.relative_xyz),
                    ('Y', &mut self.pos.y, self.relative_xyz),
                    ('Z', &mut self.pos.z, self.relative_xyz),
                    ('E', &mut self.pos.e, self.relative_e),
                ] {
                    if let Some(v) = param(&words, letter) {
                        *slot = if rel { *slot + v } else { v };
                    }
                }
                return true;
            }
            "G90" => {
                self.relative_xyz = false;
                self.relative_e = false;
            }
            "G91" => {
                self.relative_xyz = true;
                self.relative_e = true;
            }
            "M82" => self.relative_e = false,
            "M83" => self.relative_e = true,
            "G92" => {
                let any = ['X', 'Y', 'Z', 'E']
                    .iter()
                    .any(|&l| param(&words, l).is_some());
                for (letter, slot) in [
                    ('X', &mut self.pos.x),
                    ('Y', &mut self.pos.y),
                    ('Z', &mut self.pos.z),
                    ('E', &mut self.pos.e),
                ] {
                    if let Some(v) = param(&words, letter) {
                        *slot = v;
                    } else if !any {
                        *slot = 0.0;
                    }
                }
            }
            "G28" => {
                let axes: Vec<char> = ['X', 'Y', 'Z']
                    .into_iter()
                    .filter(|&l| words.iter().any(|w| w.starts_with(l)))
                    .collect();
                let all = axes.is_empty();
                if all || axes.contains(&'X') {
                    self.pos.x = 0.0;
                }
                if all || axes.contains(&'Y') {
                    self.pos.y = 0.0;
                }
                if all || axes.contains(&'Z') {
                    self.pos.z = 0.0;
                }
            }
            _ => {}
        }
        false
    }
}
