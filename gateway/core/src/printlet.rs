//! Parametric printlet geometry: cylinders (round tablets) and caplets (stadium-shaped tablets)
//! as binary STL meshes, for slicing.
//!
//! It owns the mesh only: closed, outward-facing triangles in millimetres, centred on the origin
//! with the base at Z = 0. It does no I/O (it returns bytes) and knows nothing of doses or slicer
//! settings; the tests and fixtures slice its output with PrusaSlicer.

use std::f64::consts::PI;

/// Fewest and most segments on a round edge.
pub const SEGMENTS: (u32, u32) = (8, 1024);

/// Why a shape was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShapeError {
    /// A dimension is not finite or outside 0.1 … 100 mm.
    #[error("{field} = {value} mm is outside 0.1 … 100 mm")]
    Dimension {
        /// Which dimension.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// The segment count is outside [`SEGMENTS`].
    #[error("{segments} segments; allowed {} … {}", SEGMENTS.0, SEGMENTS.1)]
    Segments {
        /// The count.
        segments: u32,
    },
    /// A caplet's length is shorter than its width.
    #[error("caplet length {length} mm is shorter than its width {width} mm")]
    CapletTooShort {
        /// Length.
        length: f64,
        /// Width.
        width: f64,
    },
}

/// A printlet shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// A round tablet.
    Cylinder {
        /// Diameter, mm.
        diameter: f64,
        /// Height, mm.
        height: f64,
    },
    /// An oblong tablet: a rectangle with half-round ends.
    Caplet {
        /// Overall length, mm.
        length: f64,
        /// Width (and end diameter), mm.
        width: f64,
        /// Height, mm.
        height: f64,
    },
}

fn dim(field: &'static str, value: f64) -> Result<(), ShapeError> {
    if (0.1..=100.0).contains(&value) {
        Ok(())
    } else {
        Err(ShapeError::Dimension { field, value })
    }
}

impl Shape {
    /// The outline (counter-clockwise, seen from above) with `segments` points per full turn.
    fn outline(self, segments: u32) -> Result<Vec<[f64; 2]>, ShapeError> {
        if !(SEGMENTS.0..=SEGMENTS.1).contains(&segments) {
            return Err(ShapeError::Segments { segments });
        }
        let n = f64::from(segments);
        match self {
            Self::Cylinder { diameter, height } => {
                dim("diameter", diameter)?;
                dim("height", height)?;
                let r = diameter / 2.0;
                Ok((0..segments)
                    .map(|i| {
                        let a = 2.0 * PI * f64::from(i) / n;
                        [r * a.cos(), r * a.sin()]
                    })
                    .collect())
            }
            Self::Caplet {
                length,
                width,
                height,
            } => {
                dim("length", length)?;
                dim("width", width)?;
                dim("height", height)?;
                if length < width {
                    return Err(ShapeError::CapletTooShort { length, width });
                }
                let r = width / 2.0;
                let c = length / 2.0 - r;
                let half = segments / 2;
                let mut pts = Vec::with_capacity(2 * (half as usize + 1));
                // Right end from -90° to +90°, then left end from +90° to 270°.
                for (cx, start) in [(c, -PI / 2.0), (-c, PI / 2.0)] {
                    for i in 0..=half {
                        let a = start + PI * f64::from(i) / f64::from(half);
                        pts.push([cx + r * a.cos(), r * a.sin()]);
                    }
                }
                Ok(pts)
            }
        }
    }

    /// The height, mm.
    pub fn height(self) -> f64 {
        match self {
            Self::Cylinder { height, .. } | Self::Caplet { height, .. } => height,
        }
    }

    /// The closed mesh as triangles (each three `[x, y, z]` points, counter-clockwise seen from
    /// outside).
    pub fn triangles(self, segments: u32) -> Result<Vec<[[f64; 3]; 3]>, ShapeError> {
        let pts = self.outline(segments)?;
        let h = self.height();
        let mut tris = Vec::with_capacity(pts.len() * 4);
        let next = pts.iter().cycle().skip(1);
        for (&[x0, y0], &[x1, y1]) in pts.iter().zip(next) {
            // Top and bottom fans around the centre (the outline is convex).
            tris.push([[0.0, 0.0, h], [x0, y0, h], [x1, y1, h]]);
            tris.push([[0.0, 0.0, 0.0], [x1, y1, 0.0], [x0, y0, 0.0]]);
            // Side quad.
            tris.push([[x0, y0, 0.0], [x1, y1, 0.0], [x1, y1, h]]);
            tris.push([[x0, y0, 0.0], [x1, y1, h], [x0, y0, h]]);
        }
        Ok(tris)
    }

    /// Volume of the mesh, mm³.
    pub fn volume_mm3(self, segments: u32) -> Result<f64, ShapeError> {
        let pts = self.outline(segments)?;
        let next = pts.iter().cycle().skip(1);
        let area: f64 = pts
            .iter()
            .zip(next)
            .map(|(a, b)| a[0] * b[1] - b[0] * a[1])
            .sum::<f64>()
            / 2.0;
        Ok(area * self.height())
    }

    /// The mesh as binary STL.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "STL stores f32 by definition"
    )]
    pub fn to_stl(self, segments: u32) -> Result<Vec<u8>, ShapeError> {
        let tris = self.triangles(segments)?;
        let mut out = Vec::with_capacity(84 + tris.len() * 50);
        let mut header = [b' '; 80];
        for (d, s) in header.iter_mut().zip(b"DoseGate printlet".iter()) {
            *d = *s;
        }
        out.extend_from_slice(&header);
        let count = u32::try_from(tris.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for [a, b, c] in tris {
            let u = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
            let v = [c[0] - a[0], c[1] - a[1], c[2] - a[2]];
            let n = [
                u[1] * v[2] - u[2] * v[1],
                u[2] * v[0] - u[0] * v[2],
                u[0] * v[1] - u[1] * v[0],
            ];
            let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt().max(1e-12);
            for x in n {
                out.extend_from_slice(&((x / len) as f32).to_le_bytes());
            }
            for p in [a, b, c] {
                for x in p {
                    out.extend_from_slice(&(x as f32).to_le_bytes());
                }
            }
            out.extend_from_slice(&0u16.to_le_bytes());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cylinder_volume_approaches_pi_r2_h() {
        let s = Shape::Cylinder {
            diameter: 10.0,
            height: 4.0,
        };
        let v = s.volume_mm3(1024).unwrap();
        let exact = PI * 25.0 * 4.0;
        assert!((v - exact).abs() / exact < 1e-4, "{v} vs {exact}");
    }

    #[test]
    fn caplet_volume_is_rectangle_plus_disc() {
        let s = Shape::Caplet {
            length: 14.0,
            width: 6.0,
            height: 3.0,
        };
        let v = s.volume_mm3(1024).unwrap();
        let exact = (8.0 * 6.0 + PI * 9.0) * 3.0;
        assert!((v - exact).abs() / exact < 1e-4, "{v} vs {exact}");
    }

    #[test]
    fn stl_has_header_count_and_50_bytes_per_facet() {
        let s = Shape::Cylinder {
            diameter: 8.0,
            height: 3.0,
        };
        let stl = s.to_stl(32).unwrap();
        let count = u32::from_le_bytes(stl[80..84].try_into().unwrap());
        assert_eq!(count, 32 * 4);
        assert_eq!(stl.len(), 84 + 50 * 128);
    }

    #[test]
    fn refuses_degenerate_shapes() {
        let s = Shape::Caplet {
            length: 4.0,
            width: 6.0,
            height: 3.0,
        };
        assert!(matches!(
            s.to_stl(64),
            Err(ShapeError::CapletTooShort { .. })
        ));
        let c = Shape::Cylinder {
            diameter: f64::NAN,
            height: 3.0,
        };
        assert!(matches!(c.to_stl(64), Err(ShapeError::Dimension { .. })));
        assert_eq!(c.to_stl(3), Err(ShapeError::Segments { segments: 3 }));
    }
}
