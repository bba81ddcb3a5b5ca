//! The CSV layout of the shared PAT calibration data: a header row; column 1 the primary
//! reference value (unless its header is itself a number, in which case the file carries no
//! reference); then metadata columns; then the spectral columns — every column whose header parses
//! as a number, contiguous and last, the number being the axis value.
//!
//! The reader takes the text (already decompressed and size-capped by the caller) and the axis
//! unit, which the CSV does not state. It does no I/O and accepts no quoting (the layout has none);
//! empty reference cells read as "no reference".

use super::{Axis, AxisUnit, Spectrum, SpectrumError};

/// Largest CSV text accepted, bytes.
pub const MAX_CSV_BYTES: usize = 64 << 20;
/// Most data rows accepted.
pub const MAX_ROWS: usize = 100_000;

/// Why a CSV file was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CsvError {
    /// The text is larger than [`MAX_CSV_BYTES`].
    #[error("CSV of {len} bytes exceeds the cap of {MAX_CSV_BYTES}")]
    TooLarge {
        /// Length in bytes.
        len: usize,
    },
    /// More than [`MAX_ROWS`] rows.
    #[error("more than {MAX_ROWS} rows")]
    TooManyRows,
    /// No header line.
    #[error("empty CSV")]
    Empty,
    /// A quote character: the layout has no quoting.
    #[error("line {line}: quoted fields are not part of this layout")]
    Quoted {
        /// 1-based line number.
        line: usize,
    },
    /// No spectral columns, or numeric headers that are not the contiguous last columns.
    #[error("spectral columns must be the contiguous last columns (column {column} breaks this)")]
    Layout {
        /// 1-based column that breaks the rule.
        column: usize,
    },
    /// The header's axis values are not a valid axis.
    #[error("header axis: {source}")]
    Axis {
        /// The axis problem.
        #[source]
        source: SpectrumError,
    },
    /// A row has the wrong number of fields.
    #[error("line {line}: {got} fields, header has {expected}")]
    FieldCount {
        /// 1-based line number.
        line: usize,
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        got: usize,
    },
    /// A spectral or reference cell is not a finite number.
    #[error("line {line}, column {column}: {value:?} is not a finite number")]
    BadNumber {
        /// 1-based line number.
        line: usize,
        /// 1-based column number.
        column: usize,
        /// The cell (truncated).
        value: String,
    },
}

/// One row of a spectral table.
#[derive(Debug, Clone, PartialEq)]
pub struct SpectralRow {
    /// 1-based line number in the file.
    pub line: usize,
    /// The primary reference value, when the file has one and the cell is not empty.
    pub reference: Option<f64>,
    /// Metadata cells, in header order (see [`SpectralTable::metadata_names`]).
    pub metadata: Vec<String>,
    /// The spectrum.
    pub spectrum: Spectrum,
}

/// A parsed CSV file in the shared layout.
#[derive(Debug, Clone, PartialEq)]
pub struct SpectralTable {
    reference_name: Option<String>,
    metadata_names: Vec<String>,
    axis: Axis,
    rows: Vec<SpectralRow>,
}

impl SpectralTable {
    /// Header of the reference column, if the file has one.
    pub fn reference_name(&self) -> Option<&str> {
        self.reference_name.as_deref()
    }

    /// Headers of the metadata columns.
    pub fn metadata_names(&self) -> &[String] {
        &self.metadata_names
    }

    /// The axis from the header.
    pub fn axis(&self) -> &Axis {
        &self.axis
    }

    /// The rows.
    pub fn rows(&self) -> &[SpectralRow] {
        &self.rows
    }

    /// Index of the metadata column called `name`.
    pub fn metadata_index(&self, name: &str) -> Option<usize> {
        self.metadata_names.iter().position(|n| n == name)
    }
}

fn clip(s: &str) -> String {
    s.chars().take(32).collect()
}

fn number(cell: &str, line: usize, column: usize) -> Result<f64, CsvError> {
    match cell.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(CsvError::BadNumber {
            line,
            column,
            value: clip(cell),
        }),
    }
}

/// Parses a CSV file in the shared layout.
pub fn parse(text: &str, unit: AxisUnit) -> Result<SpectralTable, CsvError> {
    if text.len() > MAX_CSV_BYTES {
        return Err(CsvError::TooLarge { len: text.len() });
    }
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((header_idx, header)) = lines.next() else {
        return Err(CsvError::Empty);
    };
    if header.contains('"') {
        return Err(CsvError::Quoted {
            line: header_idx + 1,
        });
    }
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let numeric: Vec<bool> = names
        .iter()
        .map(|n| n.parse::<f64>().is_ok_and(f64::is_finite))
        .collect();
    let first_spectral = numeric.iter().position(|&b| b).ok_or(CsvError::Layout {
        column: names.len() + 1,
    })?;
    if let Some(k) = numeric.iter().skip(first_spectral).position(|&b| !b) {
        return Err(CsvError::Layout {
            column: first_spectral + k + 1,
        });
    }
    let axis_values: Vec<f64> = names
        .iter()
        .skip(first_spectral)
        .map(|n| n.parse::<f64>().unwrap_or(f64::NAN))
        .collect();
    let axis = Axis::new(unit, axis_values).map_err(|source| CsvError::Axis { source })?;
    let has_reference = first_spectral > 0;
    let reference_name = names
        .first()
        .filter(|_| has_reference)
        .map(|s| (*s).to_owned());
    let metadata_names: Vec<String> = names
        .iter()
        .take(first_spectral)
        .skip(1)
        .map(|s| (*s).to_owned())
        .collect();

    let mut rows = Vec::new();
    for (idx, line) in lines {
        let line_no = idx + 1;
        if rows.len() >= MAX_ROWS {
            return Err(CsvError::TooManyRows);
        }
        if line.contains('"') {
            return Err(CsvError::Quoted { line: line_no });
        }
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != names.len() {
            return Err(CsvError::FieldCount {
                line: line_no,
                expected: names.len(),
                got: cells.len(),
            });
        }
        let reference = match cells.first() {
            Some(c) if has_reference && !c.trim().is_empty() => Some(number(c, line_no, 1)?),
            _ => None,
        };
        let metadata = cells
            .iter()
            .take(first_spectral)
            .skip(1)
            .map(|c| c.trim().to_owned())
            .collect();
        let values = cells
            .iter()
            .enumerate()
            .skip(first_spectral)
            .map(|(i, c)| number(c, line_no, i + 1))
            .collect::<Result<Vec<f64>, CsvError>>()?;
        let spectrum =
            Spectrum::new(axis.clone(), values).map_err(|source| CsvError::Axis { source })?;
        rows.push(SpectralRow {
            line: line_no,
            reference,
            metadata,
            spectrum,
        });
    }
    Ok(SpectralTable {
        reference_name,
        metadata_names,
        axis,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = "active_pct_ww,sample_id,batch,3600,3599,3598\n\
                         5.5,01_01,01,1.0,2.0,3.0\n\
                         ,01_02,01,1.5,2.5,3.5\n";

    #[test]
    fn reads_reference_metadata_and_descending_axis() {
        let t = parse(SMALL, AxisUnit::PerCentimetre).unwrap();
        assert_eq!(t.reference_name(), Some("active_pct_ww"));
        assert_eq!(t.metadata_names(), ["sample_id", "batch"]);
        assert_eq!(t.axis().values(), [3600.0, 3599.0, 3598.0]);
        assert_eq!(t.rows().len(), 2);
        assert_eq!(t.rows()[0].reference, Some(5.5));
        assert_eq!(t.rows()[1].reference, None);
        assert_eq!(t.rows()[1].spectrum.values(), [1.5, 2.5, 3.5]);
        assert_eq!(t.metadata_index("batch"), Some(1));
    }

    #[test]
    fn file_without_reference_column_has_none() {
        let t = parse("600,602\n0.1,0.2\n", AxisUnit::Nanometre).unwrap();
        assert_eq!(t.reference_name(), None);
        assert_eq!(t.rows()[0].reference, None);
    }

    #[test]
    fn refuses_short_rows_bad_numbers_and_interleaved_headers() {
        assert_eq!(
            parse("y,600,602\n1,0.1\n", AxisUnit::Nanometre),
            Err(CsvError::FieldCount {
                line: 2,
                expected: 3,
                got: 2
            })
        );
        assert!(matches!(
            parse("y,600,602\n1,0.1,inf\n", AxisUnit::Nanometre),
            Err(CsvError::BadNumber {
                line: 2,
                column: 3,
                ..
            })
        ));
        assert_eq!(
            parse("y,600,id,602\n", AxisUnit::Nanometre),
            Err(CsvError::Layout { column: 3 })
        );
        assert_eq!(
            parse("y,\"600\"\n", AxisUnit::Nanometre),
            Err(CsvError::Quoted { line: 1 })
        );
    }
}
