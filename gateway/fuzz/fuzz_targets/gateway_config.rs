//! Any text offered as the gateway's configuration: refused or accepted, never a panic, and an
//! accepted configuration always satisfies the checks `Config::parse` promises.
#![no_main]

use dosegate_core::config::{BAUD_RATES, Config, MAX_CONFIG_BYTES};
use dosegate_core::config::{RX_BUFFER_BYTES_MAX, RX_BUFFER_BYTES_MIN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = Config::parse(text) {
        assert!(text.len() <= MAX_CONFIG_BYTES);
        assert!(cfg.paths.state_dir.is_absolute());
        assert!(cfg.printer.serial.starts_with("/dev"));
        assert!(cfg.tpm.device.starts_with("/dev"));
        assert!(BAUD_RATES.contains(&cfg.printer.baud));
        assert!((RX_BUFFER_BYTES_MIN..=RX_BUFFER_BYTES_MAX).contains(&cfg.printer.rx_buffer_bytes));
    }
});
