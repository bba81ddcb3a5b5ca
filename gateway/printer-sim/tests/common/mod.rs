//! Runs the gateway's streamer against the simulated printer in virtual time: both are sans-IO,
//! so a test moves bytes between them and jumps the clock to the next deadline.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::time::Duration;

use dosegate_core::stream::{
    AbortReason, CanonicalCommand, CompletionSummary, Position, StreamCommand, StreamConfig,
    StreamEvent, StreamProgram, Streamer, Transmit,
};
use dosegate_printer_sim::{Executed, Motion, Printer, SimConfig, normal_form};

/// Commands the streamer adds around a program (handshake, identity, reports, checkpoints).
pub const HOUSEKEEPING: &[&str] = &["M110", "M115", "M503", "M155", "M105", "M400", "M114"];

/// A program of canonical commands, with the virtual print's positions after each.
pub fn program(commands: &[String]) -> StreamProgram {
    let mut motion = Motion::new();
    let cmds = commands
        .iter()
        .enumerate()
        .map(|(i, c)| {
            motion.apply(c);
            let p = motion.position();
            StreamCommand {
                source_line: u32::try_from(i + 1).unwrap(),
                command: CanonicalCommand::new(c).unwrap(),
                after: Some(Position {
                    x: p.x,
                    y: p.y,
                    z: p.z,
                    e: p.e,
                }),
            }
        })
        .collect();
    StreamProgram::unverified(cmds).unwrap()
}

/// Commands in the execution log's normal form (how the firmware reads them).
pub fn normal(commands: &[String]) -> Vec<String> {
    commands
        .iter()
        .map(|c| normal_form(c).unwrap_or_else(|| c.clone()))
        .collect()
}

/// A printlet-like program: heat, home, `moves` extruding moves on a square spiral, cool down.
pub fn printlet(moves: usize) -> Vec<String> {
    let mut p = vec![
        "M140 S40".to_owned(),
        "M104 S190".to_owned(),
        "G28".to_owned(),
        "M109 S190".to_owned(),
        "M82".to_owned(),
        "G92 E0".to_owned(),
    ];
    let mut e = 0.0f64;
    for i in 0..moves {
        e += 0.0123;
        let x = 100.0 + f64::from(u32::try_from(i % 40).unwrap()) * 0.25;
        let y = 100.0 + f64::from(u32::try_from((i / 40) % 40).unwrap()) * 0.25;
        if i % 97 == 0 {
            p.push(format!(
                "G1 Z{:.2} F600",
                0.2 + f64::from(u32::try_from(i / 97).unwrap()) * 0.2
            ));
        }
        p.push(format!("G1 X{x:.3} Y{y:.3} E{e:.5} F1800"));
    }
    p.extend(["M104 S0".to_owned(), "M140 S0".to_owned(), "M84".to_owned()]);
    p
}

/// A stream's end.
#[derive(Debug)]
pub struct Run {
    pub outcome: Result<CompletionSummary, AbortReason>,
    pub events: Vec<StreamEvent>,
    pub printer: Printer,
    pub virtual_time: Duration,
}

impl Run {
    /// The program commands the printer executed (housekeeping removed), in order.
    pub fn executed_program(&self) -> Vec<String> {
        self.printer
            .executed()
            .iter()
            .filter(|e| !HOUSEKEEPING.contains(&e.command.split(' ').next().unwrap_or("")))
            .map(|e: &Executed| e.command.clone())
            .collect()
    }

    pub fn resends(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, StreamEvent::ResendRequested { .. }))
            .count()
    }
}

/// Streams `commands` to a printer built from `sim`, with `latency` on every printer→host line.
pub fn run(commands: &[String], cfg: StreamConfig, sim: SimConfig, latency: Duration) -> Run {
    run_with(commands, cfg, sim, latency, |_, _, _| {})
}

/// As [`run`], calling `hook(now, streamer, printer)` once per step (to stop a job, say).
pub fn run_with(
    commands: &[String],
    cfg: StreamConfig,
    sim: SimConfig,
    latency: Duration,
    mut hook: impl FnMut(Duration, &mut Streamer, &mut Printer),
) -> Run {
    let mut printer = Printer::new(sim);
    let mut now = Duration::ZERO;
    let mut streamer = Streamer::new(program(commands), cfg, now);
    let mut to_host: VecDeque<(Duration, Vec<u8>)> = VecDeque::new();
    let mut events = Vec::new();
    let mut disconnect_seen = false;
    let trace = std::env::var_os("SIM_TRACE").is_some();
    let mut spins = 0u32;
    for _ in 0..50_000_000u64 {
        hook(now, &mut streamer, &mut printer);
        while let Some(t) = streamer.poll_transmit() {
            match t {
                Transmit::Line(b) | Transmit::Emergency(b) => {
                    if trace {
                        eprint!("{now:?} >> {}", String::from_utf8_lossy(&b));
                    }
                    printer.receive(&b, now);
                }
                Transmit::ResetBoard => printer.reset(),
            }
        }
        printer.advance(now);
        let out = printer.take_output();
        if !out.is_empty() {
            to_host.push_back((now + latency, out));
        }
        while to_host.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, bytes)) = to_host.pop_front() {
                if trace {
                    eprint!("{now:?} << {}", String::from_utf8_lossy(&bytes));
                }
                streamer.handle_input(&bytes, now);
            }
        }
        if printer.is_disconnected() && to_host.is_empty() && !disconnect_seen {
            disconnect_seen = true;
            streamer.handle_disconnect(now);
        }
        streamer.handle_timeout(now);
        let mut wrote = false;
        while let Some(t) = streamer.poll_transmit() {
            wrote = true;
            match t {
                Transmit::Line(b) | Transmit::Emergency(b) => {
                    if trace {
                        eprint!("{now:?} >> {}", String::from_utf8_lossy(&b));
                    }
                    printer.receive(&b, now);
                }
                Transmit::ResetBoard => printer.reset(),
            }
        }
        while let Some(e) = streamer.poll_event() {
            events.push(e);
        }
        if let Some(outcome) = streamer.outcome().cloned() {
            while let Some(t) = streamer.poll_transmit() {
                match t {
                    Transmit::Line(b) | Transmit::Emergency(b) => printer.receive(&b, now),
                    Transmit::ResetBoard => printer.reset(),
                }
            }
            printer.advance(now);
            return Run {
                outcome,
                events,
                printer,
                virtual_time: now,
            };
        }
        let next = [
            streamer.poll_timeout(),
            printer.next_wakeup(),
            to_host.front().map(|(t, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min();
        now = match next {
            _ if wrote => now,
            Some(t) if t > now => {
                spins = 0;
                t
            }
            Some(_) if spins < 1000 => {
                spins += 1;
                now
            }
            Some(_) => now + Duration::from_micros(10),
            None => panic!("stalled at {now:?}: nothing scheduled and no outcome"),
        };
        assert!(now < Duration::from_secs(36_000), "virtual time ran away");
    }
    panic!("too many steps");
}

/// A fast default stream configuration for virtual-time tests.
pub fn fast_cfg() -> StreamConfig {
    StreamConfig {
        ack_timeout: Duration::from_secs(5),
        ..StreamConfig::default()
    }
}
