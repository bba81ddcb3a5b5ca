//! Any bytes offered as a trust root, to pin and as a rotation: never a panic.
#![no_main]

use dosegate_core::trust::TrustedRoot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = TrustedRoot::pin(data, 1_800_000_000);
});
