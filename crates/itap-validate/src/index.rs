//! An exact set of one device's timestamps in memory proportional to its
//! irregularities, not to its rows.
//!
//! Telemetry is sampled on a grid: a device's timestamps are long runs of evenly
//! spaced values. The set is kept as non-overlapping runs `start, start + step, …,
//! start + (count - 1) × step`, keyed by start. Appending the next sample of a run
//! extends it in place; a gap starts a new run; a timestamp off the grid inside a
//! run splits it. A device sampled regularly with g gaps costs g + 1 runs, so a
//! 8.64-million-row file costs a few kilobytes, and a membership test is exact.

use std::collections::BTreeMap;

/// One run of evenly spaced timestamps. `step` is 0 for a single timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    step: i64,
    count: u64,
}

/// The outcome of [`TimeIndex::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    /// The timestamp was already in the set.
    Present,
    /// The timestamp was added.
    Added,
    /// The timestamp is not in the set and could not be added: the run budget is
    /// spent.
    Full,
}

/// The timestamps of one device.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimeIndex {
    runs: BTreeMap<i64, Run>,
}

fn end(start: i64, r: Run) -> i128 {
    i128::from(start) + i128::from(r.step) * (i128::from(r.count) - 1)
}

impl TimeIndex {
    /// The number of runs held.
    #[cfg(test)]
    pub(crate) fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Adds `t`, telling whether it was present. A new run is only made while
    /// `*budget > 0`, and each one made takes one from it.
    pub(crate) fn insert(&mut self, t: i64, budget: &mut usize) -> Insert {
        let ti = i128::from(t);
        let pred = self.runs.range(..=t).next_back().map(|(&s, &r)| (s, r));
        let Some((start, run)) = pred else {
            return self.new_run(t, budget);
        };
        let span_end = end(start, run);
        if ti <= span_end {
            // Inside the run's span: on the grid it is present, off it splits the run.
            let offset = ti - i128::from(start);
            let step = i128::from(run.step.max(1));
            if offset % step == 0 {
                return Insert::Present;
            }
            if *budget < 2 {
                return Insert::Full;
            }
            *budget -= 2;
            let k = (offset / step) as u64; // samples of the run at or before t, minus 1
            let left = Run {
                step: if k == 0 { 0 } else { run.step },
                count: k + 1,
            };
            let right_start = start.saturating_add(run.step.saturating_mul((k + 1) as i64));
            let right_count = run.count - (k + 1);
            let right = Run {
                step: if right_count == 1 { 0 } else { run.step },
                count: right_count,
            };
            self.runs.insert(start, left);
            self.runs.insert(t, Run { step: 0, count: 1 });
            self.runs.insert(right_start, right);
            return Insert::Added;
        }
        // After the run. The next run (if any) starts after t, so growing this run
        // up to t cannot overlap it.
        let gap = ti - span_end;
        if run.count == 1 {
            if let Ok(step) = i64::try_from(ti - i128::from(start)) {
                self.runs.insert(start, Run { step, count: 2 });
                return Insert::Added;
            }
        } else if gap == i128::from(run.step) {
            self.runs.insert(
                start,
                Run {
                    step: run.step,
                    count: run.count + 1,
                },
            );
            return Insert::Added;
        }
        self.new_run(t, budget)
    }

    fn new_run(&mut self, t: i64, budget: &mut usize) -> Insert {
        if *budget == 0 {
            return Insert::Full;
        }
        *budget -= 1;
        self.runs.insert(t, Run { step: 0, count: 1 });
        Insert::Added
    }

    /// Whether `t` is in the set.
    #[cfg(test)]
    pub(crate) fn contains(&self, t: i64) -> bool {
        match self.runs.range(..=t).next_back() {
            Some((&s, &r)) => {
                let off = i128::from(t) - i128::from(s);
                i128::from(t) <= end(s, r) && off % i128::from(r.step.max(1)) == 0
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_regular_series_is_one_run() {
        let mut ix = TimeIndex::default();
        let mut budget = 10;
        for i in 0..100_000 {
            assert_eq!(ix.insert(i * 10, &mut budget), Insert::Added);
        }
        assert_eq!(ix.runs(), 1);
        assert_eq!(budget, 9);
        assert_eq!(ix.insert(500, &mut budget), Insert::Present);
        assert_eq!(ix.insert(505, &mut budget), Insert::Added, "off the grid");
        assert!(ix.contains(505) && ix.contains(500) && ix.contains(510));
        assert!(!ix.contains(515));
        assert_eq!(ix.runs(), 3);
    }

    #[test]
    fn a_clock_that_steps_back_an_hour_finds_the_repeated_hour() {
        let mut ix = TimeIndex::default();
        let mut budget = 100;
        for i in 0..720 {
            ix.insert(i * 10, &mut budget);
        }
        for i in 360..720 {
            assert_eq!(ix.insert(i * 10, &mut budget), Insert::Present);
        }
        assert_eq!(ix.runs(), 1);
    }

    #[test]
    fn the_budget_bounds_new_runs() {
        let mut ix = TimeIndex::default();
        let mut budget = 2;
        assert_eq!(ix.insert(0, &mut budget), Insert::Added);
        assert_eq!(ix.insert(100, &mut budget), Insert::Added); // step 100
        assert_eq!(ix.insert(1000, &mut budget), Insert::Added); // new run
        assert_eq!(budget, 0);
        assert_eq!(
            ix.insert(5000, &mut budget),
            Insert::Added,
            "extends a singleton"
        );
        assert_eq!(ix.insert(7, &mut budget), Insert::Full);
        assert_eq!(ix.insert(100, &mut budget), Insert::Present);
    }

    #[test]
    fn extremes_do_not_overflow() {
        let mut ix = TimeIndex::default();
        let mut budget = 100;
        for t in [i64::MIN, i64::MAX, 0, i64::MIN + 1, i64::MAX - 1, -1, 1] {
            assert_eq!(ix.insert(t, &mut budget), Insert::Added, "{t}");
        }
        for t in [i64::MIN, i64::MAX, 0, -1, 1] {
            assert!(ix.contains(t));
            assert_eq!(ix.insert(t, &mut budget), Insert::Present);
        }
    }

    proptest! {
        #[test]
        fn agrees_with_a_set(ts in prop::collection::vec(
            prop_oneof![0i64..200, (0i64..40).prop_map(|x| x * 10), any::<i64>()], 0..300)) {
            let mut ix = TimeIndex::default();
            let mut set = BTreeSet::new();
            let mut budget = usize::MAX;
            for &t in &ts {
                let expected = if set.insert(t) { Insert::Added } else { Insert::Present };
                prop_assert_eq!(ix.insert(t, &mut budget), expected);
            }
            for t in -5..205 {
                prop_assert_eq!(ix.contains(t), set.contains(&t));
            }
            for &t in &ts {
                prop_assert!(ix.contains(t));
            }
        }
    }
}
