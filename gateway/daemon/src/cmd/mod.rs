//! One module per operator command. Each exposes `Args` (clap) and `run(args) -> Result<ExitCode>`.

pub mod check_gcode;
pub mod check_job;
pub mod fleet;
pub mod health;
pub mod ledger;
pub mod predict;
pub mod print;
pub mod run;
pub mod tpm;
pub mod update;
