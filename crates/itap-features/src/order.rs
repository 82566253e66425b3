//! Per-device order: the rows of each device together, in time order.

use itap_telemetry::Batch;

/// One device's rows: `start..end` in the sorted order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Group {
    /// The device's code in the batch.
    pub(crate) code: u32,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// The batch's rows ordered by (device code, timestamp), stable for equal keys.
#[derive(Debug, Clone)]
pub(crate) struct Order {
    /// `perm[i]` is the input row at sorted position `i`; empty when the batch is
    /// already in this order. Four bytes a row: a batch in memory has fewer than
    /// 2³² rows.
    pub(crate) perm: Vec<u32>,
    /// Each device's contiguous range in the sorted order, by device code.
    pub(crate) groups: Vec<Group>,
}

impl Order {
    /// The input row at sorted position `i`.
    pub(crate) fn row(&self, i: usize) -> usize {
        if self.perm.is_empty() {
            i
        } else {
            self.perm[i] as usize
        }
    }

    pub(crate) fn is_identity(&self) -> bool {
        self.perm.is_empty()
    }

    /// The values of `col` (input order) at the sorted positions `range`.
    pub(crate) fn gather_range<T: Copy>(&self, col: &[T], range: std::ops::Range<usize>) -> Vec<T> {
        if self.is_identity() {
            col[range].to_vec()
        } else {
            self.perm[range].iter().map(|&r| col[r as usize]).collect()
        }
    }
}

/// Orders the rows of a batch by device, then time. Device ids are dictionary
/// codes, so a counting sort groups the rows in one pass; each device's rows are
/// then sorted by time (stably) unless they already are, as they usually are.
pub(crate) fn device_order(batch: &Batch) -> Order {
    let codes = batch.device_codes();
    let ts = batch.timestamps();
    let n = batch.len();
    let sorted = codes
        .windows(2)
        .zip(ts.windows(2))
        .all(|(c, t)| c[0] < c[1] || (c[0] == c[1] && t[0] <= t[1]));
    let ndev = batch.device_names().len();
    let mut starts = vec![0usize; ndev + 1];
    for &c in codes {
        starts[c as usize + 1] += 1;
    }
    for d in 0..ndev {
        starts[d + 1] += starts[d];
    }
    let groups: Vec<Group> = (0..ndev)
        .filter(|&d| starts[d + 1] > starts[d])
        .map(|d| Group {
            code: d as u32,
            start: starts[d],
            end: starts[d + 1],
        })
        .collect();
    if sorted {
        return Order {
            perm: Vec::new(),
            groups,
        };
    }
    let mut next = starts;
    let mut perm = vec![0u32; n];
    for (r, &c) in codes.iter().enumerate() {
        perm[next[c as usize]] = u32::try_from(r).expect("a batch has fewer than 2^32 rows");
        next[c as usize] += 1;
    }
    for g in &groups {
        let rows = &mut perm[g.start..g.end];
        if !rows.is_sorted_by_key(|&r| ts[r as usize]) {
            rows.sort_by_key(|&r| ts[r as usize]);
        }
    }
    Order { perm, groups }
}

#[cfg(test)]
mod tests {
    use super::*;
    use itap_telemetry::{BatchBuilder, Schema, Signal, State};

    #[test]
    fn rows_are_grouped_by_device_and_sorted_stably_by_time() {
        let schema = Schema::new(vec![Signal::new("x")]).unwrap();
        let mut b = BatchBuilder::new(schema, false, false, false);
        // (ts, device): two devices interleaved, one out of time order, a tie.
        let rows = [(5, "b"), (1, "a"), (3, "b"), (2, "a"), (3, "b"), (0, "a")];
        for (i, (t, d)) in rows.iter().enumerate() {
            let code = b.device_code(d);
            b.push(*t, code, &[i as f64], State::Run, 0, 0).unwrap();
        }
        let batch = b.finish();
        let o = device_order(&batch);
        // Device "b" has code 0 (seen first).
        assert_eq!(o.perm, [2, 4, 0, 5, 1, 3]);
        assert_eq!(
            o.groups,
            [
                Group {
                    code: 0,
                    start: 0,
                    end: 3
                },
                Group {
                    code: 1,
                    start: 3,
                    end: 6
                }
            ]
        );
        let perm: Vec<usize> = o.perm.iter().map(|&r| r as usize).collect();
        let sorted = batch.take(&perm);
        assert!(device_order(&sorted).is_identity());
    }
}
