//! JCAMP-DX (IUPAC; McDonald & Wilks 1988, Lampen et al. 1999) reader for one-block IR, NIR and
//! Raman spectra.
//!
//! Supported: `##XYDATA=(X++(Y..Y))` in AFFN (free-format decimals) and in the compressed ASDF forms
//! — SQZ (`@A-Ia-i`), DIF (`%J-Rj-r`) with the Y-check value that repeats the last ordinate of a
//! line ending in DIF, DUP (`S-Zs`) and PAC — and `##XYPOINTS=(XY..XY)` in AFFN. Abscissae of
//! `XYDATA` are `FIRSTX + i·(LASTX−FIRSTX)/(NPOINTS−1)`; every line's leading X is checked against
//! that grid, and the ordinate count against `NPOINTS`. Ordinates are multiplied by `YFACTOR`.
//! `XUNITS` must be `1/CM` or `NANOMETERS`; anything else is refused rather than converted.
//!
//! Not supported, and refused with a reason: multi-block files (`##BLOCKS`), NTUPLES, missing
//! values (`?`). It does no I/O: the caller passes the text (at most [`MAX_JCAMP_BYTES`]).

use super::{Axis, AxisUnit, MAX_POINTS, Spectrum, SpectrumError};

/// Largest JCAMP-DX text accepted, bytes.
pub const MAX_JCAMP_BYTES: usize = 8 << 20;

/// Why a JCAMP-DX file was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JcampError {
    /// Larger than [`MAX_JCAMP_BYTES`].
    #[error("JCAMP-DX text of {len} bytes exceeds the cap of {MAX_JCAMP_BYTES}")]
    TooLarge {
        /// Length in bytes.
        len: usize,
    },
    /// A required label is absent.
    #[error("required label ##{label}= is missing")]
    MissingLabel {
        /// The label.
        label: &'static str,
    },
    /// A numeric label's value does not parse.
    #[error("##{label}={value:?} is not a valid number")]
    BadLabelValue {
        /// The label.
        label: &'static str,
        /// The value (truncated).
        value: String,
    },
    /// A form this reader does not accept.
    #[error("unsupported JCAMP-DX content: {what}")]
    Unsupported {
        /// What was found.
        what: String,
    },
    /// A character that is not part of AFFN or ASDF.
    #[error("line {line}: unexpected character {ch:?}")]
    BadCharacter {
        /// 1-based line number.
        line: usize,
        /// The character.
        ch: char,
    },
    /// A DIF or DUP token with no value before it.
    #[error("line {line}: DIF/DUP token with no preceding value")]
    NoPrecedingValue {
        /// 1-based line number.
        line: usize,
    },
    /// The Y-check value at the start of a line does not repeat the previous line's last value.
    #[error("line {line}: Y-check value {got} differs from the previous ordinate {expected}")]
    YCheck {
        /// 1-based line number.
        line: usize,
        /// The previous line's last ordinate.
        expected: f64,
        /// The check value found.
        got: f64,
    },
    /// A line's X does not fall on the abscissa grid.
    #[error("line {line}: X = {got} but ordinate {index} lies at {expected}")]
    XCheck {
        /// 1-based line number.
        line: usize,
        /// Index of the line's first ordinate.
        index: usize,
        /// Grid abscissa.
        expected: f64,
        /// X written on the line.
        got: f64,
    },
    /// The number of points decoded differs from `NPOINTS`.
    #[error("{got} points decoded, ##NPOINTS={expected}")]
    PointCount {
        /// `NPOINTS`.
        expected: usize,
        /// Decoded.
        got: usize,
    },
    /// The decoded spectrum is not valid.
    #[error("spectrum: {source}")]
    Spectrum {
        /// The problem.
        #[source]
        source: SpectrumError,
    },
}

#[derive(Debug, Default)]
struct Labels {
    xunits: Option<String>,
    firstx: Option<String>,
    lastx: Option<String>,
    npoints: Option<String>,
    xfactor: Option<String>,
    yfactor: Option<String>,
}

fn normalise_label(raw: &str) -> String {
    raw.chars()
        .filter(|c| !matches!(c, ' ' | '-' | '/' | '_'))
        .flat_map(char::to_uppercase)
        .collect()
}

fn label_number(label: &'static str, value: Option<&String>) -> Result<f64, JcampError> {
    let value = value.ok_or(JcampError::MissingLabel { label })?;
    match value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(JcampError::BadLabelValue {
            label,
            value: value.chars().take(32).collect(),
        }),
    }
}

fn optional_factor(label: &'static str, value: Option<&String>) -> Result<f64, JcampError> {
    if value.is_some() {
        label_number(label, value)
    } else {
        Ok(1.0)
    }
}

fn axis_unit(value: Option<&String>) -> Result<AxisUnit, JcampError> {
    let value = value.ok_or(JcampError::MissingLabel { label: "XUNITS" })?;
    match normalise_label(value).as_str() {
        "1CM" | "CM1" | "CM^1" | "WAVENUMBERS" => Ok(AxisUnit::PerCentimetre),
        "NANOMETERS" | "NANOMETRES" | "NM" => Ok(AxisUnit::Nanometre),
        other => Err(JcampError::Unsupported {
            what: format!("XUNITS {}", other.chars().take(32).collect::<String>()),
        }),
    }
}

/// A token of an AFFN/ASDF data line.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Token {
    /// An absolute value (AFFN or SQZ).
    Abs(f64),
    /// A difference from the previous ordinate (DIF).
    Dif(f64),
    /// The previous token applies this many times in total (DUP).
    Dup(u32),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Affn,
    Sqz,
    Dif,
    Dup,
}

fn finish(kind: Kind, text: &str, line: usize, out: &mut Vec<Token>) -> Result<(), JcampError> {
    let bad = || JcampError::BadCharacter {
        line,
        ch: text.chars().next().unwrap_or(' '),
    };
    match kind {
        Kind::Affn => {
            let v: f64 = text.parse().map_err(|_| bad())?;
            out.push(Token::Abs(v));
        }
        Kind::Sqz | Kind::Dif => {
            let mut chars = text.chars();
            let lead = chars.next().ok_or_else(bad)?;
            let (digit, negative) = match lead {
                '@' | '%' => (0, false),
                'A'..='I' => (u32::from(lead) - u32::from('A') + 1, false),
                'a'..='i' => (u32::from(lead) - u32::from('a') + 1, true),
                'J'..='R' => (u32::from(lead) - u32::from('J') + 1, false),
                'j'..='r' => (u32::from(lead) - u32::from('j') + 1, true),
                _ => return Err(bad()),
            };
            let rest: String = chars.collect();
            let magnitude: f64 = format!("{digit}{rest}").parse().map_err(|_| bad())?;
            let v = if negative { -magnitude } else { magnitude };
            out.push(if kind == Kind::Sqz {
                Token::Abs(v)
            } else {
                Token::Dif(v)
            });
        }
        Kind::Dup => {
            let mut chars = text.chars();
            let lead = chars.next().ok_or_else(bad)?;
            let digit = match lead {
                'S'..='Z' => u32::from(lead) - u32::from('S') + 1,
                's' => 9,
                _ => return Err(bad()),
            };
            let rest: String = chars.collect();
            let count: u32 = format!("{digit}{rest}").parse().map_err(|_| bad())?;
            out.push(Token::Dup(count));
        }
    }
    Ok(())
}

/// Splits one data line into tokens.
fn tokenize(text: &str, line: usize) -> Result<Vec<Token>, JcampError> {
    let mut out = Vec::new();
    let mut current: Option<(Kind, String)> = None;
    let chars: Vec<char> = text.chars().collect();
    for (i, &ch) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let start = match ch {
            ' ' | '\t' | ',' | ';' => None,
            '0'..='9' | '.' => {
                if let Some((_, s)) = current.as_mut() {
                    s.push(ch);
                    continue;
                }
                Some(Kind::Affn)
            }
            'E' | 'e'
                if matches!(current, Some((Kind::Affn, _))) && matches!(next, Some('+' | '-')) =>
            {
                if let Some((_, s)) = current.as_mut() {
                    s.push(ch);
                }
                continue;
            }
            '+' | '-' => {
                if let Some((Kind::Affn, s)) = current.as_mut() {
                    if s.ends_with(['E', 'e']) {
                        s.push(ch);
                        continue;
                    }
                }
                Some(Kind::Affn)
            }
            '@' | 'A'..='I' | 'a'..='i' => Some(Kind::Sqz),
            '%' | 'J'..='R' | 'j'..='r' => Some(Kind::Dif),
            'S'..='Z' | 's' => Some(Kind::Dup),
            _ => return Err(JcampError::BadCharacter { line, ch }),
        };
        if let Some((kind, s)) = current.take() {
            finish(kind, &s, line, &mut out)?;
        }
        if let Some(kind) = start {
            let mut s = String::new();
            if ch != '+' {
                s.push(ch);
            }
            current = Some((kind, s));
        }
    }
    if let Some((kind, s)) = current.take() {
        finish(kind, &s, line, &mut out)?;
    }
    Ok(out)
}

/// Decoder state for `(X++(Y..Y))` lines.
#[derive(Debug, Default)]
struct XyData {
    ys: Vec<f64>,
    /// The previous line ended in DIF form, so this line starts with a Y-check value.
    check_pending: bool,
    line_xs: Vec<(usize, usize, f64)>,
}

impl XyData {
    fn line(&mut self, text: &str, line: usize) -> Result<(), JcampError> {
        let tokens = tokenize(text, line)?;
        let mut iter = tokens.into_iter();
        let Some(Token::Abs(x)) = iter.next() else {
            return Ok(());
        };
        let mut skip_check = self.check_pending;
        let mut last: Option<Token> = None;
        let mut line_start = self.ys.len();
        for token in iter {
            if self.ys.len() > MAX_POINTS {
                return Err(JcampError::Spectrum {
                    source: SpectrumError::BadLength { len: self.ys.len() },
                });
            }
            match token {
                Token::Abs(v) => {
                    if skip_check {
                        skip_check = false;
                        let expected = self.ys.last().copied().unwrap_or(f64::NAN);
                        let differs = (v - expected).abs() > 0.0 || v.is_nan();
                        if differs {
                            return Err(JcampError::YCheck {
                                line,
                                expected,
                                got: v,
                            });
                        }
                        line_start = self.ys.len().saturating_sub(1);
                        last = Some(token);
                        continue;
                    }
                    self.ys.push(v);
                }
                Token::Dif(d) => {
                    // A Y-check value is always absolute; without one the count check fails.
                    skip_check = false;
                    let prev = self
                        .ys
                        .last()
                        .copied()
                        .ok_or(JcampError::NoPrecedingValue { line })?;
                    self.ys.push(prev + d);
                }
                Token::Dup(n) => {
                    skip_check = false;
                    let Some(prev_token) = last else {
                        return Err(JcampError::NoPrecedingValue { line });
                    };
                    for _ in 1..n {
                        if self.ys.len() > MAX_POINTS {
                            break;
                        }
                        match prev_token {
                            Token::Abs(v) => self.ys.push(v),
                            Token::Dif(d) => {
                                let prev = self.ys.last().copied().unwrap_or(0.0);
                                self.ys.push(prev + d);
                            }
                            Token::Dup(_) => return Err(JcampError::NoPrecedingValue { line }),
                        }
                    }
                    // A DUP keeps the form of the token it repeats.
                    continue;
                }
            }
            last = Some(token);
        }
        self.check_pending = matches!(last, Some(Token::Dif(_)));
        self.line_xs.push((line, line_start, x));
        Ok(())
    }
}

/// Parses a JCAMP-DX file holding one spectrum.
pub fn parse(text: &str) -> Result<Spectrum, JcampError> {
    if text.len() > MAX_JCAMP_BYTES {
        return Err(JcampError::TooLarge { len: text.len() });
    }
    let mut labels = Labels::default();
    let mut form: Option<bool> = None; // Some(true) = XYDATA, Some(false) = XYPOINTS
    let mut in_data = false;
    let mut xy = XyData::default();
    let mut pairs: Vec<(f64, f64)> = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let content = raw.split("$$").next().unwrap_or("").trim();
        if let Some(rest) = content.strip_prefix("##") {
            in_data = false;
            let (name, value) = rest.split_once('=').unwrap_or((rest, ""));
            let value = value.trim().to_owned();
            match normalise_label(name).as_str() {
                "XUNITS" => labels.xunits = Some(value),
                "FIRSTX" => labels.firstx = Some(value),
                "LASTX" => labels.lastx = Some(value),
                "NPOINTS" => labels.npoints = Some(value),
                "XFACTOR" => labels.xfactor = Some(value),
                "YFACTOR" => labels.yfactor = Some(value),
                "BLOCKS" | "NTUPLES" => {
                    return Err(JcampError::Unsupported {
                        what: format!("##{}", normalise_label(name)),
                    });
                }
                "XYDATA" => {
                    if normalise_label(&value) != "(X++(Y..Y))" || form.is_some() {
                        return Err(JcampError::Unsupported {
                            what: format!(
                                "##XYDATA={}",
                                value.chars().take(32).collect::<String>()
                            ),
                        });
                    }
                    form = Some(true);
                    in_data = true;
                }
                "XYPOINTS" => {
                    if normalise_label(&value) != "(XY..XY)" || form.is_some() {
                        return Err(JcampError::Unsupported {
                            what: format!(
                                "##XYPOINTS={}",
                                value.chars().take(32).collect::<String>()
                            ),
                        });
                    }
                    form = Some(false);
                    in_data = true;
                }
                "END" => break,
                _ => {}
            }
            continue;
        }
        if !in_data || content.is_empty() {
            continue;
        }
        if content.contains('?') {
            return Err(JcampError::Unsupported {
                what: format!("missing value '?' on line {line_no}"),
            });
        }
        if form == Some(true) {
            xy.line(content, line_no)?;
        } else {
            let tokens = tokenize(content, line_no)?;
            let mut values = Vec::with_capacity(tokens.len());
            for t in tokens {
                match t {
                    Token::Abs(v) => values.push(v),
                    _ => {
                        return Err(JcampError::Unsupported {
                            what: format!("compressed (XY..XY) on line {line_no}"),
                        });
                    }
                }
            }
            for pair in values.chunks(2) {
                if let [x, y] = pair {
                    pairs.push((*x, *y));
                }
                if pairs.len() > MAX_POINTS {
                    return Err(JcampError::Spectrum {
                        source: SpectrumError::BadLength { len: pairs.len() },
                    });
                }
            }
        }
    }
    build(&labels, form, xy, pairs)
}

/// Turns the collected labels and data into a spectrum.
fn build(
    labels: &Labels,
    form: Option<bool>,
    xy: XyData,
    pairs: Vec<(f64, f64)>,
) -> Result<Spectrum, JcampError> {
    let unit = axis_unit(labels.xunits.as_ref())?;
    let xfactor = optional_factor("XFACTOR", labels.xfactor.as_ref())?;
    let yfactor = optional_factor("YFACTOR", labels.yfactor.as_ref())?;
    match form {
        None => Err(JcampError::MissingLabel { label: "XYDATA" }),
        Some(false) => {
            let (xs, ys): (Vec<f64>, Vec<f64>) = pairs
                .into_iter()
                .map(|(x, y)| (x * xfactor, y * yfactor))
                .unzip();
            let axis = Axis::new(unit, xs).map_err(|source| JcampError::Spectrum { source })?;
            Spectrum::new(axis, ys).map_err(|source| JcampError::Spectrum { source })
        }
        Some(true) => {
            let firstx = label_number("FIRSTX", labels.firstx.as_ref())?;
            let lastx = label_number("LASTX", labels.lastx.as_ref())?;
            let npoints_f = label_number("NPOINTS", labels.npoints.as_ref())?;
            if !(2.0..=MAX_POINTS as f64).contains(&npoints_f) || npoints_f.fract() != 0.0 {
                return Err(JcampError::BadLabelValue {
                    label: "NPOINTS",
                    value: labels.npoints.clone().unwrap_or_default(),
                });
            }
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "checked above: a whole number in 2 … MAX_POINTS"
            )]
            let npoints = npoints_f as usize;
            if xy.ys.len() != npoints {
                return Err(JcampError::PointCount {
                    expected: npoints,
                    got: xy.ys.len(),
                });
            }
            let step = (lastx - firstx) / (npoints_f - 1.0);
            let xs: Vec<f64> = (0..npoints).map(|i| firstx + step * i as f64).collect();
            // Every line's X must sit on the grid (within half a step).
            for &(line, index, x) in &xy.line_xs {
                let expected = xs.get(index).copied().unwrap_or(f64::NAN);
                let on_grid = (x * xfactor - expected).abs() <= step.abs() / 2.0;
                if !on_grid {
                    return Err(JcampError::XCheck {
                        line,
                        index,
                        expected,
                        got: x * xfactor,
                    });
                }
            }
            let ys = xy.ys.into_iter().map(|y| y * yfactor).collect();
            let axis = Axis::new(unit, xs).map_err(|source| JcampError::Spectrum { source })?;
            Spectrum::new(axis, ys).map_err(|source| JcampError::Spectrum { source })
        }
    }
}

/// Writes a spectrum as JCAMP-DX `##XYPOINTS=(XY..XY)` in AFFN, with every value in the shortest
/// form that reads back exactly. Used by the simulators and the tests; the gateway only reads.
pub fn write_xypoints(title: &str, spectrum: &Spectrum) -> String {
    use std::fmt::Write as _;
    let axis = spectrum.axis();
    let unit = match axis.unit() {
        AxisUnit::PerCentimetre => "1/CM",
        AxisUnit::Nanometre => "NANOMETERS",
    };
    let mut out = String::new();
    let title: String = title.chars().filter(|c| !c.is_control()).collect();
    let _ = writeln!(out, "##TITLE={title}");
    let _ = writeln!(out, "##JCAMP-DX=4.24");
    let _ = writeln!(out, "##DATA TYPE=INFRARED SPECTRUM");
    let _ = writeln!(out, "##XUNITS={unit}");
    let _ = writeln!(out, "##YUNITS=ARBITRARY UNITS");
    let _ = writeln!(out, "##NPOINTS={}", spectrum.len());
    let _ = writeln!(out, "##XYPOINTS=(XY..XY)");
    for (x, y) in axis.values().iter().zip(spectrum.values()) {
        let _ = writeln!(out, "{x:?}, {y:?}");
    }
    let _ = writeln!(out, "##END=");
    out
}

#[cfg(test)]
mod tests;
