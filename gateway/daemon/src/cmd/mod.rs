//! One module per `dosegate` subcommand. Each owns its arguments, its output and its exit codes;
//! `main.rs` only dispatches.

pub(crate) mod run;
