#![allow(
    clippy::float_cmp,
    reason = "exact values are the point: decimal inputs, exact arithmetic"
)]

use super::super::parse::parse_line;
use super::*;

const MASS: MassModel = MassModel {
    area_mm2: 2.0,
    density_mg_mm3: 1.5,
    api_fraction: 0.1,
    units: 2,
};

fn run(program: &str) -> (Machine, Vec<Step>) {
    let mut m = Machine::new(MASS, [0.0, 0.0, 0.0]);
    let steps = program
        .lines()
        .filter_map(|l| parse_line(l.as_bytes(), 1).unwrap())
        .map(|c| m.apply(&c))
        .collect();
    (m, steps)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn absolute_extrusion_sums_deltas_and_mass_follows() {
    let (m, _) = run("G28\nG90\nM82\nG1 X10 E1 F600\nG1 X20 E3\n");
    let a = m.finish();
    assert!(close(a.filament_mm, 3.0));
    assert!(close(a.volume_mm3, 6.0));
    assert!(close(a.mass_mg, 9.0));
    assert!(close(a.api_mg, 0.9));
    assert!(close(a.dose_mg, 0.45));
}

#[test]
fn g91_after_m82_makes_e_relative_as_in_marlin() {
    // M82 then G91: Marlin's G91 clears the E override, so E follows G91 (relative).
    let (m, _) = run("G28\nM82\nG91\nG1 X1 E1\nG1 X1 E1\nG1 X1 E1\n");
    assert!(m.e_is_relative());
    assert!(close(m.finish().filament_mm, 3.0));
    // M83 after G90 overrides again.
    let (m, _) = run("G90\nM83\nG1 X1 E1\nG1 X2 E1\n");
    assert!(close(m.finish().filament_mm, 2.0));
}

#[test]
fn g92_e_reset_does_not_hide_extrusion() {
    let (m, _) = run("G28\nG1 X5 E5\nG92 E0\nG1 X10 E5\nG92 E0\nG1 X15 E5\n");
    let a = m.finish();
    assert!(close(a.filament_mm, 15.0));
    assert_eq!(m.position().e, 5.0);
}

#[test]
fn retraction_refilled_cancels_and_final_retraction_does_not_subtract() {
    let (m, _) = run("G28\nG1 X5 E5\nG1 E3\nG1 E5\nG1 X6 E6\nG1 E4\n");
    let a = m.finish();
    assert!(close(a.filament_mm, 6.0), "{}", a.filament_mm);
    assert!(close(a.net_filament_mm, 4.0));
    assert!(close(a.retracted_mm, 4.0));
    assert_eq!(a.retractions, 2);
    assert!(close(m.retracted_depth(), 2.0));
}

#[test]
fn unretract_larger_than_retraction_deposits_the_excess() {
    let (m, steps) = run("G28\nG1 E-1\nG1 E9\n");
    let Step::Move(prime) = steps[2] else {
        panic!("not a move")
    };
    assert!(close(prime.deposited_mm, 9.0));
    assert!(close(m.finish().filament_mm, 9.0));
}

#[test]
fn g92_xyz_shifts_logical_but_not_native_coordinates() {
    let (m, _) = run("G28\nG1 X10 Y10\nG92 X0 Y0\nG1 X5\n");
    assert_eq!(m.position().x, 5.0);
    assert_eq!(m.native()[0], 15.0);
    assert_eq!(m.native()[1], 10.0);
}

#[test]
fn g28_homes_named_axes_and_clears_their_offsets() {
    let (m, _) = run("G28\nG1 X10 Y10 Z3\nG92 X0\nG28 X0\n");
    assert_eq!(m.native(), [0.0, 10.0, 3.0]);
    assert_eq!(m.position().x, 0.0);
    let (m, _) = run("G1 X1\n");
    assert!(!m.homed());
}

#[test]
fn inch_units_scale_moves_and_extrusion() {
    let (m, _) = run("G28\nG20\nG1 X1 E0.1\n");
    assert!(close(m.native()[0], 25.4));
    assert!(close(m.finish().filament_mm, 2.54));
}

#[test]
fn relative_xyz_moves_accumulate() {
    let (m, _) = run("G28\nG91\nG1 Z0.2\nG1 Z0.2\nG1 X-3\n");
    assert!(close(m.native()[2], 0.4));
    assert!(close(m.native()[0], -3.0));
}

#[test]
fn time_is_distance_over_feed_plus_dwell() {
    let (m, _) = run("G28\nG1 X60 F3600\nG4 P500\nG4 S2 P9000\nG1 E6 F360\n");
    let a = m.finish();
    // 60 mm at 60 mm/s + 0.5 s + 2 s (S wins) + 6 mm of E at 6 mm/s.
    assert!(
        close(a.est_time_s, 1.0 + 0.5 + 2.0 + 1.0),
        "{}",
        a.est_time_s
    );
    assert!(close(a.dwell_s, 2.5));
    assert!(close(a.max_dwell_s, 2.0));
}

#[test]
fn feed_rate_zero_is_ignored_and_boot_feed_is_1500_mm_min() {
    let (m, _) = run("G28\nG1 X25\nG1 X50 F0\n");
    assert!(close(m.finish().est_time_s, 2.0));
}

#[test]
fn temperatures_track_targets_and_heater_time() {
    let (m, steps) = run("M104 S190\nG28\nG1 X30 F1800\nM109 R185\nM104 S0\nG1 X0\n");
    let a = m.finish();
    assert_eq!(a.max_nozzle_c, 190.0);
    assert_eq!(m.nozzle_target_c(), 0.0);
    assert!(close(a.nozzle_on_s, 1.0));
    assert_eq!(
        steps[3],
        Step::Temperature {
            heater: Heater::Nozzle,
            target_c: 185.0,
            wait: true
        }
    );
}

#[test]
fn layers_and_layer_heights_come_from_extruding_moves_only() {
    let program = "G28\nG1 Z0.3\nG1 X5 E1\nG1 Z0.5\nG1 X0 E2\nG1 Z5\nG1 X9\nG1 Z0.7\nG1 X5 E3\n";
    let (m, _) = run(program);
    let a = m.finish();
    assert_eq!(a.layers, 3);
    assert_eq!(a.first_layer_z_mm, Some(0.3));
    assert!(close(a.min_layer_height_mm.unwrap(), 0.2));
    assert!(close(a.max_layer_height_mm.unwrap(), 0.2));
    let bb = a.bbox_moves.unwrap();
    assert_eq!(bb.max[2], 5.0);
    assert_eq!(a.bbox_extrude.unwrap().max[2], 0.7);
}

#[test]
fn feeds_are_split_into_print_and_travel() {
    let (m, _) = run("G28\nG1 X10 F7200\nG1 X20 E1 F1200\nG1 X30 E2 F600\n");
    let a = m.finish();
    assert!(close(a.max_travel_feed_mm_s, 120.0));
    assert!(close(a.max_print_feed_mm_s, 20.0));
    assert!(close(a.min_print_feed_mm_s, 10.0));
    assert!(close(a.max_feed_mm_s, 120.0));
}

#[test]
fn separate_islands_are_counted_as_units_with_their_own_doses() {
    // Two 10 mm lines 50 mm apart, then one joining a third line to the first.
    let program = "G28\nG1 X10 Y10\nG1 X20 E1\nG1 X60 Y10\nG1 X70 E4\nG1 X21 Y11\nG1 X30 Y11 E5\n";
    let (m, _) = run(program);
    let a = m.finish();
    assert_eq!(a.units_found, 2);
    // per mm of filament: 2 mm² × 1.5 mg/mm³ × 0.1 = 0.3 mg; sorted by X.
    assert!(
        close(a.unit_doses_mg[0], 2.0 * 0.3),
        "{:?}",
        a.unit_doses_mg
    );
    assert!(
        close(a.unit_doses_mg[1], 3.0 * 0.3),
        "{:?}",
        a.unit_doses_mg
    );
}

#[test]
fn a_deposit_bridging_two_islands_merges_them() {
    let program = "G28\nG1 X10 Y10\nG1 X20 E1\nG1 X40 Y10\nG1 X50 E2\nG1 X20 Y10\nG1 X40 E3\n";
    let (m, _) = run(program);
    let a = m.finish();
    assert_eq!(a.units_found, 1);
    assert!(close(a.unit_doses_mg[0], 3.0 * 0.3));
}

proptest::proptest! {
    /// The fast path for deposits inside the last island gives exactly what the full search
    /// gives: the same islands, in the same order, with the same sums to the bit.
    #[test]
    fn island_fast_path_equals_the_full_search(
        deposits in proptest::collection::vec(
            (0u8..6, -3.0f64..3.0, -3.0f64..3.0, -3.0f64..3.0, -3.0f64..3.0, 0.001f64..1.0),
            1..200,
        )
    ) {
        let mut fast = Machine::new(MASS, [0.0; 3]);
        let mut full = Machine::new(MASS, [0.0; 3]);
        for (cell, fx, fy, tx, ty, mm) in deposits {
            // Six printlet sites 10 mm apart, deposits scattered around them.
            let base = f64::from(cell) * 10.0;
            let (from, to) = ([base + fx, fy], [base + tx, ty]);
            fast.note_island(from, to, mm);
            full.note_island_search(from, to, mm);
            proptest::prop_assert_eq!(&fast.islands, &full.islands);
        }
    }
}
