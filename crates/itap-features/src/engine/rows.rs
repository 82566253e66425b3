//! The engine's view of the rows: the batch's columns in device-then-time order,
//! cut into chunks of whole devices, and the slices of a chunk, a device and a
//! signal that the feature parts read.

use std::ops::Range;

use itap_telemetry::{Batch, State};

use crate::fit::state_key;
use crate::order::{Group, Order};

/// The batch's columns in sorted order, for a run of sorted positions starting
/// at `offset`.
pub(super) struct Sorted {
    pub(super) offset: usize,
    pub(super) ts: Vec<i64>,
    pub(super) signals: Vec<Vec<f64>>,
    /// Position in [`State::ALL`].
    pub(super) states: Option<Vec<u8>>,
    pub(super) errors: Option<Vec<i32>>,
}

impl Sorted {
    /// The columns of the sorted positions `range` only: a chunk's rows, so that
    /// the engine never holds a sorted copy of the whole batch.
    pub(super) fn gather(
        batch: &Batch,
        order: &Order,
        range: Range<usize>,
        sig_cols: &[usize],
    ) -> Sorted {
        let states = batch.states().map(|s| {
            let g = order.gather_range(s, range.clone());
            g.into_iter().map(state_code).collect()
        });
        Sorted {
            offset: range.start,
            ts: order.gather_range(batch.timestamps(), range.clone()),
            signals: sig_cols
                .iter()
                .map(|&i| order.gather_range(batch.signal(i), range.clone()))
                .collect(),
            states,
            errors: batch.error_codes().map(|e| order.gather_range(e, range)),
        }
    }

    /// Chunk `ch`'s rows, made of the devices `groups`.
    pub(super) fn rows(&self, ch: &Chunk, groups: &[Group]) -> ChunkRows<'_> {
        let range = ch.start - self.offset..ch.end - self.offset;
        ChunkRows {
            ts: &self.ts[range.clone()],
            states: self.states.as_ref().map(|v| &v[range.clone()]),
            errors: self.errors.as_ref().map(|v| &v[range.clone()]),
            raw: self.signals.iter().map(|c| &c[range.clone()]).collect(),
            local: groups
                .iter()
                .map(|g| Local {
                    start: g.start - ch.start,
                    end: g.end - ch.start,
                    code: g.code,
                })
                .collect(),
        }
    }
}

fn state_code(s: State) -> u8 {
    (state_key(s) - 1) as u8
}

/// A run of whole devices computed together: rows `start..end` of the sorted
/// order, devices `groups` of the order's groups.
#[derive(Debug, Clone)]
pub(super) struct Chunk {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) groups: Range<usize>,
}

/// Cuts the devices into chunks of about `n / (8 × threads)` rows (1024 – 16384),
/// small enough for a chunk's columns to stay in cache. The cut does not change
/// any value: each device is computed on its own.
pub(super) fn chunks(groups: &[Group], n: usize) -> Vec<Chunk> {
    chunks_of(
        groups,
        (n / (8 * rayon::current_num_threads().max(1))).clamp(1024, 16_384),
    )
}

fn chunks_of(groups: &[Group], target: usize) -> Vec<Chunk> {
    let mut out: Vec<Chunk> = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        match out.last_mut() {
            Some(c) if c.end - c.start < target => {
                c.end = g.end;
                c.groups.end = gi + 1;
            }
            _ => out.push(Chunk {
                start: g.start,
                end: g.end,
                groups: gi..gi + 1,
            }),
        }
    }
    out
}

/// A device's rows within a chunk.
#[derive(Debug, Clone, Copy)]
pub(super) struct Local {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) code: u32,
}

/// A chunk's inputs: the sorted columns cut to its rows, and its devices.
pub(super) struct ChunkRows<'a> {
    pub(super) ts: &'a [i64],
    pub(super) states: Option<&'a [u8]>,
    pub(super) errors: Option<&'a [i32]>,
    /// Per signal, the observed values.
    pub(super) raw: Vec<&'a [f64]>,
    pub(super) local: Vec<Local>,
}

impl<'a> ChunkRows<'a> {
    /// The inputs of device `g`.
    pub(super) fn device(&self, g: &Local) -> DeviceRows<'a> {
        let r = g.start..g.end;
        DeviceRows {
            start: g.start,
            code: g.code,
            ts: &self.ts[r.clone()],
            states: self.states.map(|v| &v[r.clone()]),
            errors: self.errors.map(|v| &v[r]),
        }
    }
}

/// One device's inputs within a chunk.
#[derive(Debug, Clone, Copy)]
pub(super) struct DeviceRows<'a> {
    /// Its first row in the chunk's columns.
    pub(super) start: usize,
    pub(super) code: u32,
    pub(super) ts: &'a [i64],
    pub(super) states: Option<&'a [u8]>,
    pub(super) errors: Option<&'a [i32]>,
}

impl DeviceRows<'_> {
    /// Its rows in the chunk's columns.
    pub(super) fn range(&self) -> Range<usize> {
        self.start..self.start + self.ts.len()
    }
}

/// One signal of one device within a chunk.
#[derive(Debug, Clone, Copy)]
pub(super) struct SignalRows<'a> {
    /// The signal's position in the plan.
    pub(super) si: usize,
    /// Observed values.
    pub(super) raw: &'a [f64],
    /// Observed or carried-forward values.
    pub(super) imputed: &'a [f64],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hold_whole_devices_and_at_least_the_target() {
        let groups: Vec<Group> = [0, 5, 7, 20, 21, 30]
            .windows(2)
            .enumerate()
            .map(|(i, w)| Group {
                code: i as u32,
                start: w[0],
                end: w[1],
            })
            .collect();
        let ch = chunks_of(&groups, 6);
        let cuts: Vec<_> = ch
            .iter()
            .map(|c| (c.start, c.end, c.groups.clone()))
            .collect();
        assert_eq!(cuts, [(0, 7, 0..2), (7, 20, 2..3), (20, 30, 3..5)]);
    }
}
