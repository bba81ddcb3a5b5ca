//! The streamer against the Marlin-faithful simulator, in virtual time: exactly-once execution
//! under each fault, and the abort paths with their evidence.

mod common;

use std::time::Duration;

use common::{fast_cfg, normal, printlet, run, run_with};
use dosegate_core::stream::{
    AbortReason, FirmwareBaseline, FirmwareCheck, FirmwareIdentity, Heater, IdentityQuery,
    MonitorLimits, StreamConfig, StreamEvent,
};
use dosegate_printer_sim::{Fault, Faults, SimConfig};

fn with_schedule(faults: &[(u64, Fault)]) -> SimConfig {
    SimConfig {
        faults: Faults {
            schedule: faults.iter().copied().collect(),
            ..Faults::default()
        },
        ..SimConfig::default()
    }
}

#[test]
fn streams_a_program_exactly_once_with_advanced_ok() {
    let prog = printlet(500);
    let r = run(&prog, fast_cfg(), SimConfig::default(), Duration::ZERO);
    let summary = r.outcome.as_ref().expect("completed");
    assert_eq!(summary.commands, prog.len());
    assert_eq!(r.executed_program(), normal(&prog));
    assert!(r.events.contains(&StreamEvent::StreamingStarted {
        lines_in_flight: 32
    }));
}

#[test]
fn keeps_one_line_in_flight_without_advanced_ok() {
    let prog = printlet(200);
    let sim = SimConfig {
        advanced_ok: false,
        autoreport_temp: false,
        ..SimConfig::default()
    };
    let r = run(&prog, fast_cfg(), sim, Duration::from_millis(1));
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    assert_eq!(r.executed_program(), normal(&prog));
    assert!(
        r.events
            .contains(&StreamEvent::StreamingStarted { lines_in_flight: 1 })
    );
}

#[test]
fn resends_a_corrupted_line_without_skipping_or_repeating() {
    let prog = printlet(300);
    for fault in [Fault::Corrupt, Fault::ForceResend, Fault::DropBytes] {
        let r = run(
            &prog,
            fast_cfg(),
            with_schedule(&[(40, fault), (41, fault), (90, fault)]),
            Duration::from_millis(2),
        );
        assert!(r.outcome.is_ok(), "{fault:?}: {:?}", r.outcome);
        assert_eq!(r.executed_program(), normal(&prog), "{fault:?}");
        assert!(r.resends() >= 1, "{fault:?}: no resend was requested");
    }
}

#[test]
fn survives_missing_oks_and_busy_spells() {
    let prog = printlet(200);
    for advanced_ok in [true, false] {
        for fault in [Fault::OmitOk, Fault::Busy] {
            let sim = SimConfig {
                advanced_ok,
                ..with_schedule(&[(30, fault), (100, fault), (199, fault)])
            };
            let r = run(&prog, fast_cfg(), sim, Duration::from_millis(1));
            assert!(
                r.outcome.is_ok(),
                "{fault:?} advanced_ok={advanced_ok}: {:?}",
                r.outcome
            );
            assert_eq!(
                r.executed_program(),
                normal(&prog),
                "{fault:?} advanced_ok={advanced_ok}"
            );
        }
    }
}

#[test]
fn overfilling_the_receive_buffer_loses_bytes_but_no_move() {
    let prog = printlet(300);
    let cfg = StreamConfig {
        max_lines_in_flight: 32,
        max_bytes_in_flight: 2000,
        ..fast_cfg()
    };
    let r = run(&prog, cfg, SimConfig::default(), Duration::ZERO);
    assert!(
        r.printer.dropped_bytes() > 0,
        "the test did not overflow the buffer"
    );
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    assert_eq!(r.executed_program(), normal(&prog));
}

#[test]
fn a_disconnect_aborts_the_job() {
    let prog = printlet(300);
    let r = run(
        &prog,
        fast_cfg(),
        with_schedule(&[(120, Fault::Disconnect)]),
        Duration::ZERO,
    );
    let Err(AbortReason::Disconnected { commands_acked }) = r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert!(commands_acked < prog.len());
    assert_eq!(
        r.executed_program(),
        normal(&prog)[..r.executed_program().len()].to_vec()
    );
}

fn identity_of(sim: &SimConfig) -> FirmwareIdentity {
    let prog = printlet(1);
    let r = run(&prog, fast_cfg(), sim.clone(), Duration::ZERO);
    let ev = r.events.iter().find_map(|e| match e {
        StreamEvent::FirmwareIdentified {
            m115_sha256,
            m503_sha256,
            ..
        } => Some((m115_sha256.clone(), m503_sha256.clone())),
        _ => None,
    });
    let (a, b) = ev.expect("identified");
    let h = |s: &str| <[u8; 32]>::try_from(hex_decode(s)).unwrap();
    FirmwareIdentity {
        m115_sha256: h(&a),
        m503_sha256: h(&b),
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn refuses_to_print_when_the_firmware_differs_from_its_baseline() {
    let baseline = identity_of(&SimConfig::default());
    let prog = printlet(50);
    let cfg = StreamConfig {
        firmware: FirmwareCheck::Baseline(baseline.into()),
        ..fast_cfg()
    };

    let same = run(&prog, cfg.clone(), SimConfig::default(), Duration::ZERO);
    assert!(same.outcome.is_ok(), "{:?}", same.outcome);

    let liar = SimConfig {
        m115_override: Some(vec![
            "FIRMWARE_NAME:Marlin 2.1.2.4 (patched) PROTOCOL_VERSION:1.0".into(),
            "Cap:ADVANCED_OK:1".into(),
        ]),
        ..SimConfig::default()
    };
    let r = run(&prog, cfg.clone(), liar, Duration::ZERO);
    assert!(
        matches!(
            r.outcome,
            Err(AbortReason::FirmwareMismatch {
                query: IdentityQuery::M115,
                ..
            })
        ),
        "{:?}",
        r.outcome
    );
    assert!(
        r.executed_program().is_empty(),
        "a program command ran on unknown firmware"
    );

    let retuned = SimConfig {
        steps_per_mm_e: 140.0,
        ..SimConfig::default()
    };
    let r = run(&prog, cfg, retuned, Duration::ZERO);
    assert!(
        matches!(
            r.outcome,
            Err(AbortReason::FirmwareMismatch {
                query: IdentityQuery::M503,
                ..
            })
        ),
        "{:?}",
        r.outcome
    );
    assert!(r.executed_program().is_empty());

    // A baseline may hold one digest: only that answer is compared.
    let only_m503 = StreamConfig {
        firmware: FirmwareCheck::Baseline(FirmwareBaseline {
            m115_sha256: None,
            m503_sha256: Some(baseline.m503_sha256),
        }),
        ..fast_cfg()
    };
    let other_name = SimConfig {
        m115_override: Some(vec![
            "FIRMWARE_NAME:Marlin 2.1.2.4 (patched) PROTOCOL_VERSION:1.0".into(),
            "Cap:ADVANCED_OK:1".into(),
        ]),
        ..SimConfig::default()
    };
    let r = run(&prog, only_m503.clone(), other_name, Duration::ZERO);
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    let retuned = SimConfig {
        steps_per_mm_e: 140.0,
        ..SimConfig::default()
    };
    let r = run(&prog, only_m503, retuned, Duration::ZERO);
    assert!(matches!(
        r.outcome,
        Err(AbortReason::FirmwareMismatch {
            query: IdentityQuery::M503,
            ..
        })
    ));
}

#[test]
fn mid_print_checkpoints_compare_positions_without_draining_the_planner() {
    // Given a checkpoint every 100 commands of a 1000-move print,
    let prog = printlet(1000);
    let cfg = StreamConfig {
        checkpoint_every: 100,
        ..fast_cfg()
    };
    // when it streams,
    let r = run(&prog, cfg, SimConfig::default(), Duration::from_millis(1));
    // then every checkpoint's M114 was compared, and only the final one waited for the moves
    // to finish (M400): a mid-print drain would stop the nozzle and leave a blob.
    let summary = r.outcome.as_ref().expect("completed");
    let count = |word: &str| {
        r.printer
            .executed()
            .iter()
            .filter(|e| e.command == word)
            .count()
    };
    assert_eq!(summary.checkpoints as usize, prog.len() / 100 + 1);
    assert_eq!(count("M114"), prog.len() / 100 + 1);
    assert_eq!(count("M400"), 1);
    assert_eq!(r.executed_program(), normal(&prog));
}

fn limits() -> MonitorLimits {
    MonitorLimits {
        hotend_c: Some((185.0, 195.0)),
        bed_c: Some((35.0, 45.0)),
        tolerance_c: 2.0,
        grace: Duration::from_secs(3),
        heatup_timeout: Duration::from_secs(60),
        report_timeout: Duration::from_secs(5),
    }
}

#[test]
fn a_temperature_drift_beyond_the_grace_time_stops_the_printer() {
    let prog = printlet(20_000);
    for emergency_parser in [true, false] {
        let sim = SimConfig {
            move_time: Duration::from_millis(5),
            emergency_parser,
            faults: Faults {
                drift: Some((2000, 0.5)),
                ..Faults::default()
            },
            ..SimConfig::default()
        };
        let cfg = StreamConfig {
            monitor: limits(),
            ..fast_cfg()
        };
        let r = run(&prog, cfg, sim, Duration::ZERO);
        let Err(AbortReason::TemperatureDeviation {
            heater,
            measured_c,
            lasted_ms,
            ..
        }) = r.outcome
        else {
            panic!("{:?}", r.outcome)
        };
        assert_eq!(heater, Heater::Hotend);
        assert!(measured_c > 197.0, "{measured_c}");
        assert!(lasted_ms > 3000);
        assert!(r.executed_program().len() < prog.len());
        if emergency_parser {
            assert!(
                r.printer.is_killed(),
                "M112 did not reach the emergency parser"
            );
        } else {
            // No emergency parser: the board was reset, which turns every heater off.
            assert!(!r.printer.is_killed());
            assert_eq!(r.printer.targets(), (0.0, 0.0));
        }
    }
}

#[test]
fn a_heater_that_never_reaches_its_band_times_out() {
    let prog = printlet(50);
    let sim = SimConfig {
        heat_rate_c_per_s: 0.5,
        ..SimConfig::default()
    };
    let cfg = StreamConfig {
        monitor: MonitorLimits {
            heatup_timeout: Duration::from_secs(30),
            ..limits()
        },
        ..fast_cfg()
    };
    let r = run(&prog, cfg, sim, Duration::ZERO);
    assert!(
        matches!(
            r.outcome,
            Err(AbortReason::HeatupTimeout {
                heater: Heater::Bed | Heater::Hotend,
                ..
            })
        ),
        "{:?}",
        r.outcome
    );
}

#[test]
fn an_in_band_print_with_monitoring_completes() {
    let prog = printlet(2000);
    let cfg = StreamConfig {
        monitor: limits(),
        ..fast_cfg()
    };
    let r = run(&prog, cfg, SimConfig::default(), Duration::from_millis(1));
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    assert_eq!(r.executed_program(), normal(&prog));
}

#[test]
fn an_operator_stop_bypasses_the_queue() {
    let prog = printlet(5000);
    let sim = SimConfig {
        move_time: Duration::from_millis(20),
        ..SimConfig::default()
    };
    let r = run_with(&prog, fast_cfg(), sim, Duration::ZERO, |now, s, _| {
        if now >= Duration::from_secs(10) {
            s.stop(now);
        }
    });
    assert_eq!(r.outcome, Err(AbortReason::Stopped));
    assert!(r.printer.is_killed());
    assert!(r.executed_program().len() < prog.len());
}

#[test]
fn a_checkpoint_catches_a_position_the_virtual_print_did_not_expect() {
    // Something outside the program switches the extruder to relative mode mid-print (as a
    // tampered firmware or a second host could): every later E value lands elsewhere, and the
    // final M114 no longer matches the virtual print.
    let prog = printlet(100);
    let mut first = true;
    let r = run_with(
        &prog,
        fast_cfg(),
        SimConfig::default(),
        Duration::ZERO,
        |now, _, p| {
            if first && p.executed().len() > 60 {
                first = false;
                p.receive(b"M83\n", now);
            }
        },
    );
    assert!(
        matches!(
            r.outcome,
            Err(AbortReason::CheckpointMismatch { axis: 'E', .. })
        ),
        "{:?}",
        r.outcome
    );
}
