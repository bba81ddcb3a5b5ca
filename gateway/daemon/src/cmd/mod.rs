//! The operator commands of `dosegate`, one module each; `main` dispatches to them.

pub(crate) mod check_gcode;
