//! Writes a printlet mesh as binary STL (for slicing fixtures by hand).
//!
//! ```text
//! cargo run -p dosegate-core --example printlet_stl -- cylinder 8 3 128 out.stl
//! cargo run -p dosegate-core --example printlet_stl -- caplet 14 6 3 128 out.stl
//! ```

use std::process::ExitCode;

use dosegate_core::printlet::Shape;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| args.get(i).and_then(|s| s.parse::<f64>().ok());
    let (shape, rest) = match args.first().map(String::as_str) {
        Some("cylinder") => match (num(1), num(2)) {
            (Some(diameter), Some(height)) => (Shape::Cylinder { diameter, height }, 3),
            _ => return usage(),
        },
        Some("caplet") => match (num(1), num(2), num(3)) {
            (Some(length), Some(width), Some(height)) => (
                Shape::Caplet {
                    length,
                    width,
                    height,
                },
                4,
            ),
            _ => return usage(),
        },
        _ => return usage(),
    };
    let (Some(segments), Some(path)) = (
        args.get(rest).and_then(|s| s.parse::<u32>().ok()),
        args.get(rest + 1),
    ) else {
        return usage();
    };
    match shape.to_stl(segments) {
        Ok(stl) => match std::fs::write(path, stl) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{path}: {e}");
                ExitCode::from(2)
            }
        },
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: printlet_stl cylinder DIAMETER HEIGHT SEGMENTS OUT.stl\n       \
         printlet_stl caplet LENGTH WIDTH HEIGHT SEGMENTS OUT.stl"
    );
    ExitCode::from(2)
}
