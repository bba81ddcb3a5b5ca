//! Latency of on-device PAT inference per spectrum — preprocessing, prediction, Hotelling T² and
//! Q — for each committed model, on the spectra of its reference cases.
//!
//! Run with `cargo bench -p dosegate-core --bench pat` (or `scripts/bench-pat.sh`, which also times
//! scikit-learn in the same run). Prints one `BENCH <model> <path> median_us=… p99_us=…` line per
//! measurement: `kernel` reuses buffers (the gateway's loop), `predict` adds the axis check and
//! allocates its buffers per call.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "percentile index of a small sample"
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use dosegate_core::inference::ValidatedModel;
use dosegate_core::spectrum::Spectrum;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn measure(mut f: impl FnMut(), per_batch: usize) -> (f64, f64) {
    for _ in 0..per_batch * 20 {
        f();
    }
    let mut samples = Vec::with_capacity(300);
    for _ in 0..300 {
        let t = Instant::now();
        for _ in 0..per_batch {
            f();
        }
        samples.push(t.elapsed().as_secs_f64() * 1e6 / per_batch as f64);
    }
    samples.sort_by(f64::total_cmp);
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    for id in ["nir-dyrby2002", "raman-dyrby2002", "nir-idrc2002-inst1"] {
        let bytes = std::fs::read(root.join("models").join(format!("{id}.cbor"))).unwrap();
        let model = ValidatedModel::from_bytes(&bytes).unwrap();
        let spectra: Vec<Spectrum> = model
            .file()
            .reference_cases
            .iter()
            .map(|c| Spectrum::new(model.axis().clone(), c.spectrum.clone()).unwrap())
            .collect();
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        let mut k = 0usize;
        let (m, p) = measure(
            || {
                let s = &spectra[k % spectra.len()];
                k += 1;
                black_box(model.predict_values(black_box(s.values()), &mut out, &mut scratch));
            },
            50,
        );
        println!(
            "BENCH {id} kernel points={} lv={} median_us={m:.2} p99_us={p:.2}",
            model.axis().len(),
            model.file().pls.score_var.len()
        );
        let (m, p) = measure(
            || {
                let s = &spectra[k % spectra.len()];
                k += 1;
                black_box(model.predict(black_box(s)).unwrap());
            },
            50,
        );
        println!("BENCH {id} predict median_us={m:.2} p99_us={p:.2}");
    }
}
