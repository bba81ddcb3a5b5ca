//! Any bytes as a policy TOML: never a panic, and an accepted policy has ordered ranges.
#![no_main]

use dosegate_core::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = Policy::from_toml(text) {
        let [lo, hi] = p.temperature().nozzle_c;
        assert!(lo <= hi);
        assert!(p.area_mm2() > 0.0);
    }
});
