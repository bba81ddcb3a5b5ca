//! Incoming lines: what a Marlin-style firmware says, parsed into [`Reply`].
//!
//! Owns the grammar of replies (`ok N P B`, `Resend:`, `Error:`, `busy:`, `wait`, temperature and
//! position reports, `Cap:` lines). It does not interpret them against the job (that is
//! [`super::Streamer`]). Lines are bounded by [`MAX_REPLY_LEN`] before they reach this parser.

/// Longest reply line accepted, in bytes (Marlin's longest, `M503` and `M115`, are under 200).
pub const MAX_REPLY_LEN: usize = 512;

/// Temperatures from a report (` T:190.0 /190.0 B:40.0 /40.0 @:0 B@:0`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Temperatures {
    /// Hot end: measured and target, °C.
    pub hotend: Option<(f64, f64)>,
    /// Bed: measured and target, °C.
    pub bed: Option<(f64, f64)>,
}

/// A logical position as `M114` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Position {
    /// X, mm.
    pub x: f64,
    /// Y, mm.
    pub y: f64,
    /// Z, mm.
    pub z: f64,
    /// Extruder, mm of filament (logical, after `G92 E0` resets).
    pub e: f64,
}

/// One line from the firmware.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `ok`, with `ADVANCED_OK`'s `N` (last line received), `P` (planner slots free) and `B`
    /// (command buffer slots free), and temperatures when it answers `M105`.
    Ok {
        /// `N`: the last line number the firmware accepted.
        line: Option<u32>,
        /// `P`: free planner slots.
        planner_free: Option<u32>,
        /// `B`: free command-buffer slots.
        buffer_free: Option<u32>,
        /// Temperatures carried by an `M105` answer.
        temperatures: Option<Temperatures>,
        /// A position carried on the `ok` line (`ok X:… Y:… Z:… E:…`, as some firmwares answer
        /// `M114`).
        position: Option<Position>,
    },
    /// `Resend: n` (or `rs n`): the firmware discarded its receive buffer and wants line `n` next.
    Resend(u32),
    /// `Error:` about a received line (checksum, line number); a `Resend` follows.
    LineError {
        /// `Last Line:` — the last line the firmware accepted.
        last_line: Option<u32>,
    },
    /// Any other `Error:` (kill, thermal runaway, MINTEMP): the firmware has halted.
    Fatal(String),
    /// `busy: processing` / `echo:busy:` keepalive.
    Busy,
    /// `wait`: the firmware is idle with an empty buffer.
    Wait,
    /// A temperature report (auto-report or during `M109`/`M190`).
    Temperatures(Temperatures),
    /// An `M114` position report.
    Position(Position),
    /// `start`: the firmware (re)booted.
    Start,
    /// Anything else (`echo:`, `FIRMWARE_NAME:`, `Cap:` lines, `M503` settings); kept verbatim.
    Text(String),
}

/// Parses one line (without its line ending).
pub fn parse_reply(line: &str) -> Reply {
    let line = line.trim();
    if line == "ok" || line.starts_with("ok ") {
        return parse_ok(line);
    }
    if let Some(rest) = line
        .strip_prefix("Resend:")
        .or_else(|| line.strip_prefix("rs "))
    {
        let digits = rest.trim().trim_start_matches('N');
        if let Ok(n) = digits.parse() {
            return Reply::Resend(n);
        }
        return Reply::Text(line.to_owned());
    }
    if let Some(rest) = line
        .strip_prefix("Error:")
        .or_else(|| line.strip_prefix("!!"))
    {
        let lower = rest.to_ascii_lowercase();
        if lower.contains("last line")
            || lower.contains("checksum")
            || lower.contains("line number")
            || lower.contains("expected line")
        {
            let last_line = rest
                .rsplit_once("Last Line:")
                .and_then(|(_, n)| n.trim().parse().ok());
            return Reply::LineError { last_line };
        }
        return Reply::Fatal(rest.trim().to_owned());
    }
    if line.starts_with("busy:") || line.starts_with("echo:busy:") {
        return Reply::Busy;
    }
    if line == "wait" {
        return Reply::Wait;
    }
    if line == "start" {
        return Reply::Start;
    }
    if let Some(t) = parse_temperatures(line) {
        return Reply::Temperatures(t);
    }
    if let Some(p) = parse_position(line) {
        return Reply::Position(p);
    }
    Reply::Text(line.to_owned())
}

fn parse_ok(line: &str) -> Reply {
    let mut n = None;
    let mut p = None;
    let mut b = None;
    for word in line.split_whitespace().skip(1) {
        if let Some(v) = word.strip_prefix('N') {
            n = v.parse().ok();
        } else if let Some(v) = word.strip_prefix('P') {
            p = v.parse().ok();
        } else if let Some(v) = word.strip_prefix('B') {
            if !v.starts_with(':') && !v.starts_with('@') {
                b = v.parse().ok();
            }
        }
    }
    Reply::Ok {
        line: n,
        planner_free: p,
        buffer_free: b,
        temperatures: parse_temperatures(line),
        position: line.strip_prefix("ok ").and_then(parse_position),
    }
}

/// Parses `T:a /b B:c /d …`; `None` unless a hot-end or bed reading is present.
fn parse_temperatures(line: &str) -> Option<Temperatures> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut t = Temperatures::default();
    let mut i = 0;
    while let Some(word) = words.get(i) {
        let Some((key, value)) = word.split_once(':') else {
            i += 1;
            continue;
        };
        let target = words
            .get(i + 1)
            .and_then(|w| w.strip_prefix('/'))
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite());
        let actual = value.parse::<f64>().ok().filter(|v| v.is_finite());
        if let (Some(a), Some(tg)) = (actual, target) {
            match key {
                "T" | "T0" if t.hotend.is_none() => t.hotend = Some((a, tg)),
                "B" => t.bed = Some((a, tg)),
                _ => {}
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    (t.hotend.is_some() || t.bed.is_some()).then_some(t)
}

/// Parses `X:1.00 Y:2.00 Z:3.00 E:4.00 Count …`.
fn parse_position(line: &str) -> Option<Position> {
    let logical = line.split(" Count").next().unwrap_or(line);
    let mut found = [None::<f64>; 4];
    for word in logical.split_whitespace() {
        let (key, value) = word.split_once(':')?;
        let v = value.parse::<f64>().ok().filter(|v| v.is_finite())?;
        let slot = match key {
            "X" => found.get_mut(0),
            "Y" => found.get_mut(1),
            "Z" => found.get_mut(2),
            "E" => found.get_mut(3),
            _ => return None,
        };
        if let Some(s) = slot {
            *s = Some(v);
        }
    }
    match found {
        [Some(x), Some(y), Some(z), Some(e)] => Some(Position { x, y, z, e }),
        _ => None,
    }
}
