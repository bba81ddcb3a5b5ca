//! A Marlin-faithful printer simulator, in-process and (through the `dosegate-printer-sim`
//! binary) on a pseudo-terminal.
//!
//! Owns the firmware side of the serial protocol as Marlin 2 implements it: a byte receive buffer
//! that drops what overflows it, line-number and checksum checks that flush the buffer and ask
//! for a resend, a small command buffer read only between commands, `ok` after execution
//! (`ok N P B` with `ADVANCED_OK`), `busy:` keepalives, blocking `M109`/`M190` heat-up with
//! temperature lines, `M155` auto-report, `M114`, `M115`, `M503`, the emergency parser's
//! `M112`, and a DTR reset. Faults are injected on purpose ([`Faults`]): corrupted or dropped
//! bytes, forced resends, omitted oks, busy spells, disconnects, a lying `M115`, temperature
//! drift. Every executed command is logged ([`Printer::executed`]) so tests compare what ran with
//! what was intended.
//!
//! It is sans-IO like the streamer: bytes and the time go in, bytes come out; the binary and the
//! tests move them. It is not a motion simulator: moves take a fixed time each in a planner of
//! fixed depth.

mod motion;
mod parse;
mod printer;
mod pty;
mod rng;

pub use motion::{Motion, Position};
pub use parse::normal_form;
pub use printer::{Executed, Fault, Faults, Printer, SimConfig};
pub use pty::PtyPrinter;
pub use rng::SplitMix64;
