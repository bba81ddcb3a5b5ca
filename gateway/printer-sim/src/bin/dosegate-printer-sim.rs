//! `dosegate-printer-sim`: serves the simulated Marlin printer on a pseudo-terminal, so the
//! gateway (or OctoPrint, or a person with `screen`) can open it like a USB serial port.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
