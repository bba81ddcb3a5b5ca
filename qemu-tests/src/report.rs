//! The image's test report: `DGT key=value` lines that `dosegate-test-report.service` prints on
//! the console when the `dosegate.test` credential is present (see docs/os-image.md for keys).
//!
//! Parsing only; the tests decide what the values must be.

use std::collections::BTreeMap;

/// A parsed report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report(BTreeMap<String, String>);

impl Report {
    /// Collects `DGT key=value` lines (anything before `DGT ` on a line is ignored, as the
    /// kernel may interleave its own output).
    pub fn parse(lines: &[String]) -> Self {
        Self(
            lines
                .iter()
                .filter_map(|l| l.split_once("DGT ").map(|(_, kv)| kv))
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect(),
        )
    }

    /// A value, or `""` when the key is missing.
    pub fn get(&self, key: &str) -> &str {
        self.0.get(key).map_or("", String::as_str)
    }

    /// All keys and values.
    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// The dosegate unit's `systemd-analyze security` exposure, if reported.
    pub fn exposure(&self) -> Option<f64> {
        self.get("security").parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values_and_ignores_noise() {
        let lines: Vec<String> = [
            "[   12.3] random kernel line",
            "DGT dosegate=active",
            "[  20.1] x: DGT pcr11=ABCDEF",
            "DGT security=1.2",
            "DGT listen=",
            "DGT-END",
        ]
        .map(String::from)
        .to_vec();
        let r = Report::parse(&lines);
        assert_eq!(r.get("dosegate"), "active");
        assert_eq!(r.get("pcr11"), "ABCDEF");
        assert_eq!(r.get("listen"), "");
        assert_eq!(r.get("missing"), "");
        assert_eq!(r.exposure(), Some(1.2));
        assert_eq!(r.entries().len(), 4);
    }
}
