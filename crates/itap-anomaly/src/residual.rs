//! The calibrated detector: every column scored by its training tail probability,
//! the row's score the largest.
//!
//! Made for control-chart features (EWMAs of standardised residuals, run lengths
//! of missing values and error codes), where each column already measures one
//! departure from normal: what is left is to put them on one scale. A column's
//! calibrated score is −log10 of the share of training rows at least as extreme
//! (the "tail probability"): 2 means one training row in a hundred went as far,
//! 4 one in ten thousand, whatever the column's unit. Beyond the most extreme
//! training value the tail is extended as an exponential (a straight line in
//! −log10 p) with the slope of the last decade, so scores stay finite, ordered
//! and comparable. Each column is scored on the side its signal declares
//! (`up`, `down`, or `both`: twice the smaller of the two tail probabilities).

use itap_telemetry::{Direction, ParamGuard};
use ndarray::{Array1, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::matrix::{check_columns, check_finite};

/// Rows per parallel task when scoring.
const CHUNK: usize = 4096;

/// Calibrated detector parameters, unchecked: the `[model.residual]` config section.
///
/// | Name | Default | Meaning | Range |
/// |---|---|---|---|
/// | `resolution` | 20 | points per decade of tail probability kept from the training values (20: 1, 0.89, 0.79 … of each decade) | 2 – 200 |
/// | `max_score` | 30 | calibrated scores are capped here (10⁻³⁰: far beyond anything training can tell apart) | 1 – 300 |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResidualParams {
    /// Tail points kept per decade of probability.
    pub resolution: usize,
    /// Cap of a calibrated score.
    pub max_score: f64,
}

impl Default for ResidualParams {
    fn default() -> Self {
        ResidualParams {
            resolution: 20,
            max_score: 30.0,
        }
    }
}

impl ResidualParams {
    /// Sets the tail points per decade.
    pub fn resolution(mut self, v: usize) -> Self {
        self.resolution = v;
        self
    }

    /// Sets the cap of a calibrated score.
    pub fn max_score(mut self, v: f64) -> Self {
        self.max_score = v;
        self
    }
}

impl ParamGuard for ResidualParams {
    type Checked = CheckedResidual;
    type Error = Error;

    fn check_ref(&self) -> Result<()> {
        if !(2..=200).contains(&self.resolution) {
            return Err(Error::param(
                "resolution",
                format!("{} is out of range; use 2 to 200", self.resolution),
            ));
        }
        if !(self.max_score >= 1.0 && self.max_score <= 300.0) {
            return Err(Error::param(
                "max_score",
                format!("{} is out of range; use 1 to 300", self.max_score),
            ));
        }
        Ok(())
    }

    /// Checks every parameter against its range.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParam`] naming the first parameter out of range.
    fn check(self) -> Result<CheckedResidual> {
        self.check_ref()?;
        Ok(CheckedResidual {
            params: self,
            directions: Vec::new(),
        })
    }
}

/// Checked calibrated-detector parameters, and the side each column is scored on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ResidualParams", into = "ResidualParams")]
pub struct CheckedResidual {
    params: ResidualParams,
    directions: Vec<Direction>,
}

impl TryFrom<ResidualParams> for CheckedResidual {
    type Error = Error;

    fn try_from(p: ResidualParams) -> Result<Self> {
        p.check()
    }
}

impl From<CheckedResidual> for ResidualParams {
    fn from(c: CheckedResidual) -> Self {
        c.params
    }
}

impl CheckedResidual {
    /// The parameters.
    pub fn params(&self) -> &ResidualParams {
        &self.params
    }

    /// Sets the side each column is scored on (one per column; empty = `both`
    /// for every column).
    pub fn directions(mut self, d: Vec<Direction>) -> Self {
        self.directions = d;
        self
    }

    /// Fits one tail per column and side on the rows of `x` at `rows`.
    pub(crate) fn build(&self, x: ArrayView2<'_, f64>, rows: &[usize]) -> Result<ResidualDetector> {
        let p = x.ncols();
        if p == 0 {
            return Err(Error::NoColumns);
        }
        if rows.len() < 2 {
            return Err(Error::TooFewRows {
                what: "the calibrated detector",
                rows: rows.len(),
                needed: 2,
            });
        }
        if !self.directions.is_empty() && self.directions.len() != p {
            return Err(Error::param(
                "directions",
                format!("{} directions for {p} columns", self.directions.len()),
            ));
        }
        check_finite(x, rows)?;
        let res = self.params.resolution;
        let columns = (0..p)
            .into_par_iter()
            .map(|c| {
                let dir = self.directions.get(c).copied().unwrap_or_default();
                let mut values: Vec<f64> = rows.iter().map(|&r| x[[r, c]]).collect();
                // One sort serves both sides: the lower tail reads it backwards.
                values.sort_unstable_by(f64::total_cmp);
                let upper = (dir != Direction::Down).then(|| Tail::fit(&values, res, 1.0));
                let lower = (dir != Direction::Up).then(|| Tail::fit(&values, res, -1.0));
                ColumnTails {
                    direction: dir,
                    upper,
                    lower,
                }
            })
            .collect();
        Ok(ResidualDetector {
            params: self.params.clone(),
            training_rows: rows.len(),
            columns,
        })
    }
}

/// One side of one column's training distribution: the value at each tail
/// probability 10^(−j / resolution), j = 0 … resolution × log10(rows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tail {
    /// +1 for the upper tail, −1 for the lower (values are negated first).
    sign: f64,
    /// Non-decreasing: the (signed) value with a share 10^(−j / resolution) of
    /// training rows at or above it.
    values: Vec<f64>,
    /// Points per decade.
    resolution: usize,
    /// Signed units per decade beyond the last value.
    per_decade: f64,
}

impl Tail {
    /// `sorted`: the training values in ascending order.
    fn fit(sorted: &[f64], resolution: usize, sign: f64) -> Tail {
        let v: Vec<f64> = if sign > 0.0 {
            sorted.to_vec()
        } else {
            sorted.iter().rev().map(|x| -x).collect()
        };
        let n = v.len();
        let decades = (n as f64).log10();
        let points = (resolution as f64 * decades).floor() as usize;
        let values: Vec<f64> = (0..=points)
            .map(|j| {
                let p = 10f64.powf(-(j as f64) / resolution as f64);
                let at_or_above = ((p * n as f64).ceil() as usize).clamp(1, n);
                v[n - at_or_above]
            })
            .collect();
        let last = values[values.len() - 1];
        let (back, span) = if points >= resolution {
            (values[points - resolution], 1.0)
        } else {
            (values[0], points as f64 / resolution as f64)
        };
        let slope = if span > 0.0 {
            (last - back) / span
        } else {
            0.0
        };
        // A degenerate tail (ties up to the largest value, a constant column):
        // one standardised unit per decade.
        let per_decade = if slope.is_finite() && slope > 1e-12 {
            slope
        } else {
            1.0
        };
        Tail {
            sign,
            values,
            resolution,
            per_decade,
        }
    }

    /// −log10 of the training share at or beyond `x` on this side.
    fn score(&self, x: f64) -> f64 {
        let x = self.sign * x;
        let q = &self.values;
        let res = self.resolution as f64;
        if x.is_nan() || x <= q[0] {
            return 0.0;
        }
        let last = q.len() - 1;
        if x > q[last] {
            return last as f64 / res + (x - q[last]) / self.per_decade;
        }
        // q[j] < x <= q[j + 1]
        let j = q.partition_point(|&v| v < x) - 1;
        (j as f64 + (x - q[j]) / (q[j + 1] - q[j])) / res
    }
}

/// The tails of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ColumnTails {
    direction: Direction,
    upper: Option<Tail>,
    lower: Option<Tail>,
}

impl ColumnTails {
    fn score(&self, x: f64) -> f64 {
        match (&self.upper, &self.lower) {
            (Some(u), Some(l)) => {
                // Two-sided: twice the smaller tail probability, so a value
                // as far out on either side counts the same. The shares at or
                // above and at or below a value add up to at least 1, so once
                // one side's share is below 10^-0.5 (about 0.32) the other's is
                // above 0.68 and cannot be the smaller: it is not looked up.
                let a = u.score(x);
                let a = if a > 0.5 { a } else { a.max(l.score(x)) };
                (a - std::f64::consts::LOG10_2).max(0.0)
            }
            (Some(u), None) => u.score(x),
            (None, Some(l)) => l.score(x),
            (None, None) => 0.0,
        }
    }
}

/// A fitted calibrated detector: per column, the tails of its training values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResidualDetector {
    params: ResidualParams,
    training_rows: usize,
    columns: Vec<ColumnTails>,
}

impl ResidualDetector {
    /// The parameters it was fitted with.
    pub fn params(&self) -> &ResidualParams {
        &self.params
    }

    /// Columns it was fitted on.
    pub fn n_features(&self) -> usize {
        self.columns.len()
    }

    /// The side each column is scored on.
    pub fn directions(&self) -> Vec<Direction> {
        self.columns.iter().map(|c| c.direction).collect()
    }

    /// Each column's calibrated score for one row: −log10 of the training share
    /// at least as extreme on the column's side, capped at `max_score`.
    ///
    /// # Errors
    ///
    /// [`Error::ColumnMismatch`] when the row does not have one value per column.
    pub fn calibrate_row(&self, row: ArrayView1<'_, f64>) -> Result<Vec<f64>> {
        if row.len() != self.columns.len() {
            return Err(Error::ColumnMismatch {
                expected: self.columns.len(),
                found: row.len(),
            });
        }
        let cap = self.params.max_score;
        Ok(row
            .iter()
            .zip(&self.columns)
            .map(|(&x, c)| c.score(x).min(cap))
            .collect())
    }

    /// One score per row: the largest calibrated score of its columns.
    ///
    /// # Errors
    ///
    /// [`Error::ColumnMismatch`] when `x` does not have the training column count.
    pub fn score(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        check_columns(self.columns.len(), x)?;
        let cap = self.params.max_score;
        let mut out = Array1::zeros(x.nrows());
        out.as_slice_mut()
            .expect("a new array is contiguous")
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(ci, o)| {
                let start = ci * CHUNK;
                let block = x.slice(ndarray::s![start..start + o.len(), ..]);
                // A column at a time (`o` starts at 0): each row's largest
                // column score, the columns taken in order as a row-by-row fold
                // would take them, so the result is the same bit for bit.
                for (c, col) in self.columns.iter().zip(block.axis_iter(Axis(1))) {
                    for (o, &v) in o.iter_mut().zip(col.iter()) {
                        *o = f64::max(*o, c.score(v));
                    }
                }
                for o in o {
                    *o = o.min(cap);
                }
            });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, ShapeBuilder};

    use super::*;

    fn fit(values: &[f64], dir: Direction) -> ResidualDetector {
        let x = Array2::from_shape_vec((values.len(), 1), values.to_vec()).unwrap();
        ResidualParams::default()
            .check()
            .unwrap()
            .directions(vec![dir])
            .build(x.view(), &(0..values.len()).collect::<Vec<_>>())
            .unwrap()
    }

    fn score(d: &ResidualDetector, v: f64) -> f64 {
        d.calibrate_row(ndarray::arr1(&[v]).view()).unwrap()[0]
    }

    #[test]
    fn a_score_is_the_training_tail_probability_in_decades() {
        // 0, 1, …, 9999: the share at or above 9900 is 1 %, above 9990 0.1 %.
        let values: Vec<f64> = (0..10_000).map(f64::from).collect();
        let d = fit(&values, Direction::Up);
        assert!(
            (score(&d, 9900.0) - 2.0).abs() < 0.01,
            "{}",
            score(&d, 9900.0)
        );
        assert!(
            (score(&d, 9990.0) - 3.0).abs() < 0.01,
            "{}",
            score(&d, 9990.0)
        );
        assert_eq!(score(&d, -5.0), 0.0);
        assert!(score(&d, 20_000.0) > 4.0 && score(&d, 20_000.0).is_finite());
    }

    #[test]
    fn scores_rise_with_the_value_and_only_on_the_declared_side() {
        let values: Vec<f64> = (0..5_000)
            .map(|i| ((i * 7919) % 5_000) as f64 / 500.0 - 5.0)
            .collect();
        let up = fit(&values, Direction::Up);
        let down = fit(&values, Direction::Down);
        let both = fit(&values, Direction::Both);
        let mut last = -1.0;
        for i in -100..200 {
            let s = score(&up, f64::from(i) / 10.0);
            assert!(s >= last, "not monotone at {i}: {s} < {last}");
            last = s;
        }
        assert!(score(&up, 6.0) > 3.0 && score(&up, -6.0) == 0.0);
        assert!(score(&down, -6.0) > 3.0 && score(&down, 6.0) == 0.0);
        assert!(score(&both, 6.0) > 3.0 && score(&both, -6.0) > 3.0);
        assert!(
            score(&both, 4.99) < score(&up, 4.99),
            "two-sided is less surprising"
        );
    }

    #[test]
    fn a_constant_training_column_still_orders_new_values() {
        let d = fit(&[0.0; 1000], Direction::Up);
        assert_eq!(score(&d, 0.0), 0.0);
        let (one, two) = (score(&d, 1.0), score(&d, 2.0));
        assert!(one >= 3.0 && two > one && two.is_finite(), "{one} {two}");
    }

    #[test]
    fn the_row_score_is_the_largest_column_score() {
        let x = Array2::from_shape_fn((1000, 2), |(r, c)| ((r * (c + 3)) % 1000) as f64);
        let d = ResidualParams::default()
            .check()
            .unwrap()
            .build(x.view(), &(0..1000).collect::<Vec<_>>())
            .unwrap();
        let probe = ndarray::arr2(&[[2000.0, 500.0], [500.0, 500.0]]);
        let s = d.score(probe.view()).unwrap();
        let row0 = d.calibrate_row(probe.row(0)).unwrap();
        assert_eq!(s[0], row0.iter().copied().fold(0.0, f64::max));
        assert!(s[0] > s[1]);
    }

    /// Each row's score, the largest of its columns' calibrated scores, as
    /// `calibrate_row` gives them one row at a time.
    fn by_rows(d: &ResidualDetector, x: ArrayView2<'_, f64>) -> Vec<f64> {
        x.axis_iter(Axis(0))
            .map(|row| {
                d.calibrate_row(row)
                    .unwrap()
                    .into_iter()
                    .fold(0.0, f64::max)
            })
            .collect()
    }

    #[test]
    fn scores_are_those_of_each_row_at_a_time_in_either_memory_layout() {
        use rand::{RngExt, SeedableRng};
        // Three columns of a skewed training distribution, one per side.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let train = Array2::from_shape_fn((20_000, 3), |(_, c)| {
            let u: f64 = rng.random();
            (c as f64 + 1.0) * (u * u - 0.3)
        });
        let dirs = vec![Direction::Both, Direction::Up, Direction::Down];
        for (resolution, max_score) in [(2, 30.0), (20, 30.0), (20, 1.5), (200, 30.0)] {
            let d = ResidualParams {
                resolution,
                max_score,
            }
            .check()
            .unwrap()
            .directions(dirs.clone())
            .build(train.view(), &(0..20_000).collect::<Vec<_>>())
            .unwrap();
            // Probes: the tails' points and the floats either side of them,
            // fresh values inside and beyond the training range, NaN and the
            // infinities.
            let mut probes = vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0];
            for c in &d.columns {
                for t in c.upper.iter().chain(&c.lower) {
                    for v in t.values.iter().map(|v| t.sign * v) {
                        probes.extend([v, v.next_up(), v.next_down()]);
                    }
                }
            }
            probes.extend((0..5_000).map(|_| 8.0 * (rng.random::<f64>() - 0.5)));
            // Every probe in every column (CHUNK rows and more), both layouts.
            let n = probes.len();
            assert!(n > CHUNK, "{n}");
            let c_order = Array2::from_shape_fn((n, 3), |(r, c)| probes[(r + 7 * c) % n]);
            let mut f_order = Array2::zeros((n, 3).f());
            f_order.assign(&c_order);
            let want: Vec<f64> = by_rows(&d, c_order.view());
            assert!(want.contains(&max_score) && want.iter().any(|&s| s < 0.5));
            for x in [c_order.view(), f_order.view()] {
                let got = d.score(x).unwrap().to_vec();
                for (r, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        w.to_bits(),
                        "resolution {resolution}, row {r}: {g} vs {w}"
                    );
                }
            }
        }
    }
}
