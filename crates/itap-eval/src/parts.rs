//! An evaluation built a part of the fleet at a time: [`EvaluationParts`].
//!
//! Every figure of an [`Evaluation`] is either a device's own (its alerts, its
//! events and their detections, its breakdown, its fleet entry, its
//! device-days) or a fleet-wide one computed from the evaluated rows' scores,
//! labels, states and tags, whose order does not matter (ROC and PR with their
//! ties grouped, the sweep's quantiles, counts). So a fleet can be evaluated a
//! group of whole devices at a time: the device figures of each group as it
//! comes, and the rest, at the end, from compact columns of the evaluated rows
//! (13 bytes a row) instead of the rows themselves.

use std::collections::BTreeMap;

use crate::breakdown::{Columns, per_device, per_fault, per_state};
use crate::error::{Error, Result};
use crate::evaluate::{
    Breakdown, EvalContext, Evaluated, Evaluation, PointMetrics, ScoredRows, evaluated_rows,
    split_info, sweep,
};
use crate::events::{
    EventCounts, TagEvents, days_of_each, detections, event_metrics, events, label_alerts,
    per_device_rows,
};
use crate::fleet::{DeviceAlerts, fleet, top_alerts};
use crate::metrics::Ranking;
use crate::tracker::{Alert, build_alerts, sort_alerts};

/// An evaluation a part of the fleet at a time (see the module's text):
/// [`EvaluationParts::add`] each part's rows — whole devices, every row of a
/// device in one part —, then [`EvaluationParts::finish`]. The result is
/// [`evaluate_with`](crate::evaluate_with)'s on all the rows at once, however
/// the devices are grouped and in whatever order the parts come (which is how
/// `evaluate_with` computes it: one part).
///
/// What it holds between parts: the alerts, one breakdown and fleet entry per
/// device, the events' detections, and each evaluated row's score, tag and
/// state.
#[derive(Debug)]
pub struct EvaluationParts {
    rows_total: u64,
    rows_train: u64,
    labelled: bool,
    has_states: Option<bool>,
    cols: Columns,
    per_device: Vec<Breakdown>,
    fleet: Vec<DeviceAlerts>,
    alerts: Vec<Alert>,
    /// By the columns' tag codes.
    by_tag: BTreeMap<u32, TagEvents>,
    events: u64,
    delays_s: Vec<f64>,
    device_days: Vec<(String, f64)>,
    attribution_method: Option<String>,
}

impl Default for EvaluationParts {
    fn default() -> Self {
        Self::new()
    }
}

impl EvaluationParts {
    /// No part yet.
    pub fn new() -> Self {
        EvaluationParts {
            rows_total: 0,
            rows_train: 0,
            labelled: false,
            has_states: None,
            cols: Columns::new(),
            per_device: Vec::new(),
            fleet: Vec::new(),
            alerts: Vec::new(),
            by_tag: BTreeMap::new(),
            events: 0,
            delays_s: Vec::new(),
            device_days: Vec::new(),
            attribution_method: None,
        }
    }

    /// Evaluated rows so far.
    pub fn rows_evaluated(&self) -> u64 {
        self.cols.scores.len() as u64
    }

    /// Evaluates the rows of one part of the fleet (every row of its devices)
    /// and keeps what the whole evaluation needs of them. `ctx` is the whole
    /// evaluation's, with the part's contributions (its row numbers) for the
    /// alerts' attribution.
    ///
    /// # Errors
    /// [`Error::Misaligned`] when the inputs do not line up, or when the part
    /// has a state column and an earlier part had none (or the other way).
    pub fn add(&mut self, rows: &ScoredRows<'_>, ctx: &EvalContext<'_>) -> Result<()> {
        rows.check()?;
        let has_states = rows.states.is_some();
        if self.has_states.is_some_and(|h| h != has_states) {
            return Err(Error::Misaligned(
                "some parts of the fleet have a state column and others none".to_owned(),
            ));
        }
        self.has_states = Some(has_states);
        let p = ctx.params.params();
        let threshold = ctx.threshold.value;
        let keep = evaluated_rows(rows, ctx.split, &p.states);
        self.labelled |= rows.tag_codes.is_some();
        self.rows_total += rows.timestamps.len() as u64;
        self.rows_train += rows
            .timestamps
            .iter()
            .filter(|&&t| ctx.split.is_train(t))
            .count() as u64;
        let codes = self.cols.tag_names.codes_of(rows.tag_names);
        self.cols.extend(rows, &keep, &codes);

        let by_device = per_device_rows(rows, &keep);
        self.per_device
            .extend(per_device(rows, &by_device, threshold));
        let evs = events(rows, &by_device);
        let mut alerts = build_alerts(
            rows,
            &keep,
            threshold,
            ctx.calibration,
            ctx.alerts,
            ctx.attribution,
        );
        label_alerts(rows, &evs, &mut alerts, p.grace_seconds, ctx.alerts);
        let (by_tag, delays) = detections(rows, &evs, &alerts, p.grace_seconds);
        for (tag, found) in by_tag {
            self.by_tag
                .entry(codes[tag as usize])
                .or_default()
                .merge(found);
        }
        self.events += evs.len() as u64;
        self.delays_s.extend(delays);
        self.device_days.extend(
            days_of_each(rows, &by_device)
                .into_iter()
                .map(|(d, days)| (rows.device_names[d as usize].clone(), days)),
        );
        self.fleet.extend(fleet(rows, &by_device, &alerts));
        self.alerts.extend(alerts);
        if let Some(a) = ctx.attribution {
            self.attribution_method
                .get_or_insert_with(|| a.method.clone());
        }
        Ok(())
    }

    /// The evaluation of every part added, and every alert (by start, then
    /// device).
    ///
    /// # Errors
    /// [`Error::Misaligned`] when a device came in two parts.
    pub fn finish(self, ctx: &EvalContext<'_>) -> Result<Evaluated> {
        let EvaluationParts {
            rows_total,
            rows_train,
            labelled,
            has_states,
            cols,
            mut per_device,
            mut fleet,
            mut alerts,
            by_tag,
            events,
            delays_s,
            mut device_days,
            attribution_method,
        } = self;
        per_device.sort_by(|a, b| a.key.cmp(&b.key));
        if let Some(w) = per_device.windows(2).find(|w| w[0].key == w[1].key) {
            return Err(Error::Misaligned(format!(
                "device {} came in two parts of the fleet",
                w[0].key
            )));
        }
        fleet.sort_by(|a, b| a.device.cmp(&b.device));
        sort_alerts(&mut alerts);
        // Summed by device id: the same sum however the devices were grouped.
        device_days.sort_by(|a, b| a.0.cmp(&b.0));
        let p = ctx.params.params();
        let threshold = ctx.threshold;
        let labels = cols.labels();
        let ranked = Ranking::new(&cols.scores, &labels);
        let (roc_curve, pr_curve) = ranked.curves(200);
        let counts = EventCounts {
            events,
            detected: by_tag.values().map(|t| t.detected).sum(),
            delays_s,
            device_days: device_days.iter().map(|d| d.1).sum(),
            labelled,
        };
        let evaluation = Evaluation {
            split: split_info(ctx.split),
            threshold,
            rows_total,
            rows_train,
            rows_evaluated: cols.scores.len() as u64,
            rows_faulty: labels.iter().filter(|&&l| l).count() as u64,
            eval_states: if has_states == Some(true) {
                p.states.iter().map(|s| s.as_str().to_owned()).collect()
            } else {
                vec!["all".to_owned()]
            },
            labelled,
            at_threshold: PointMetrics::new(ranked.confusion_above(threshold.value)),
            roc_auc: ranked.roc_auc(),
            pr_auc: ranked.average_precision(),
            per_fault: per_fault(&cols, threshold.value, &by_tag, labelled),
            per_device,
            per_state: per_state(&cols, &labels, threshold.value),
            events: event_metrics(&counts, &alerts, p),
            sweep: sweep(&ranked, &p.sweep_percentiles),
            attribution_method,
            top_alerts: top_alerts(&alerts, p.top_n),
            fleet,
            roc_curve,
            pr_curve,
        };
        Ok(Evaluated { evaluation, alerts })
    }
}
