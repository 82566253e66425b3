//! The type gate: a value this crate has checked.

use std::ops::Deref;

/// A value that passed validation: for a [`Batch`](itap_telemetry::Batch), rows
/// with no error-severity finding.
///
/// Only itap-validate can make one ([`validate_batch`](crate::validate_batch),
/// [`ValidatedChunks`](crate::ValidatedChunks)); the field is private and there is
/// no constructor, no `From` and no `DerefMut`. A store that accepts only
/// `Validated<Batch>` therefore cannot be handed unchecked rows: "validation before
/// storage" is enforced by the compiler.
///
/// ```compile_fail
/// // Outside this crate a Validated cannot be built from a plain batch.
/// use itap_telemetry::ParamGuard;
/// let batch = itap_telemetry::simulate(&itap_telemetry::SimParams::default().devices(1).hours(0.01).check().unwrap());
/// let forged = itap_validate::Validated(batch);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Validated<T>(T);

impl<T> Validated<T> {
    /// Wraps a value that has just been validated. Crate-private by design.
    pub(crate) fn new(value: T) -> Self {
        Validated(value)
    }

    /// The validated value.
    pub fn get(&self) -> &T {
        &self.0
    }

    /// The validated value, by value (it is then an ordinary, unvouched value).
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl Validated<itap_telemetry::Batch> {
    /// Consecutive pieces of at most `rows` rows (at least 1), in order. Each is
    /// still validated: every row passed its checks, and rows taken in order from a
    /// valid batch keep its file-level properties (unique keys, time order within
    /// a device).
    pub fn chunks(&self, rows: usize) -> impl Iterator<Item = Validated<itap_telemetry::Batch>> {
        let n = self.0.len();
        let rows = rows.max(1);
        (0..n).step_by(rows).map(move |start| {
            let idx: Vec<usize> = (start..(start + rows).min(n)).collect();
            Validated(self.0.take(&idx))
        })
    }
}

impl Validated<itap_telemetry::Batch> {
    /// Pieces of whole devices, devices in id order, each of at most `rows`
    /// rows (at least 1; a device with more rows is cut into consecutive
    /// pieces), each device's rows in their order in the batch. Every row is
    /// in exactly one piece. Each piece is still validated: a device's rows
    /// taken together, in order, keep the batch's file-level properties.
    ///
    /// A store keyed by (device, time) takes such pieces at one place each,
    /// where [`chunks`](Validated::chunks) of a batch in time order touch
    /// every device's place in every piece.
    ///
    /// ```
    /// use itap_telemetry::{simulate, ParamGuard, SimParams};
    /// use itap_validate::{validate_batch, ValidationParams};
    /// let batch = simulate(&SimParams::default().devices(3).hours(1.0).check()?);
    /// let (_, valid) = validate_batch(batch, &ValidationParams::default().check()?);
    /// let pieces: Vec<_> = valid.expect("valid").device_chunks(700).collect();
    /// // 360 rows a device: one device a piece.
    /// assert_eq!(pieces.iter().map(|p| p.len()).collect::<Vec<_>>(), [360, 360, 360]);
    /// assert!((0..360).all(|r| pieces[2].device_of(r) == "DEV-0002"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn device_chunks(
        &self,
        rows: usize,
    ) -> impl Iterator<Item = Validated<itap_telemetry::Batch>> + '_ {
        let b = &self.0;
        let rows = rows.max(1);
        let names = b.device_names();
        let codes = b.device_codes();
        let mut counts = vec![0usize; names.len()];
        for &c in codes {
            counts[c as usize] += 1;
        }
        let mut by_id: Vec<usize> = (0..names.len()).collect();
        by_id.sort_by(|&x, &y| names[x].cmp(&names[y]));
        // Each piece: (device code, its k-th rows from..to). A device starts a
        // new piece when it does not fit whole in the current one; one larger
        // than `rows` fills pieces of its own.
        let mut pieces: Vec<Vec<(u32, usize, usize)>> = Vec::new();
        let mut held = 0usize;
        for d in by_id {
            let (mut from, to) = (0, counts[d]);
            if to == 0 {
                continue;
            }
            if pieces.is_empty() || held + to > rows {
                pieces.push(Vec::new());
                held = 0;
            }
            while from < to {
                if held == rows {
                    pieces.push(Vec::new());
                    held = 0;
                }
                let take = (to - from).min(rows - held);
                if let Some(p) = pieces.last_mut() {
                    p.push((d as u32, from, from + take));
                }
                held += take;
                from += take;
            }
        }
        // A piece's rows are found by one scan of the batch (no row index of
        // the whole batch is held: a piece at a time).
        let mut wanted: Vec<Option<(usize, usize)>> = vec![None; names.len()];
        let mut seen = vec![0usize; names.len()];
        let mut rank = vec![0usize; names.len()];
        pieces.into_iter().map(move |piece| {
            for (i, &(d, from, to)) in piece.iter().enumerate() {
                wanted[d as usize] = Some((from, to));
                rank[d as usize] = i;
            }
            seen.iter_mut().for_each(|k| *k = 0);
            let mut idx = Vec::with_capacity(piece.iter().map(|p| p.2 - p.1).sum());
            for (r, &c) in codes.iter().enumerate() {
                let c = c as usize;
                if let Some((from, to)) = wanted[c] {
                    if (from..to).contains(&seen[c]) {
                        idx.push(r);
                    }
                    seen[c] += 1;
                }
            }
            for &(d, _, _) in &piece {
                wanted[d as usize] = None;
            }
            // Each device's rows together, in the batch's order.
            idx.sort_by_key(|&r| rank[codes[r] as usize]);
            Validated(b.take(&idx))
        })
    }
}

impl<T> Deref for Validated<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> AsRef<T> for Validated<T> {
    fn as_ref(&self) -> &T {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use itap_telemetry::{ParamGuard, SimParams, simulate};

    use crate::{ValidationParams, validate_batch};

    #[test]
    fn chunks_cover_every_row_once_in_order() {
        let batch = simulate(&SimParams::default().devices(3).hours(0.5).check().unwrap());
        let n = batch.len();
        let (_, valid) =
            validate_batch(batch.clone(), &ValidationParams::default().check().unwrap());
        let valid = valid.unwrap();
        for size in [1, 7, n - 1, n, n + 5] {
            let parts: Vec<_> = valid.chunks(size).collect();
            assert_eq!(parts.len(), n.div_ceil(size), "size {size}");
            assert!(parts.iter().all(|p| p.len() <= size));
            let ts: Vec<i64> = parts.iter().flat_map(|p| p.timestamps().to_vec()).collect();
            assert_eq!(ts, batch.timestamps(), "size {size}");
            let devices: Vec<String> = parts
                .iter()
                .flat_map(|p| {
                    (0..p.len())
                        .map(|r| p.device_of(r).to_owned())
                        .collect::<Vec<_>>()
                })
                .collect();
            let expected: Vec<String> = (0..n).map(|r| batch.device_of(r).to_owned()).collect();
            assert_eq!(devices, expected);
        }
    }

    #[test]
    fn device_chunks_hold_whole_devices_in_id_order_and_every_row_once() {
        // 4 devices × 180 rows, the device dictionary not in id order.
        let sim = simulate(&SimParams::default().devices(4).hours(0.5).check().unwrap());
        let mut c = sim.into_columns();
        let perm = [2u32, 0, 3, 1]; // old code → new code
        let mut names = vec![String::new(); 4];
        for (old, &new) in perm.iter().enumerate() {
            names[new as usize] = c.device_names[old].clone();
        }
        c.device_names = names;
        for code in &mut c.device_codes {
            *code = perm[*code as usize];
        }
        let batch = itap_telemetry::Batch::from_columns(c).unwrap();
        let n = batch.len();
        let (_, valid) =
            validate_batch(batch.clone(), &ValidationParams::default().check().unwrap());
        let valid = valid.unwrap();
        let key =
            |b: &itap_telemetry::Batch, r: usize| (b.device_of(r).to_owned(), b.timestamps()[r]);
        let mut want: Vec<(String, i64)> = (0..n).map(|r| key(&batch, r)).collect();
        want.sort();
        for size in [1, 7, 179, 180, 181, 400, n + 5] {
            let parts: Vec<_> = valid.device_chunks(size).collect();
            assert!(parts.iter().all(|p| p.len() <= size && !p.is_empty()));
            // Concatenated: devices by id, each device's rows in time order
            // (the batch's order), every row once.
            let got: Vec<(String, i64)> = parts
                .iter()
                .flat_map(|p| (0..p.len()).map(|r| key(p, r)).collect::<Vec<_>>())
                .collect();
            assert_eq!(got, want, "size {size}");
            // A device that fits in a piece is in one piece.
            if size >= 180 {
                for p in &parts {
                    for d in p.device_names() {
                        let rows = (0..p.len()).filter(|&r| p.device_of(r) == d).count();
                        assert!(rows == 0 || rows == 180, "size {size}: {d} split");
                    }
                }
                assert_eq!(
                    parts.len(),
                    4usize.div_ceil((size / 180).max(1)),
                    "size {size}"
                );
            }
        }
    }
}
