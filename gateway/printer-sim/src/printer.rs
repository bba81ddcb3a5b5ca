//! The simulated firmware: [`Printer`].
//!
//! Owns the receive buffer, line checks, command buffer, planner timing, heaters, reports and
//! fault injection. It does no I/O and reads no clock.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::Duration;

use crate::motion::Motion;
use crate::parse::normal_form;
use crate::rng::SplitMix64;

/// One fault, applied to the `k`-th line the firmware reads (see [`Faults::schedule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Flip a bit in one byte of the line (line noise): a checksum or line-number error.
    Corrupt,
    /// Reject the line with a checksum error although it was intact.
    ForceResend,
    /// Lose the tail of the line and its newline (bytes dropped by a UART bridge).
    DropBytes,
    /// Execute the line's command but send no `ok` for it.
    OmitOk,
    /// The line's command keeps the firmware busy for 3 s (`busy: processing` keepalives).
    Busy,
    /// Unplug: the firmware stops and the port closes.
    Disconnect,
}

/// Faults to inject: rates per mille of lines read, and a schedule of exact faults.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Seed for the rates.
    pub seed: u64,
    /// Lines corrupted, per mille.
    pub corrupt_per_mille: u32,
    /// Intact lines rejected with a resend request, per mille.
    pub resend_per_mille: u32,
    /// Lines losing bytes, per mille.
    pub drop_per_mille: u32,
    /// Commands whose `ok` is not sent, per mille.
    pub omit_ok_per_mille: u32,
    /// Commands that keep the firmware busy, per mille.
    pub busy_per_mille: u32,
    /// Exact faults by the ordinal (1-based) of the line read.
    pub schedule: BTreeMap<u64, Fault>,
    /// After this many executed commands the hot end starts drifting by this many °C per second.
    pub drift: Option<(u64, f64)>,
}

/// The simulated firmware's build options and behaviour.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// `ADVANCED_OK`: `ok N<line> P<planner free> B<buffer free>`.
    pub advanced_ok: bool,
    /// `AUTOREPORT_TEMP` (`M155`).
    pub autoreport_temp: bool,
    /// `EMERGENCY_PARSER`: `M112` acts as soon as its bytes arrive.
    pub emergency_parser: bool,
    /// Receive buffer, bytes (Marlin: 128); what does not fit is dropped.
    pub rx_buffer: usize,
    /// Command buffer, lines (Marlin `BUFSIZE`: 4).
    pub command_buffer: usize,
    /// Planner depth, moves (Marlin: 16).
    pub planner: usize,
    /// Time each move takes once planned.
    pub move_time: Duration,
    /// Heating and cooling rate, °C/s.
    pub heat_rate_c_per_s: f64,
    /// Answer to `M115` instead of the truthful one (a firmware that lies, or another build).
    pub m115_override: Option<Vec<String>>,
    /// Steps per mm reported by `M503` (a changed setting changes the identity digest).
    pub steps_per_mm_e: f64,
    /// Faults to inject.
    pub faults: Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            advanced_ok: true,
            autoreport_temp: true,
            emergency_parser: true,
            rx_buffer: 128,
            command_buffer: 4,
            planner: 16,
            move_time: Duration::from_millis(1),
            heat_rate_c_per_s: 50.0,
            m115_override: None,
            steps_per_mm_e: 93.0,
            faults: Faults::default(),
        }
    }
}

/// A command the firmware executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    /// Its line number, if it had one.
    pub line: Option<u32>,
    /// The command as the firmware read it, in [`crate::normal_form`] (single spaces, shortest
    /// numbers), whatever layout the host sent.
    pub command: String,
}

#[derive(Debug, Clone)]
struct Queued {
    line: Option<u32>,
    command: String,
    omit_ok: bool,
    busy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Wait {
    Until(Duration),
    PlannerSlot,
    PlannerEmpty,
    Heat { bed: bool },
}

#[derive(Debug, Clone)]
struct Heater {
    actual: f64,
    target: f64,
}

const AMBIENT_C: f64 = 25.0;
const KEEPALIVE: Duration = Duration::from_secs(2);

/// The simulated firmware.
#[derive(Debug)]
pub struct Printer {
    cfg: SimConfig,
    rng: SplitMix64,
    now: Duration,
    rx: VecDeque<u8>,
    line_buf: Vec<u8>,
    tail: Vec<u8>,
    queue: VecDeque<Queued>,
    executing: Option<(Queued, Wait, Duration)>,
    planner: VecDeque<Duration>,
    last_line: u32,
    lines_read: u64,
    motion: Motion,
    hotend: Heater,
    bed: Heater,
    drift_since: Option<Duration>,
    heat_clock: Duration,
    heat_reports: u64,
    autoreport: Option<(Duration, Duration)>,
    next_keepalive: Option<Duration>,
    out: Vec<u8>,
    executed: Vec<Executed>,
    commands_run: u64,
    dropped_bytes: u64,
    killed: bool,
    disconnected: bool,
}

impl Printer {
    /// A printer that has just booted (it says `start`).
    pub fn new(cfg: SimConfig) -> Self {
        let rng = SplitMix64::new(cfg.faults.seed);
        let mut p = Self {
            cfg,
            rng,
            now: Duration::ZERO,
            rx: VecDeque::new(),
            line_buf: Vec::new(),
            tail: Vec::new(),
            queue: VecDeque::new(),
            executing: None,
            planner: VecDeque::new(),
            last_line: 0,
            lines_read: 0,
            motion: Motion::new(),
            hotend: Heater {
                actual: AMBIENT_C,
                target: 0.0,
            },
            bed: Heater {
                actual: AMBIENT_C,
                target: 0.0,
            },
            drift_since: None,
            heat_clock: Duration::ZERO,
            heat_reports: 0,
            autoreport: None,
            next_keepalive: None,
            out: Vec::new(),
            executed: Vec::new(),
            commands_run: 0,
            dropped_bytes: 0,
            killed: false,
            disconnected: false,
        };
        p.boot();
        p
    }

    fn boot(&mut self) {
        self.say("start");
        self.say("echo:Marlin 2.1.2.4 (DoseGate printer simulator)");
    }

    /// Pulls DTR: the board resets and boots again (heaters off, buffers empty, line 0).
    pub fn reset(&mut self) {
        self.rx.clear();
        self.line_buf.clear();
        self.queue.clear();
        self.executing = None;
        self.planner.clear();
        self.last_line = 0;
        self.hotend.target = 0.0;
        self.bed.target = 0.0;
        self.autoreport = None;
        self.killed = false;
        self.motion = Motion::new();
        self.boot();
    }

    /// Bytes from the host arrive; what the receive buffer cannot hold is lost.
    pub fn receive(&mut self, bytes: &[u8], now: Duration) {
        if self.disconnected {
            return;
        }
        self.advance(now);
        if self.cfg.emergency_parser && !self.killed {
            let mut scan = std::mem::take(&mut self.tail);
            scan.extend_from_slice(bytes);
            if scan.windows(4).any(|w| w == b"M112") {
                self.kill();
                return;
            }
            let keep = scan.len().saturating_sub(3);
            self.tail = scan.split_off(keep);
        }
        for &b in bytes {
            if self.rx.len() < self.cfg.rx_buffer {
                self.rx.push_back(b);
            } else {
                self.dropped_bytes += 1;
            }
        }
        self.advance(now);
    }

    /// Runs the firmware up to `now`.
    pub fn advance(&mut self, now: Duration) {
        self.now = self.now.max(now);
        self.update_heaters();
        self.reports();
        while !self.killed && !self.disconnected {
            if let Some((cmd, wait, _)) = self.executing.clone() {
                if !self.wait_over(wait) {
                    if let Some(k) = self.next_keepalive {
                        if self.now >= k && !matches!(wait, Wait::Heat { .. }) {
                            self.say("echo:busy: processing");
                            self.next_keepalive = Some(self.now + KEEPALIVE);
                        }
                    }
                    break;
                }
                self.executing = None;
                self.next_keepalive = None;
                self.complete(&cmd);
                continue;
            }
            self.read_serial();
            let Some(cmd) = self.queue.pop_front() else {
                break;
            };
            self.start(cmd);
        }
    }

    /// When [`Self::advance`] next has something to do, if ever.
    pub fn next_wakeup(&self) -> Option<Duration> {
        if self.killed || self.disconnected {
            return None;
        }
        let mut t = Vec::new();
        if let Some((_, wait, _)) = &self.executing {
            t.push(match *wait {
                Wait::Until(u) => u,
                Wait::PlannerSlot => self.planner.front().copied().unwrap_or(self.now),
                Wait::PlannerEmpty => self.planner.back().copied().unwrap_or(self.now),
                Wait::Heat { bed } => {
                    let h = if bed { &self.bed } else { &self.hotend };
                    let secs =
                        ((h.target - h.actual).abs() - 0.5).max(0.0) / self.cfg.heat_rate_c_per_s;
                    self.now + Duration::from_secs_f64(secs).max(Duration::from_millis(1))
                }
            });
            t.push(self.now + Duration::from_secs(1));
        } else if !self.queue.is_empty() || !self.rx.is_empty() {
            t.push(self.now);
        }
        if let Some((_, next)) = self.autoreport {
            t.push(next);
        }
        t.into_iter().min()
    }

    /// Bytes the firmware has written since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Every command executed, in order.
    pub fn executed(&self) -> &[Executed] {
        &self.executed
    }

    /// Whether the firmware was unplugged (a [`Fault::Disconnect`]).
    pub fn is_disconnected(&self) -> bool {
        self.disconnected
    }

    /// Whether `M112` halted the firmware.
    pub fn is_killed(&self) -> bool {
        self.killed
    }

    /// Bytes lost to receive-buffer overflow.
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped_bytes
    }

    /// Hot-end and bed set-points, °C (0: off).
    pub fn targets(&self) -> (f64, f64) {
        (self.hotend.target, self.bed.target)
    }

    /// Current hot-end and bed temperatures (as reported), °C.
    pub fn temperatures(&self) -> (f64, f64) {
        (self.reported_hotend(), self.bed.actual)
    }

    // ------------------------------------------------------------- serial side

    fn say(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.push(b'\n');
    }

    /// Marlin's `get_serial_commands`: read while the command buffer has room.
    fn read_serial(&mut self) {
        while self.queue.len() < self.cfg.command_buffer && !self.disconnected {
            let Some(b) = self.rx.pop_front() else { return };
            if b != b'\n' && b != b'\r' {
                if self.line_buf.len() < 256 {
                    self.line_buf.push(b);
                }
                continue;
            }
            if self.line_buf.is_empty() {
                continue;
            }
            let mut line = std::mem::take(&mut self.line_buf);
            self.lines_read += 1;
            let fault = self.pick_fault();
            match fault {
                Some(Fault::Disconnect) => {
                    self.disconnected = true;
                    return;
                }
                Some(Fault::DropBytes) => {
                    let cut = self.rng.below(line.len());
                    line.truncate(cut);
                    self.line_buf = line;
                    continue;
                }
                Some(Fault::Corrupt) => {
                    let i = self.rng.below(line.len());
                    if let Some(b) = line.get_mut(i) {
                        *b ^= 1 << self.rng.below(7);
                    }
                }
                _ => {}
            }
            self.accept_line(&line, fault);
        }
    }

    fn pick_fault(&mut self) -> Option<Fault> {
        if let Some(f) = self.cfg.faults.schedule.get(&self.lines_read) {
            return Some(*f);
        }
        let f = self.cfg.faults.clone();
        [
            (f.corrupt_per_mille, Fault::Corrupt),
            (f.resend_per_mille, Fault::ForceResend),
            (f.drop_per_mille, Fault::DropBytes),
            (f.omit_ok_per_mille, Fault::OmitOk),
            (f.busy_per_mille, Fault::Busy),
        ]
        .into_iter()
        .find(|&(rate, _)| self.rng.chance(rate))
        .map(|(_, fault)| fault)
    }

    fn line_error(&mut self, what: &str) {
        let last = self.last_line;
        self.say(&format!("Error:{what}, Last Line: {last}"));
        // flush_and_request_resend(): the receive buffer is discarded.
        self.rx.clear();
        self.line_buf.clear();
        self.say(&format!("Resend: {}", last + 1));
        self.say("ok");
    }

    fn accept_line(&mut self, raw: &[u8], fault: Option<Fault>) {
        let Ok(text) = std::str::from_utf8(raw) else {
            self.line_error("checksum mismatch");
            return;
        };
        let text = text.trim();
        let (line, body) = if let Some(rest) = text.strip_prefix('N') {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let is_m110 = text.contains("M110");
            let n: Option<u32> = if is_m110 {
                text.get(4..)
                    .and_then(|t| t.split_once('N'))
                    .map(|(_, r)| {
                        r.chars()
                            .take_while(char::is_ascii_digit)
                            .collect::<String>()
                    })
                    .and_then(|d| d.parse().ok())
                    .or_else(|| digits.parse().ok())
            } else {
                digits.parse().ok()
            };
            let Some(n) = n else {
                self.line_error("Line Number is not Last Line Number+1");
                return;
            };
            if !is_m110 && Some(n) != self.last_line.checked_add(1) {
                self.line_error("Line Number is not Last Line Number+1");
                return;
            }
            let Some((head, sum)) = text.rsplit_once('*') else {
                self.line_error("No Checksum with line number");
                return;
            };
            let cs = head.bytes().fold(0u8, |a, b| a ^ b);
            if sum.trim().parse::<u8>().ok() != Some(cs) || fault == Some(Fault::ForceResend) {
                self.line_error("checksum mismatch");
                return;
            }
            self.last_line = n;
            let body = read_command(head.get(1 + digits.len()..).unwrap_or_default());
            (Some(n), body)
        } else {
            if text.contains('*') {
                self.line_error("No Line Number with checksum");
                return;
            }
            (None, read_command(text))
        };
        self.queue.push_back(Queued {
            line,
            command: body,
            omit_ok: fault == Some(Fault::OmitOk),
            busy: fault == Some(Fault::Busy),
        });
    }

    // ------------------------------------------------------------- execution

    fn start(&mut self, cmd: Queued) {
        let word = cmd
            .command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        let param = |l: char| -> Option<f64> {
            cmd.command
                .split_whitespace()
                .skip(1)
                .find_map(|w| w.strip_prefix(l))
                .and_then(|v| v.parse().ok())
        };
        let wait = if cmd.busy {
            Wait::Until(self.now + Duration::from_secs(3))
        } else {
            match word.as_str() {
                "G0" | "G1" => Wait::PlannerSlot,
                "G28" => Wait::Until(self.now + Duration::from_millis(500)),
                "G4" => {
                    let ms = param('P').unwrap_or(0.0) + param('S').unwrap_or(0.0) * 1000.0;
                    Wait::Until(self.now + Duration::from_secs_f64(ms.clamp(0.0, 3.6e6) / 1000.0))
                }
                "M400" => Wait::PlannerEmpty,
                "M109" => {
                    self.hotend.target = param('S').or_else(|| param('R')).unwrap_or(0.0);
                    Wait::Heat { bed: false }
                }
                "M190" => {
                    self.bed.target = param('S').or_else(|| param('R')).unwrap_or(0.0);
                    Wait::Heat { bed: true }
                }
                _ => Wait::Until(self.now),
            }
        };
        if !matches!(wait, Wait::Heat { .. }) {
            self.next_keepalive = Some(self.now + KEEPALIVE);
        }
        self.executing = Some((cmd, wait, self.now));
    }

    fn wait_over(&mut self, wait: Wait) -> bool {
        while self.planner.front().is_some_and(|&t| t <= self.now) {
            self.planner.pop_front();
        }
        match wait {
            Wait::Until(t) => self.now >= t,
            Wait::PlannerSlot => self.planner.len() < self.cfg.planner,
            Wait::PlannerEmpty => self.planner.is_empty(),
            Wait::Heat { bed } => {
                let h = if bed { &self.bed } else { &self.hotend };
                (h.actual - h.target).abs() <= 0.5
            }
        }
    }

    fn complete(&mut self, cmd: &Queued) {
        let words: Vec<&str> = cmd.command.split_whitespace().collect();
        let word = words.first().copied().unwrap_or_default();
        let param = |l: char| -> Option<f64> {
            words
                .iter()
                .skip(1)
                .rev()
                .find_map(|w| w.strip_prefix(l))
                .and_then(|v| v.parse().ok())
        };
        let mut send_ok = !cmd.omit_ok;
        match word {
            "G0" | "G1" => {
                let start = self
                    .planner
                    .back()
                    .copied()
                    .unwrap_or(self.now)
                    .max(self.now);
                self.planner.push_back(start + self.cfg.move_time);
            }
            "M104" => self.hotend.target = param('S').unwrap_or(0.0),
            "M140" => self.bed.target = param('S').unwrap_or(0.0),
            "M105" => {
                let t = self.temperature_line();
                self.say(&format!("ok {t}"));
                send_ok = false;
            }
            "M114" => {
                let p = self.motion.position();
                self.say(&format!(
                    "X:{:.2} Y:{:.2} Z:{:.2} E:{:.2} Count X:0 Y:0 Z:0",
                    p.x, p.y, p.z, p.e
                ));
            }
            "M115" => {
                for l in self.m115() {
                    self.say(&l);
                }
            }
            "M503" => {
                for l in self.m503() {
                    self.say(&l);
                }
            }
            "M155" => {
                let s = param('S').unwrap_or(0.0);
                self.autoreport = (self.cfg.autoreport_temp && s > 0.0).then(|| {
                    let every = Duration::from_secs_f64(s.min(60.0));
                    (every, self.now + every)
                });
            }
            "M112" => {
                self.kill();
                return;
            }
            "G4" | "G21" | "G28" | "G90" | "G91" | "G92" | "M82" | "M83" | "M84" | "M106"
            | "M107" | "M109" | "M190" | "M400" | "M110" | "M73" | "M117" => {}
            _ => {
                let w = word.to_owned();
                self.say(&format!("echo:Unknown command: \"{w}\""));
            }
        }
        self.motion.apply(&cmd.command);
        self.commands_run += 1;
        if let Some((after, _)) = self.cfg.faults.drift {
            if self.commands_run == after {
                self.drift_since = Some(self.now);
            }
        }
        self.executed.push(Executed {
            line: cmd.line,
            command: cmd.command.clone(),
        });
        if send_ok {
            if self.cfg.advanced_ok {
                let planner_free = self.cfg.planner.saturating_sub(self.planner.len());
                let buffer_free = self.cfg.command_buffer.saturating_sub(self.queue.len() + 1);
                let mut ok = String::from("ok");
                if let Some(n) = cmd.line {
                    let _ = write!(ok, " N{n}");
                }
                let _ = write!(ok, " P{planner_free} B{buffer_free}");
                self.say(&ok);
            } else {
                self.say("ok");
            }
        }
    }

    fn kill(&mut self) {
        self.killed = true;
        self.hotend.target = 0.0;
        self.bed.target = 0.0;
        self.queue.clear();
        self.executing = None;
        self.say("Error:Printer halted. kill() called!");
    }

    fn m115(&self) -> Vec<String> {
        if let Some(lines) = &self.cfg.m115_override {
            return lines.clone();
        }
        let cap = |name: &str, on: bool| format!("Cap:{name}:{}", u8::from(on));
        vec![
            "FIRMWARE_NAME:Marlin 2.1.2.4 (DoseGate printer simulator) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0 MACHINE_TYPE:DoseGate SSE EXTRUDER_COUNT:1 UUID:cede2a2f-41a2-4748-9b12-c55c62f367ff".to_owned(),
            cap("SERIAL_XON_XOFF", false),
            cap("EEPROM", true),
            cap("AUTOREPORT_TEMP", self.cfg.autoreport_temp),
            cap("ADVANCED_OK", self.cfg.advanced_ok),
            cap("EMERGENCY_PARSER", self.cfg.emergency_parser),
            cap("THERMAL_PROTECTION", true),
        ]
    }

    fn m503(&self) -> Vec<String> {
        vec![
            "echo:; Steps per unit:".to_owned(),
            format!(
                "echo:  M92 X80.00 Y80.00 Z400.00 E{:.2}",
                self.cfg.steps_per_mm_e
            ),
            "echo:; Maximum feedrates (units/s):".to_owned(),
            "echo:  M203 X300.00 Y300.00 Z5.00 E25.00".to_owned(),
            "echo:; Hotend PID:".to_owned(),
            "echo:  M301 P22.20 I1.08 D114.00".to_owned(),
        ]
    }

    // ------------------------------------------------------------- heaters

    fn reported_hotend(&self) -> f64 {
        let drift = match (self.drift_since, self.cfg.faults.drift) {
            (Some(since), Some((_, rate))) => rate * self.now.saturating_sub(since).as_secs_f64(),
            _ => 0.0,
        };
        self.hotend.actual + drift
    }

    fn temperature_line(&self) -> String {
        format!(
            "T:{:.2} /{:.2} B:{:.2} /{:.2} @:0 B@:0",
            self.reported_hotend(),
            self.hotend.target,
            self.bed.actual,
            self.bed.target
        )
    }

    fn update_heaters(&mut self) {
        // Heaters move towards their targets (or ambient) at the configured rate; the model is
        // stepped at each call, which the drivers make at least once a second.
        let dt = self.now.saturating_sub(self.heat_clock).as_secs_f64();
        self.heat_clock = self.now;
        for h in [&mut self.hotend, &mut self.bed] {
            let goal = if h.target > 0.0 { h.target } else { AMBIENT_C };
            let step = self.cfg.heat_rate_c_per_s * dt;
            if h.actual < goal {
                h.actual = (h.actual + step).min(goal);
            } else {
                h.actual = (h.actual - step).max(goal);
            }
        }
    }

    fn reports(&mut self) {
        if let Some((every, next)) = self.autoreport {
            if self.now >= next && !self.killed {
                let t = self.temperature_line();
                self.say(&t);
                self.autoreport = Some((every, self.now + every));
            }
        }
        if let Some((_, Wait::Heat { .. }, since)) = &self.executing {
            let since = *since;
            let secs = self.now.saturating_sub(since).as_secs();
            if secs > self.heat_reports {
                self.heat_reports = secs;
                let t = self.temperature_line();
                self.say(&format!("{t} W:?"));
            }
        } else {
            self.heat_reports = 0;
        }
    }
}

/// The command as Marlin's parser reads it, in the log's normal form; text Marlin finds no
/// command in is kept (single-spaced) so it is answered `Unknown command`.
fn read_command(body: &str) -> String {
    normal_form(body).unwrap_or_else(|| body.split_whitespace().collect::<Vec<_>>().join(" "))
}
