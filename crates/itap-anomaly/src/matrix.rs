//! Helpers on the plain numeric matrix every detector works on.

use ndarray::{Array2, ArrayView2, Axis};

use crate::error::{Error, Result};

/// One flag per row: `true` where every value of the row is finite.
///
/// The features of a time series are often NaN while their windows warm up; fits
/// need finite rows, scoring does not (see the detectors' NaN rules). Combine the
/// result with other masks (training span, operating state) and pass it to a
/// `fit_rows` method.
///
/// ```
/// use itap_anomaly::{finite_rows, ndarray::array};
/// let x = array![[1.0, 2.0], [f64::NAN, 0.0], [3.0, f64::INFINITY]];
/// assert_eq!(finite_rows(x.view()), vec![true, false, false]);
/// ```
pub fn finite_rows(x: ArrayView2<'_, f64>) -> Vec<bool> {
    x.axis_iter(Axis(0))
        .map(|row| row.iter().all(|v| v.is_finite()))
        .collect()
}

/// A copy of the rows whose flag in `rows` is `true`, in order.
///
/// # Errors
///
/// [`Error::LengthMismatch`] when `rows` does not have one flag per row.
pub fn select_rows(x: ArrayView2<'_, f64>, rows: &[bool]) -> Result<Array2<f64>> {
    let idx = mask_indices(x.nrows(), rows)?;
    Ok(x.select(Axis(0), &idx))
}

/// The indices of the `true` flags, after checking the mask's length.
pub(crate) fn mask_indices(nrows: usize, rows: &[bool]) -> Result<Vec<usize>> {
    if rows.len() != nrows {
        return Err(Error::LengthMismatch {
            what: "the row mask",
            expected: nrows,
            found: rows.len(),
        });
    }
    Ok(rows
        .iter()
        .enumerate()
        .filter_map(|(i, &keep)| keep.then_some(i))
        .collect())
}

/// Checks that the listed rows hold only finite values; the error names the first
/// offending row (in the order given) and column.
pub(crate) fn check_finite(x: ArrayView2<'_, f64>, rows: &[usize]) -> Result<()> {
    for &r in rows {
        let row = x.row(r);
        if let Some((column, &value)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFinite {
                row: r,
                column,
                value,
            });
        }
    }
    Ok(())
}

/// Checks the column count against the fitted one.
pub(crate) fn check_columns(expected: usize, x: ArrayView2<'_, f64>) -> Result<()> {
    if x.ncols() != expected {
        return Err(Error::ColumnMismatch {
            expected,
            found: x.ncols(),
        });
    }
    Ok(())
}

/// Copies rows `start..start + n` of `x` into `buf`, row-major, `p` values a row.
pub(crate) fn copy_rows(x: ArrayView2<'_, f64>, start: usize, n: usize, buf: &mut [f64]) {
    let p = x.ncols();
    for (r, row) in x.axis_iter(Axis(0)).skip(start).take(n).enumerate() {
        let dst = &mut buf[r * p..(r + 1) * p];
        match row.as_slice() {
            Some(src) => dst.copy_from_slice(src),
            None => dst.iter_mut().zip(row.iter()).for_each(|(d, &s)| *d = s),
        }
    }
}

/// The `q`-quantile of `values` with linear interpolation between order statistics
/// (numpy's default); `values` is sorted in place. NaN sorts last.
pub(crate) fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_unstable_by(f64::total_cmp);
    let pos = q * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(values.len() - 1);
    let frac = pos - lo as f64;
    values[lo] + (values[hi] - values[lo]) * frac
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn masks_and_selection() {
        let x = array![[1.0, 2.0], [f64::NAN, 0.0], [3.0, 4.0]];
        assert_eq!(finite_rows(x.view()), vec![true, false, true]);
        let s = select_rows(x.view(), &[true, false, true]).unwrap();
        assert_eq!(s, array![[1.0, 2.0], [3.0, 4.0]]);
        assert!(matches!(
            select_rows(x.view(), &[true]),
            Err(Error::LengthMismatch {
                expected: 3,
                found: 1,
                ..
            })
        ));
    }

    #[test]
    fn first_non_finite_is_named() {
        let x = array![[1.0, 2.0], [5.0, f64::INFINITY], [f64::NAN, 0.0]];
        match check_finite(x.view(), &[0, 1, 2]) {
            Err(Error::NonFinite { row, column, value }) => {
                assert_eq!((row, column), (1, 1));
                assert_eq!(value, f64::INFINITY);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(check_finite(x.view(), &[0]).is_ok());
    }

    #[test]
    fn copies_any_layout() {
        let x = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]];
        let xt = x.t().to_owned();
        let mut buf = vec![0.0; 6];
        copy_rows(xt.t(), 1, 2, &mut buf);
        assert_eq!(buf, vec![4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    }

    #[test]
    fn quantile_matches_numpy_linear() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(&mut v, 0.5), 2.5);
        assert_eq!(quantile(&mut v, 1.0), 4.0);
        assert!((quantile(&mut v, 0.9) - 3.7).abs() < 1e-12);
    }
}
