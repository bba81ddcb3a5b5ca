//! Any bytes offered as a PAT model file: refused, or a model whose reference cases reproduce —
//! and predicting one of them never panics.
#![no_main]

use dosegate_core::inference::ValidatedModel;
use dosegate_core::spectrum::Spectrum;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ValidatedModel::from_bytes(data) {
        if let Some(c) = m.file().reference_cases.first() {
            if let Ok(s) = Spectrum::new(m.axis().clone(), c.spectrum.clone()) {
                let _ = m.predict(&s);
            }
        }
    }
});
