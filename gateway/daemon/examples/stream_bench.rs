//! Streams a G-code file of canonical commands to a serial port with DoseGate's streamer and
//! prints one JSON line: the figure `scripts/bench-printer.sh` compares with OctoPrint's serial
//! layer. ENGINEERING ONLY: the file is not policy-checked; positions for the checkpoints come
//! from the simulator's motion model.
//!
//! usage: stream_bench PORT GCODE [MAX_IN_FLIGHT [MAX_BYTES_IN_FLIGHT]] (defaults 32 and 127: Marlin's
//! 128-byte receive buffer less one)

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use dosegate::serial::{self, SerialSettings};
use dosegate_core::stream::{
    CanonicalCommand, Position, StreamCommand, StreamConfig, StreamProgram, Streamer,
};
use dosegate_printer_sim::Motion;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let port = args
        .next()
        .context("usage: stream_bench PORT GCODE [MAX_IN_FLIGHT]")?;
    let gcode = args
        .next()
        .context("usage: stream_bench PORT GCODE [MAX_IN_FLIGHT]")?;
    let max_in_flight: usize = args.next().map_or(Ok(32), |s| s.parse())?;
    let max_bytes: usize = args.next().map_or(Ok(127), |s| s.parse())?;
    let text = std::fs::read_to_string(&gcode)?;
    let mut motion = Motion::new();
    let mut commands = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split(';').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        motion.apply(line);
        let p = motion.position();
        commands.push(StreamCommand {
            source_line: u32::try_from(i + 1)?,
            command: CanonicalCommand::new(line)?,
            after: Some(Position {
                x: p.x,
                y: p.y,
                z: p.z,
                e: p.e,
            }),
        });
    }
    let n = commands.len();
    let cfg = StreamConfig {
        max_lines_in_flight: max_in_flight,
        max_bytes_in_flight: max_bytes,
        ack_timeout: Duration::from_secs(5),
        ..StreamConfig::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (outcome, secs) = rt.block_on(async {
        let settings = SerialSettings {
            reset_on_connect: false,
            ..SerialSettings::new(&port)
        };
        let mut link = serial::open(&settings).await?;
        let start = Instant::now();
        let mut s = Streamer::new(StreamProgram::unverified(commands)?, cfg, start.elapsed());
        let mut streaming_since = None;
        let outcome = serial::run(
            &mut link,
            &mut s,
            start,
            |e, _| {
                if matches!(
                    e,
                    dosegate_core::stream::StreamEvent::StreamingStarted { .. }
                ) {
                    streaming_since = Some(start.elapsed());
                }
            },
            std::future::pending(),
        )
        .await;
        let secs = start
            .elapsed()
            .saturating_sub(streaming_since.unwrap_or_default())
            .as_secs_f64();
        anyhow::Ok((outcome, secs))
    })?;
    let json = match outcome {
        Ok(s) => {
            serde_json::json!({ "tool": "dosegate", "lines": n, "print_s": secs, "lines_per_s": n as f64 / secs,
                                     "outcome": "completed", "resends": s.resends, "max_in_flight": max_in_flight, "max_bytes_in_flight": max_bytes })
        }
        Err(r) => {
            serde_json::json!({ "tool": "dosegate", "lines": n, "print_s": secs, "outcome": "aborted",
                                      "code": r.code(), "reason": r, "max_in_flight": max_in_flight })
        }
    };
    println!("{json}");
    Ok(())
}
