//! Collecting findings: counts per check and column, and the first examples.

use std::collections::BTreeMap;

use crate::checks::{Check, Level, Scope, Severity};
use crate::params::check_index;
use crate::report::Example;

/// Column key for findings about no particular column.
pub(crate) const NO_COLUMN: u32 = u32::MAX;

/// Where an occurrence is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct At<'a> {
    pub(crate) line: Option<u64>,
    pub(crate) row: Option<u64>,
    pub(crate) device: Option<&'a str>,
}

impl At<'_> {
    pub(crate) const FILE: At<'static> = At {
        line: None,
        row: None,
        device: None,
    };
}

/// One occurrence's effect: its severity (`None` when the check is off) and, when
/// asked for and the occurrence makes its row bad, the reason in words.
#[derive(Debug, Default)]
pub(crate) struct Hit {
    pub(crate) bad_row: bool,
    pub(crate) reason: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Acc {
    pub(crate) count: u64,
    pub(crate) examples: Vec<Example>,
}

/// Counts and examples per (check, column).
#[derive(Debug)]
pub(crate) struct Findings {
    levels: Vec<Level>,
    max_examples: usize,
    /// Column names findings may refer to, by the index used in keys.
    columns: Vec<String>,
    /// Keyed by (position in `Check::ALL`, column index or `NO_COLUMN`).
    pub(crate) accs: BTreeMap<(usize, u32), Acc>,
}

impl Findings {
    pub(crate) fn new(levels: Vec<Level>, max_examples: usize, columns: Vec<String>) -> Self {
        Findings {
            levels,
            max_examples,
            columns,
            accs: BTreeMap::new(),
        }
    }

    pub(crate) fn severity(&self, check: Check) -> Option<Severity> {
        self.levels
            .get(check_index(check))
            .and_then(|l| l.severity())
    }

    pub(crate) fn column_name(&self, col: u32) -> Option<&str> {
        self.columns.get(col as usize).map(String::as_str)
    }

    /// The index findings use for the column `name`, added to the table when it
    /// is not there (a column the input lacks).
    pub(crate) fn column_index(&mut self, name: &str) -> u32 {
        match self.columns.iter().position(|c| c == name) {
            Some(i) => i as u32,
            None => {
                self.columns.push(name.to_owned());
                (self.columns.len() - 1) as u32
            }
        }
    }

    /// Records one occurrence. `make` gives (value, detail) and is called only when
    /// an example is kept or a reason is wanted.
    pub(crate) fn hit(
        &mut self,
        check: Check,
        col: Option<u32>,
        at: At<'_>,
        want_reason: bool,
        make: impl FnOnce() -> (String, String),
    ) -> Hit {
        let Some(sev) = self.severity(check) else {
            return Hit::default();
        };
        let bad_row = sev == Severity::Error && check.scope() == Scope::Row;
        let key = (check_index(check), col.unwrap_or(NO_COLUMN));
        let max = self.max_examples;
        let acc = self.accs.entry(key).or_default();
        acc.count += 1;
        let keep = would_keep(&acc.examples, at.row, max);
        let want_reason = want_reason && bad_row;
        if !keep && !want_reason {
            return Hit {
                bad_row,
                reason: None,
            };
        }
        let (value, detail) = make();
        let column = col.and_then(|c| self.columns.get(c as usize)).cloned();
        let reason = want_reason.then(|| {
            let mut s = format!("{}: ", check.id());
            match (&column, value.is_empty()) {
                (Some(c), true) => s.push_str(&format!("{c}: ")),
                (Some(c), false) => s.push_str(&format!("{c} = {value}: ")),
                (None, false) => s.push_str(&format!("{value}: ")),
                (None, true) => {}
            }
            s.push_str(&detail);
            s
        });
        if keep {
            let ex = Example {
                line: at.line,
                row: at.row,
                device: at.device.map(str::to_owned),
                column,
                value,
                detail,
            };
            insert_example(&mut acc.examples, ex, max);
        }
        Hit { bad_row, reason }
    }

    /// Findings with the same levels, examples and columns, and no occurrence
    /// yet: for a part of the rows checked on its own.
    pub(crate) fn empty_like(&self) -> Self {
        Findings::new(self.levels.clone(), self.max_examples, self.columns.clone())
    }

    /// Adds the occurrences of `other` (made by [`Self::empty_like`]): the
    /// counts add up, and the examples kept are the first by row of both —
    /// what recording `other`'s occurrences here would have kept.
    pub(crate) fn absorb(&mut self, other: Findings) {
        let max = self.max_examples;
        for (key, part) in other.accs {
            let acc = self.accs.entry(key).or_default();
            acc.count += part.count;
            for ex in part.examples {
                if would_keep(&acc.examples, ex.row, max) {
                    insert_example(&mut acc.examples, ex, max);
                }
            }
        }
    }

    /// Total occurrences of a check over all columns.
    pub(crate) fn total(&self, check: Check) -> u64 {
        let i = check_index(check);
        self.accs
            .range((i, 0)..=(i, NO_COLUMN))
            .map(|(_, a)| a.count)
            .sum()
    }
}

/// Whether an occurrence at `row` is among the first `max` by row, given the
/// examples kept so far.
fn would_keep(examples: &[Example], row: Option<u64>, max: usize) -> bool {
    examples.len() < max
        || match (row, examples.last().and_then(|e| e.row)) {
            (Some(r), Some(last)) => r < last,
            _ => false,
        }
}

/// Keeps the examples in file order, the first `max` occurrences: `ex` goes
/// after those of rows at or before its own (an example without a row last).
fn insert_example(examples: &mut Vec<Example>, ex: Example, max: usize) {
    let pos = match ex.row {
        Some(r) => examples.partition_point(|e| e.row.is_some_and(|x| x <= r)),
        None => examples.len(),
    };
    examples.insert(pos, ex);
    examples.truncate(max);
}
