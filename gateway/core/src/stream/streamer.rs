//! The streaming state machine: [`Streamer`].
//!
//! Owns line numbering, the send window, acknowledgement accounting, resend recovery, probes on
//! timeout, checkpoints, the firmware check and the stop path. It does no I/O and reads no clock:
//! the caller passes `now` (time since the stream began) and moves bytes.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::firmware::{Capabilities, FirmwareIdentity, answer_digest};
use super::frame::{CanonicalCommand, checksum, frame};
use super::monitor::{MonitorLimits, TemperatureMonitor, millis};
use super::reply::{MAX_REPLY_LEN, Position, Reply, parse_reply};
use super::{AbortReason, CompletionSummary, Heater, IdentityQuery, StreamError, StreamEvent};
use crate::policy::VerifiedProgram;

/// Most commands in one program.
pub const MAX_PROGRAM_COMMANDS: usize = 4_000_000;

/// One command of a program, with the virtual print's position after it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamCommand {
    /// Its line in the source G-code (for evidence).
    pub source_line: u32,
    /// The canonical command.
    pub command: CanonicalCommand,
    /// Logical position after it, as `M114` would report it; `None` if not modelled.
    pub after: Option<Position>,
}

/// A bounded, non-empty list of canonical commands.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamProgram {
    commands: Vec<StreamCommand>,
}

impl StreamProgram {
    /// The program a job streams: the commands of a [`VerifiedProgram`], with their source lines
    /// and the virtual print's positions (checked at every checkpoint).
    pub fn from_verified(program: &VerifiedProgram) -> Result<Self, StreamError> {
        let commands = program
            .commands()
            .iter()
            .map(|c| {
                Ok(StreamCommand {
                    source_line: c.source_line,
                    command: CanonicalCommand::new(c.text)?,
                    after: Some(Position {
                        x: c.after.x,
                        y: c.after.y,
                        z: c.after.z,
                        e: c.after.e,
                    }),
                })
            })
            .collect::<Result<Vec<_>, StreamError>>()?;
        Self::unverified(commands)
    }

    /// Wraps commands that did **not** go through the policy check: for the simulator's tests
    /// and the clearly labelled engineering mode only. Jobs use [`Self::from_verified`].
    pub fn unverified(commands: Vec<StreamCommand>) -> Result<Self, StreamError> {
        if commands.is_empty() {
            return Err(StreamError::EmptyProgram);
        }
        if commands.len() > MAX_PROGRAM_COMMANDS {
            return Err(StreamError::ProgramTooLarge {
                commands: commands.len(),
                max: MAX_PROGRAM_COMMANDS,
            });
        }
        Ok(Self { commands })
    }

    /// The commands.
    pub fn commands(&self) -> &[StreamCommand] {
        &self.commands
    }
}

/// The commissioning baseline of a firmware's identity: each digest, when present, must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FirmwareBaseline {
    /// Expected digest of the `M115` answer.
    pub m115_sha256: Option<[u8; 32]>,
    /// Expected digest of the `M503` answer.
    pub m503_sha256: Option<[u8; 32]>,
}

impl From<FirmwareIdentity> for FirmwareBaseline {
    fn from(id: FirmwareIdentity) -> Self {
        Self {
            m115_sha256: Some(id.m115_sha256),
            m503_sha256: Some(id.m503_sha256),
        }
    }
}

/// How the firmware's identity is checked after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirmwareCheck {
    /// Refuse to print unless `M115` and `M503` hash to the commissioning baseline (each digest
    /// the baseline holds).
    Baseline(FirmwareBaseline),
    /// Record the digests only (commissioning, engineering mode).
    RecordOnly,
}

impl FirmwareCheck {
    /// `Baseline` when `baseline` holds a digest, else `RecordOnly`.
    pub fn from_baseline(baseline: FirmwareBaseline) -> Self {
        if baseline.m115_sha256.is_some() || baseline.m503_sha256.is_some() {
            Self::Baseline(baseline)
        } else {
            Self::RecordOnly
        }
    }
}

/// Streaming parameters. The defaults suit Marlin 2 over USB.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Most lines in flight when the firmware reports `ADVANCED_OK` (one otherwise).
    pub max_lines_in_flight: usize,
    /// Most bytes in flight (the firmware's receive buffer, less one): Marlin's is 128.
    pub max_bytes_in_flight: usize,
    /// Silence while lines are in flight before a probe.
    pub ack_timeout: Duration,
    /// Probes in a row before giving up.
    pub max_probes: u32,
    /// How long to wait for the handshake's `ok`, per attempt.
    pub handshake_timeout: Duration,
    /// Handshake attempts.
    pub handshake_attempts: u32,
    /// Most resend requests for one line.
    pub max_resends_per_line: u32,
    /// Least quiet time after a resend request before going back (stale requests are dropped).
    pub quiesce: Duration,
    /// A `M400`+`M114` checkpoint after every this many program commands (and always at the end).
    pub checkpoint_every: usize,
    /// Largest accepted difference between a reported and an expected coordinate, mm.
    pub position_tolerance_mm: f64,
    /// `M105` polling interval when the firmware cannot auto-report.
    pub temperature_poll: Duration,
    /// Firmware identity check.
    pub firmware: FirmwareCheck,
    /// Temperature design space.
    pub monitor: MonitorLimits,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            max_lines_in_flight: 32,
            max_bytes_in_flight: 127,
            ack_timeout: Duration::from_secs(10),
            max_probes: 3,
            handshake_timeout: Duration::from_secs(2),
            handshake_attempts: 5,
            max_resends_per_line: 10,
            quiesce: Duration::from_millis(10),
            checkpoint_every: 2000,
            position_tolerance_mm: 0.02,
            temperature_poll: Duration::from_secs(2),
            firmware: FirmwareCheck::RecordOnly,
            monitor: MonitorLimits::default(),
        }
    }
}

/// Bytes for the adapter to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// Write these bytes (one or more framed lines).
    Line(Vec<u8>),
    /// Write these bytes at once, ahead of anything queued (`M112` to the emergency parser).
    Emergency(Vec<u8>),
    /// Pulse DTR to reset the board (the stop path when there is no emergency parser): a reset
    /// Marlin board boots with its heaters and motors off.
    ResetBoard,
}

/// How far the stream has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Program commands acknowledged.
    pub commands_acked: usize,
    /// Program commands in all.
    pub commands_total: usize,
    /// Resend requests honoured.
    pub resends: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Identify(IdentityQuery),
    AutoReport,
    TemperaturePoll,
    Program(usize),
    Drain,
    Checkpoint(usize),
}

#[derive(Debug, Clone)]
struct SentLine {
    purpose: Purpose,
    bytes: Vec<u8>,
    first_sent: Option<Duration>,
    retransmitted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake {
        attempt: u32,
        deadline: Duration,
        spoiled: bool,
    },
    Identify,
    Streaming,
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Recovery {
    from: u32,
    quiet_until: Duration,
}

/// The sans-IO streamer; see the module documentation and `STATE.md`.
#[derive(Debug)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent protocol flags, each with its own meaning"
)]
pub struct Streamer {
    cfg: StreamConfig,
    program: StreamProgram,
    phase: Phase,
    caps: Capabilities,
    window_lines: usize,
    // Numbering: lines `acked..send_from` are in flight; `send_from..next_n` were discarded by the
    // firmware and go out again; `history` holds every line from `history_base` to `next_n`.
    history: VecDeque<SentLine>,
    history_base: u32,
    next_n: u32,
    send_from: u32,
    acked: u32,
    pending: VecDeque<Purpose>,
    next_program: usize,
    commands_acked: usize,
    final_queued: bool,
    // Acknowledgements.
    recovery: Option<Recovery>,
    resend_counts: BTreeMap<u32, u32>,
    resends: u64,
    lines_transmitted: u64,
    last_activity: Duration,
    probes: u32,
    min_rtt: Option<Duration>,
    // Firmware identity.
    answer: Vec<String>,
    m115: Vec<String>,
    // Checkpoints awaiting their M114 report, in line order.
    checkpoints: VecDeque<usize>,
    checkpoints_passed: u32,
    final_checkpoint_passed: bool,
    report_deadline: Option<Duration>,
    // Temperatures.
    monitor: TemperatureMonitor,
    next_poll: Option<Duration>,
    poll_in_flight: bool,
    // I/O queues.
    rx: Vec<u8>,
    tx: VecDeque<Transmit>,
    events: VecDeque<StreamEvent>,
    outcome: Option<Result<CompletionSummary, AbortReason>>,
    program_started: bool,
}

impl Streamer {
    /// A streamer for `program`; it starts with the `M110` handshake.
    pub fn new(program: StreamProgram, cfg: StreamConfig, now: Duration) -> Self {
        let monitor = TemperatureMonitor::new(cfg.monitor);
        let mut s = Self {
            phase: Phase::Handshake {
                attempt: 0,
                deadline: now,
                spoiled: false,
            },
            caps: Capabilities::default(),
            window_lines: 1,
            history: VecDeque::new(),
            history_base: 1,
            next_n: 1,
            send_from: 1,
            acked: 1,
            pending: VecDeque::new(),
            next_program: 0,
            commands_acked: 0,
            final_queued: false,
            recovery: None,
            resend_counts: BTreeMap::new(),
            resends: 0,
            lines_transmitted: 0,
            last_activity: now,
            probes: 0,
            min_rtt: None,
            answer: Vec::new(),
            m115: Vec::new(),
            checkpoints: VecDeque::new(),
            checkpoints_passed: 0,
            final_checkpoint_passed: false,
            report_deadline: None,
            monitor,
            next_poll: None,
            poll_in_flight: false,
            rx: Vec::new(),
            tx: VecDeque::new(),
            events: VecDeque::new(),
            outcome: None,
            program_started: false,
            cfg,
            program,
        };
        s.send_handshake(now);
        s
    }

    /// Feeds bytes read from the port.
    pub fn handle_input(&mut self, bytes: &[u8], now: Duration) {
        for &b in bytes {
            if self.outcome.is_some() {
                return;
            }
            match b {
                b'\n' => {
                    let line = String::from_utf8_lossy(&self.rx).into_owned();
                    self.rx.clear();
                    self.handle_line(&line, now);
                }
                b'\r' => {}
                _ if self.rx.len() >= MAX_REPLY_LEN => {
                    let len = self.rx.len();
                    self.abort(AbortReason::ReplyTooLong { len }, now);
                }
                _ => self.rx.push(b),
            }
        }
        self.after_event(now);
    }

    /// Lets deadlines (probes, recovery, heat-up, grace, polling) take effect at `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        if self.outcome.is_some() {
            return;
        }
        if let Phase::Handshake {
            attempt, deadline, ..
        } = self.phase
        {
            if now >= deadline {
                if attempt >= self.cfg.handshake_attempts {
                    self.abort(AbortReason::NoHandshake { attempts: attempt }, now);
                    return;
                }
                self.send_handshake(now);
            }
            return;
        }
        if let Some(r) = self.recovery {
            if now >= r.quiet_until {
                // Plain oks still owed for lines below `from` are not counted against later
                // lines: one early ack can open the one-line window a line early, which the
                // receive buffer absorbs; discarding a genuine ok would stall the stream.
                self.recovery = None;
            }
        } else if self.acked < self.send_from
            && now.saturating_sub(self.last_activity) >= self.cfg.ack_timeout
        {
            self.probe(now);
            if self.outcome.is_some() {
                return;
            }
        }
        if self.report_deadline.is_some_and(|d| now >= d) && !self.checkpoints.is_empty() {
            // A checkpoint's M114 was acknowledged long ago, yet no position was reported.
            let after_command = self.checkpoints.front().copied().unwrap_or_default();
            self.abort(AbortReason::CheckpointUnanswered { after_command }, now);
            return;
        }
        if self.phase == Phase::Streaming && !self.caps.autoreport_temp {
            if let Some(due) = self.next_poll {
                if now >= due && !self.poll_in_flight {
                    self.pending.push_front(Purpose::TemperaturePoll);
                    self.poll_in_flight = true;
                    self.next_poll = Some(now + self.cfg.temperature_poll);
                }
            }
        }
        self.after_event(now);
    }

    /// The port closed or failed.
    pub fn handle_disconnect(&mut self, now: Duration) {
        self.abort(
            AbortReason::Disconnected {
                commands_acked: self.commands_acked,
            },
            now,
        );
    }

    /// Stops the job now (operator request): the stop path bypasses the queue.
    pub fn stop(&mut self, now: Duration) {
        self.abort(AbortReason::Stopped, now);
    }

    /// The next thing to write, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.tx.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    /// When to call [`Self::handle_timeout`] next (`None`: only input can move things on).
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.outcome.is_some() {
            return None;
        }
        if let Phase::Handshake { deadline, .. } = self.phase {
            return Some(deadline);
        }
        let ack = (self.recovery.is_none() && self.acked < self.send_from)
            .then(|| self.last_activity + self.cfg.ack_timeout);
        let report = self
            .report_deadline
            .filter(|_| !self.checkpoints.is_empty());
        let recovery = self.recovery.map(|r| r.quiet_until);
        let poll =
            if self.phase == Phase::Streaming && !self.caps.autoreport_temp && !self.poll_in_flight
            {
                self.next_poll
            } else {
                None
            };
        [ack, recovery, poll, report, self.monitor.deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The outcome, once the stream has ended.
    pub fn outcome(&self) -> Option<&Result<CompletionSummary, AbortReason>> {
        self.outcome.as_ref()
    }

    /// How far the stream has got.
    pub fn progress(&self) -> Progress {
        Progress {
            commands_acked: self.commands_acked,
            commands_total: self.program.commands.len(),
            resends: self.resends,
        }
    }

    /// What the firmware reported it can do (empty until `M115` was answered).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    // ---------------------------------------------------------------- replies

    fn handle_line(&mut self, line: &str, now: Duration) {
        let reply = parse_reply(line);
        // Signs of life that hold off a probe: anything but temperature reports, which count only
        // while the oldest line in flight is a blocking heat-up whose heater is still off target
        // (Marlin sends nothing else then). A probe is harmless: line numbers reject duplicates.
        let waiting_for = self
            .line(self.acked)
            .and_then(|l| match l.purpose {
                Purpose::Program(i) => self.program.commands.get(i),
                _ => None,
            })
            .and_then(|c| match c.command.word() {
                "M109" => Some(Heater::Hotend),
                "M190" => Some(Heater::Bed),
                _ => None,
            });
        let heating = match (&reply, waiting_for) {
            (Reply::Temperatures(t), Some(Heater::Hotend)) => {
                t.hotend.is_some_and(|(a, tg)| (a - tg).abs() > 1.0)
            }
            (Reply::Temperatures(t), Some(Heater::Bed)) => {
                t.bed.is_some_and(|(a, tg)| (a - tg).abs() > 1.0)
            }
            _ => false,
        };
        // `wait` says the firmware is idle with an empty buffer: no sign of progress.
        if heating || !matches!(reply, Reply::Temperatures(_) | Reply::Wait) {
            self.last_activity = now;
        }
        if let Phase::Handshake { spoiled, .. } = &mut self.phase {
            match reply {
                Reply::Ok { .. } if !*spoiled => self.handshake_done(now),
                Reply::Resend(_) | Reply::LineError { .. } => *spoiled = true,
                _ => {}
            }
            return;
        }
        match reply {
            Reply::Ok {
                line,
                temperatures,
                position,
                ..
            } => {
                if let Some(t) = temperatures {
                    self.monitor
                        .report(t.hotend.map(|h| h.0), t.bed.map(|b| b.0), now);
                }
                if let Some(p) = position {
                    self.on_position(p, now);
                    if self.outcome.is_some() {
                        return;
                    }
                }
                self.on_ok(line, temperatures.is_some(), now);
            }
            Reply::Resend(n) => self.on_resend(n, now),
            Reply::LineError { .. } | Reply::Busy => {}
            Reply::Wait => {
                // Idle while lines are counted in flight: a line or its ok was lost. Probe now.
                if self.recovery.is_none() && self.acked < self.send_from {
                    self.probe(now);
                }
            }
            Reply::Fatal(message) => {
                let message = message.chars().take(120).collect();
                self.abort(AbortReason::FirmwareHalted { message }, now);
            }
            Reply::Temperatures(t) => {
                self.monitor
                    .report(t.hotend.map(|h| h.0), t.bed.map(|b| b.0), now);
            }
            Reply::Position(p) => self.on_position(p, now),
            Reply::Start => {
                self.abort(
                    AbortReason::FirmwareRestarted {
                        commands_acked: self.commands_acked,
                    },
                    now,
                );
            }
            Reply::Text(text) => {
                if self.phase == Phase::Identify && self.answer.len() < 256 {
                    self.answer.push(text);
                }
            }
        }
    }

    /// Sends the oldest unacknowledged line again; line numbers make a duplicate harmless.
    fn probe(&mut self, now: Duration) {
        if self.probes >= self.cfg.max_probes {
            let waited_ms = millis(now.saturating_sub(self.last_activity));
            let reason = AbortReason::Unresponsive {
                line: self.acked,
                waited_ms,
                probes: self.probes,
            };
            self.abort(reason, now);
            return;
        }
        self.probes += 1;
        self.events
            .push_back(StreamEvent::Timeout { line: self.acked });
        self.send_from = self.acked;
        self.last_activity = now;
    }

    fn on_ok(&mut self, line: Option<u32>, answers_m105: bool, now: Duration) {
        self.probes = 0;
        if self.caps.advanced_ok {
            // Marlin's `ok` names the line it acknowledges, except after a resend request and
            // in `M105`'s own `ok T:…` answer.
            let Some(k) = line else {
                let oldest = self.line(self.acked).map(|l| l.purpose);
                if answers_m105
                    && self.acked < self.send_from
                    && oldest == Some(Purpose::TemperaturePoll)
                {
                    self.ack_oldest(now);
                }
                return;
            };
            if k < self.acked {
                return; // stale: a duplicate, or already counted when a resend request named a later line
            }
            if k >= self.next_n {
                let highest_sent = self.next_n.checked_sub(1);
                self.abort(
                    AbortReason::AckForUnsentLine {
                        line: k,
                        highest_sent,
                    },
                    now,
                );
                return;
            }
            // Marlin accepts lines only in order, so every line up to `k` was accepted. If `k`
            // lies beyond `send_from`, the resend request that sent us back was stale.
            self.catch_up_to(k + 1, now);
            if self.send_from <= k {
                self.send_from = k + 1;
            }
            if let Some(r) = &mut self.recovery {
                r.from = r.from.max(k + 1);
            }
            return;
        }
        // During recovery oks answer resend requests or lines already counted as received.
        if self.recovery.is_none() && self.acked < self.send_from {
            self.ack_oldest(now);
        }
    }

    fn on_resend(&mut self, n: u32, now: Duration) {
        let quiet_until = now + quiesce(&self.cfg, self.min_rtt);
        if let Some(r) = self.recovery {
            if n == r.from {
                // A stale line that reached the firmware after its flush: the same request again.
                if let Some(r) = &mut self.recovery {
                    r.quiet_until = quiet_until;
                }
                return;
            }
            if n < r.from || n > self.next_n {
                self.abort(
                    AbortReason::ConflictingResend {
                        expected: r.from,
                        requested: n,
                    },
                    now,
                );
                return;
            }
        } else if n < self.acked || n > self.next_n {
            let (oldest_unacked, next_to_send) = (self.acked, self.send_from);
            self.abort(
                AbortReason::ResendOutOfWindow {
                    requested: n,
                    oldest_unacked,
                    next_to_send,
                },
                now,
            );
            return;
        }
        // The firmware has every line below `n` and discarded the rest of its buffer.
        let attempt = {
            let c = self.resend_counts.entry(n).or_insert(0);
            *c += 1;
            *c
        };
        self.resends += 1;
        self.events
            .push_back(StreamEvent::ResendRequested { line: n, attempt });
        if attempt > self.cfg.max_resends_per_line {
            self.abort(
                AbortReason::ResendLimitExceeded {
                    line: n,
                    attempts: attempt,
                },
                now,
            );
            return;
        }
        self.catch_up_to(n, now);
        self.send_from = n;
        self.recovery = Some(Recovery {
            from: n,
            quiet_until,
        });
    }

    /// Lines below `n` reached the firmware (it asks for `n` next): count them as acknowledged.
    fn catch_up_to(&mut self, n: u32, now: Duration) {
        while self.acked < n && self.outcome.is_none() {
            self.ack_oldest(now);
        }
    }

    fn on_position(&mut self, p: Position, now: Duration) {
        let Some(index) = self.checkpoints.pop_front() else {
            return;
        };
        let Some(cmd) = self.program.commands.get(index) else {
            return;
        };
        if let Some(want) = cmd.after {
            let tol = self.cfg.position_tolerance_mm;
            for (axis, expected, reported) in [
                ('X', want.x, p.x),
                ('Y', want.y, p.y),
                ('Z', want.z, p.z),
                ('E', want.e, p.e),
            ] {
                if (expected - reported).abs() > tol {
                    let source_line = cmd.source_line;
                    self.abort(
                        AbortReason::CheckpointMismatch {
                            after_command: index,
                            source_line,
                            axis,
                            expected,
                            reported,
                        },
                        now,
                    );
                    return;
                }
            }
        }
        self.checkpoints_passed += 1;
        self.report_deadline = None;
        if index + 1 == self.program.commands.len() && self.checkpoints.is_empty() {
            self.final_checkpoint_passed = true;
        }
        self.events.push_back(StreamEvent::CheckpointPassed {
            after_command: index,
            x: p.x,
            y: p.y,
            z: p.z,
            e: p.e,
        });
    }

    fn ack_oldest(&mut self, now: Duration) {
        let n = self.acked;
        let Some(line) = self.line(n).cloned() else {
            self.acked += 1;
            return;
        };
        self.acked += 1;
        if let (Some(t), false) = (line.first_sent, line.retransmitted) {
            let rtt = now.saturating_sub(t);
            self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        }
        match line.purpose {
            Purpose::Program(i) => {
                self.commands_acked = i + 1;
                if let Some(cmd) = self.program.commands.get(i) {
                    set_point(&mut self.monitor, &cmd.command, now);
                }
            }
            Purpose::Identify(IdentityQuery::M115) => {
                self.m115 = std::mem::take(&mut self.answer);
                self.caps = Capabilities::from_m115(&self.m115);
            }
            Purpose::Identify(IdentityQuery::M503) => {
                let m503 = std::mem::take(&mut self.answer);
                self.identified(&m503, now);
            }
            Purpose::TemperaturePoll => self.poll_in_flight = false,
            Purpose::Checkpoint(i) => {
                // Marlin reports before it acknowledges; allow for acknowledgements inferred
                // from a later resend request, which can precede execution.
                if self.report_deadline.is_none() && self.checkpoints.contains(&i) {
                    self.report_deadline = Some(now + self.cfg.ack_timeout);
                }
            }
            Purpose::AutoReport if self.phase == Phase::Identify => self.start_streaming(now),
            Purpose::AutoReport | Purpose::Drain => {}
        }
        while self.history_base < self.acked && self.history.pop_front().is_some() {
            self.history_base += 1;
        }
    }

    // ---------------------------------------------------------------- phases

    fn send_handshake(&mut self, now: Duration) {
        let attempt = match self.phase {
            Phase::Handshake { attempt, .. } => attempt + 1,
            _ => 1,
        };
        self.phase = Phase::Handshake {
            attempt,
            deadline: now + self.cfg.handshake_timeout,
            spoiled: false,
        };
        let body = "N0 M110 N0";
        let frame = format!("{body}*{}\n", checksum(body.as_bytes()));
        self.tx.push_back(Transmit::Line(frame.into_bytes()));
    }

    fn handshake_done(&mut self, now: Duration) {
        let attempts = match self.phase {
            Phase::Handshake { attempt, .. } => attempt,
            _ => 0,
        };
        self.events.push_back(StreamEvent::Connected { attempts });
        self.phase = Phase::Identify;
        self.last_activity = now;
        self.pending
            .push_back(Purpose::Identify(IdentityQuery::M115));
        self.pending
            .push_back(Purpose::Identify(IdentityQuery::M503));
    }

    fn identified(&mut self, m503: &[String], now: Duration) {
        let identity = FirmwareIdentity {
            m115_sha256: answer_digest(&self.m115),
            m503_sha256: answer_digest(m503),
        };
        let baseline_checked = match &self.cfg.firmware {
            FirmwareCheck::RecordOnly => false,
            FirmwareCheck::Baseline(base) => {
                for (query, want, got) in [
                    (IdentityQuery::M115, base.m115_sha256, identity.m115_sha256),
                    (IdentityQuery::M503, base.m503_sha256, identity.m503_sha256),
                ] {
                    let Some(want) = want else { continue };
                    if want != got {
                        let reason = AbortReason::FirmwareMismatch {
                            query,
                            expected_sha256: hex::encode(want),
                            got_sha256: hex::encode(got),
                        };
                        self.abort(reason, now);
                        return;
                    }
                }
                true
            }
        };
        self.events.push_back(StreamEvent::FirmwareIdentified {
            firmware_name: self.caps.firmware_name.clone(),
            advanced_ok: self.caps.advanced_ok,
            autoreport_temp: self.caps.autoreport_temp,
            emergency_parser: self.caps.emergency_parser,
            m115_sha256: hex::encode(identity.m115_sha256),
            m503_sha256: hex::encode(identity.m503_sha256),
            baseline_checked,
        });
        if self.caps.autoreport_temp {
            // Part of connecting, as every host does it: the program starts after its `ok`.
            self.pending.push_back(Purpose::AutoReport);
        } else {
            self.start_streaming(now);
        }
    }

    fn start_streaming(&mut self, now: Duration) {
        self.window_lines = if self.caps.advanced_ok {
            self.cfg.max_lines_in_flight.max(1)
        } else {
            1
        };
        if !self.caps.autoreport_temp {
            self.next_poll = Some(now);
        }
        self.phase = Phase::Streaming;
        self.events.push_back(StreamEvent::StreamingStarted {
            lines_in_flight: self.window_lines,
        });
    }

    fn peek_purpose(&self) -> Option<Purpose> {
        if let Some(p) = self.pending.front() {
            return Some(*p);
        }
        (self.phase == Phase::Streaming && self.next_program < self.program.commands.len())
            .then_some(Purpose::Program(self.next_program))
    }

    fn take_purpose(&mut self) {
        if self.pending.pop_front().is_some() {
            return;
        }
        let len = self.program.commands.len();
        let i = self.next_program;
        self.next_program += 1;
        let every = self.cfg.checkpoint_every;
        if i + 1 == len {
            // The end: wait for every move to finish (M400), then compare.
            self.final_queued = true;
            self.pending
                .extend([Purpose::Drain, Purpose::Checkpoint(i)]);
        } else if every > 0 && (i + 1).is_multiple_of(every) {
            // Mid-print: `M114` reports the logical position after every command the firmware
            // has processed (planned), which is what the virtual print predicts; no `M400`, so
            // the planner never drains (no stop, no blob) and no round trip is added.
            self.pending.push_back(Purpose::Checkpoint(i));
        }
    }

    fn command_for(&self, purpose: Purpose) -> Option<CanonicalCommand> {
        let text = match purpose {
            Purpose::Identify(IdentityQuery::M115) => "M115",
            Purpose::Identify(IdentityQuery::M503) => "M503",
            Purpose::AutoReport => "M155 S1",
            Purpose::TemperaturePoll => "M105",
            Purpose::Drain => "M400",
            Purpose::Checkpoint(_) => "M114",
            Purpose::Program(i) => return self.program.commands.get(i).map(|c| c.command.clone()),
        };
        CanonicalCommand::new(text).ok()
    }

    fn line(&self, n: u32) -> Option<&SentLine> {
        n.checked_sub(self.history_base)
            .and_then(|i| self.history.get(i as usize))
    }

    /// Sends what the window allows.
    fn fill_window(&mut self, now: Duration) {
        if self.recovery.is_some()
            || self.outcome.is_some()
            || matches!(self.phase, Phase::Handshake { .. })
        {
            return;
        }
        let window = if self.phase == Phase::Streaming {
            self.window_lines
        } else {
            1
        };
        let was_idle = self.acked == self.send_from;
        let mut batch = Vec::new();
        loop {
            let in_flight = (self.send_from - self.acked) as usize;
            if in_flight >= window {
                break;
            }
            let in_flight_bytes: usize = (self.acked..self.send_from)
                .filter_map(|n| self.line(n))
                .map(|l| l.bytes.len())
                .sum();
            if self.send_from < self.next_n {
                let n = self.send_from;
                let Some(len) = self.line(n).map(|l| l.bytes.len()) else {
                    break;
                };
                if in_flight > 0 && in_flight_bytes + len > self.cfg.max_bytes_in_flight {
                    break;
                }
                let base = self.history_base;
                if let Some(l) = n
                    .checked_sub(base)
                    .and_then(|i| self.history.get_mut(i as usize))
                {
                    l.retransmitted = true;
                    batch.extend_from_slice(&l.bytes);
                }
                self.send_from += 1;
                self.lines_transmitted += 1;
                continue;
            }
            let Some(purpose) = self.peek_purpose() else {
                break;
            };
            let Some(cmd) = self.command_for(purpose) else {
                break;
            };
            let bytes = frame(self.next_n, &cmd);
            if in_flight > 0 && in_flight_bytes + bytes.len() > self.cfg.max_bytes_in_flight {
                break;
            }
            self.take_purpose();
            if let Purpose::Program(_) = purpose {
                self.program_started = true;
            }
            if let Purpose::Checkpoint(i) = purpose {
                self.checkpoints.push_back(i);
            }
            batch.extend_from_slice(&bytes);
            self.history.push_back(SentLine {
                purpose,
                bytes,
                first_sent: Some(now),
                retransmitted: false,
            });
            self.next_n += 1;
            self.send_from += 1;
            self.lines_transmitted += 1;
        }
        if !batch.is_empty() {
            if was_idle {
                // The silence that counts towards a probe starts when something is in flight.
                self.last_activity = now;
            }
            self.tx.push_back(Transmit::Line(batch));
        }
    }

    fn after_event(&mut self, now: Duration) {
        if self.outcome.is_some() {
            return;
        }
        if self.phase == Phase::Streaming {
            if let Some(reason) = self.monitor.check(now) {
                self.abort(reason, now);
                return;
            }
            if self.final_queued
                && self.final_checkpoint_passed
                && self.acked == self.next_n
                && self.recovery.is_none()
            {
                let summary = CompletionSummary {
                    commands: self.program.commands.len(),
                    lines_transmitted: self.lines_transmitted,
                    resends: self.resends,
                    checkpoints: self.checkpoints_passed,
                };
                self.phase = Phase::Done;
                self.events
                    .push_back(StreamEvent::Completed(summary.clone()));
                self.outcome = Some(Ok(summary));
                return;
            }
        }
        self.fill_window(now);
    }

    fn abort(&mut self, reason: AbortReason, _now: Duration) {
        if self.outcome.is_some() {
            return;
        }
        if self.program_started {
            self.tx.clear();
            if self.caps.emergency_parser {
                self.tx.push_back(Transmit::Emergency(b"M112\n".to_vec()));
            } else {
                self.tx.push_back(Transmit::ResetBoard);
            }
        }
        self.phase = Phase::Done;
        self.events.push_back(StreamEvent::Aborted(reason.clone()));
        self.outcome = Some(Err(reason));
    }
}

fn quiesce(cfg: &StreamConfig, min_rtt: Option<Duration>) -> Duration {
    let rtt = min_rtt.unwrap_or_default().min(Duration::from_millis(500));
    cfg.quiesce.max(rtt * 2)
}

fn set_point(monitor: &mut TemperatureMonitor, cmd: &CanonicalCommand, now: Duration) {
    let heater = match cmd.word() {
        "M104" | "M109" => Heater::Hotend,
        "M140" | "M190" => Heater::Bed,
        _ => return,
    };
    if let Some(s) = cmd.param('S').or_else(|| cmd.param('R')) {
        monitor.set_point(heater, s, now);
    }
}
