//! Any bytes offered as an update bundle's manifest, or as the headers of its tar archive:
//! refused or accepted, never a panic, and an accepted manifest always satisfies the bounds
//! `Manifest::parse` promises.
#![no_main]

use dosegate_core::update::tar::{BLOCK, BundleArchive, Next};
use dosegate_core::update::{BundleFile, MAX_MANIFEST_BYTES, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        assert!(data.len() as u64 <= MAX_MANIFEST_BYTES);
        for f in BundleFile::ALL {
            assert!(m.entry(f).size <= f.max_size());
        }
        assert!(m.version.to_string().split('.').count() <= 8);
    }
    let mut archive = BundleArchive::new();
    for chunk in data.chunks_exact(BLOCK) {
        let Ok(block) = <&[u8; BLOCK]>::try_from(chunk) else { return };
        match archive.next_header(block) {
            Ok(Next::Entry { size, padding, .. }) => assert!((size + padding) % BLOCK as u64 == 0),
            Ok(Next::End) | Err(_) => return,
        }
    }
});
