use super::*;

fn file(data: &str, npoints: usize, firstx: f64, lastx: f64) -> String {
    format!(
        "##TITLE=test\n##JCAMP-DX=5.01\n##DATA TYPE=NEAR INFRARED SPECTRUM\n##XUNITS=NANOMETERS\n\
         ##YUNITS=ABSORBANCE\n##XFACTOR=1\n##YFACTOR=0.5\n##FIRSTX={firstx}\n##LASTX={lastx}\n\
         ##NPOINTS={npoints}\n##XYDATA=(X++(Y..Y))\n{data}\n##END=\n"
    )
}

const EXPECTED: [f64; 10] = [1.0, 2.0, 3.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0, -3.0];

#[test]
fn decodes_the_standard_affn_pac_sqz_dif_and_difdup_examples_alike() {
    // The five encodings of the same ordinates given in the JCAMP-DX specification.
    for data in [
        "8192 1 2 3 3 2 1 0 -1 -2 -3",
        "8192+1+2+3+3+2+1+0-1-2-3",
        "8192ABCCBA@abc",
        "8192AJJ%jjjjjj",
        "8192AJT%jX",
    ] {
        let s = parse(&file(data, 10, 8192.0, 8201.0)).unwrap_or_else(|e| panic!("{data}: {e}"));
        let halves: Vec<f64> = EXPECTED.iter().map(|v| v * 0.5).collect();
        assert_eq!(s.values(), halves.as_slice(), "{data}");
        assert_eq!(s.axis().unit(), AxisUnit::Nanometre);
        assert_eq!(s.axis().values().first(), Some(&8192.0));
        assert_eq!(s.axis().values().last(), Some(&8201.0));
    }
}

#[test]
fn dif_line_end_y_check_value_is_verified_and_dropped() {
    let ok = parse(&file("1 AJJ%j\n5 Bjjjj", 9, 1.0, 9.0)).unwrap();
    assert_eq!(ok.values(), [0.5, 1.0, 1.5, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0]);
    let bad = parse(&file("1 AJJ%j\n5 Cjjjj", 9, 1.0, 9.0));
    assert_eq!(
        bad,
        Err(JcampError::YCheck {
            line: 13,
            expected: 2.0,
            got: 3.0
        })
    );
}

#[test]
fn refuses_wrong_point_count_off_grid_x_and_missing_values() {
    assert_eq!(
        parse(&file("8192 1 2 3", 4, 8192.0, 8195.0)),
        Err(JcampError::PointCount {
            expected: 4,
            got: 3
        })
    );
    assert!(matches!(
        parse(&file("8192 1 2\n9000 3 4", 4, 8192.0, 8195.0)),
        Err(JcampError::XCheck {
            line: 13,
            index: 2,
            ..
        })
    ));
    assert!(matches!(
        parse(&file("8192 1 ? 3", 3, 8192.0, 8194.0)),
        Err(JcampError::Unsupported { .. })
    ));
}

#[test]
fn refuses_unknown_units_rather_than_converting() {
    let text = file("1 1 2", 2, 1.0, 2.0).replace("NANOMETERS", "MICROMETERS");
    assert!(matches!(parse(&text), Err(JcampError::Unsupported { .. })));
}

#[test]
fn xypoints_written_by_us_read_back_exactly() {
    let axis = Axis::new(AxisUnit::PerCentimetre, vec![3600.0, 3599.0, 3598.5]).unwrap();
    let s = Spectrum::new(axis, vec![0.1, -2.5e-7, 99.4]).unwrap();
    let text = write_xypoints("t", &s);
    assert_eq!(parse(&text).unwrap(), s);
}

#[test]
fn exponent_notation_in_affn_is_read() {
    let s = parse(&file("1 1.5E+00 2.0e-01", 2, 1.0, 2.0)).unwrap();
    assert_eq!(s.values(), [0.75, 0.1]);
}
