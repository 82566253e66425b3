//! Scoring and evaluating a fleet a group of devices at a time, for datasets
//! too large to hold at once: [`score_grouped`] over any [`DeviceGroups`].
//!
//! Each group's rows are scored (with the contributions of its rows above the
//! threshold, for the alerts' attribution), evaluated by
//! [`itap_eval::EvaluationParts`] (its devices' alerts, events, breakdowns and
//! the compact columns of its evaluated rows), appended to scores.csv and
//! offered to the report's timelines; then the group is dropped. What stays
//! between groups: the alerts, one breakdown per device, and 13 bytes per
//! evaluated row.

use std::path::Path;
use std::time::Instant;

use itap_eval::{
    Attribution, CheckedEval, EvalContext, EvaluationParts, ScoredRows, ScoresCsv, Split, Timelines,
};

use crate::error::{Error, Result};
use crate::model::ModelFile;
use crate::pipeline::grouped::{DeviceGroups, groups_of};
use crate::pipeline::report::{Evaluated, MAX_TIMELINES, Reported, RunContext, explained};
use crate::pipeline::split::split_for_bounds;

/// What scoring a fleet a group of devices at a time is told besides the data
/// (see [`score_grouped`]).
#[derive(Debug, Clone, Copy)]
pub struct GroupedScoring<'a> {
    /// The model.
    pub model: &'a ModelFile,
    /// Where it was read from (named in errors).
    pub model_path: &'a Path,
    /// The threshold's rule and the evaluation's settings.
    pub eval: &'a CheckedEval,
    /// What metrics.json records, and the `[alerts]` settings.
    pub ctx: &'a RunContext,
    /// Rows read at a time: a group's devices (a device with more is a group
    /// alone).
    pub group_rows: u64,
    /// The split to evaluate at; `None`: the model's cut over the data's span
    /// (as [`crate::split_at_model_cut`] gives it).
    pub split: Option<&'a Split>,
}

/// Scores every row of `data` with `how.model`, evaluates the rows after the
/// model's cut and writes metrics.json, alerts.json, scores.csv and
/// report.html into `out`, a group of devices at a time (see the module's
/// text). The files are those [`crate::evaluate_scores_and_write`] writes for
/// the same rows in memory, but for the order of scores.csv's lines: group
/// after group (devices by id), each group's rows in time order. They are put
/// in place only when every group is done.
/// `on_group(devices done, devices)` is called after each group.
///
/// # Errors
/// [`Error::NoData`] without rows; [`Error::Eval`] for a threshold rule that
/// needs every held-back row's score
/// (`eval.target_false_alerts_per_device_day`); the model's, the source's and
/// the evaluation's errors.
pub fn score_grouped(
    data: &mut dyn DeviceGroups,
    how: &GroupedScoring<'_>,
    out: &Path,
    on_group: &mut dyn FnMut(usize, usize),
) -> Result<Reported> {
    score_grouped_timed(data, how, out, on_group).map(|(reported, _)| reported)
}

/// Where [`score_grouped_timed`]'s time went, in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GroupedTimes {
    /// Reading each group and scoring it (features, detector, the
    /// contributions kept).
    pub(crate) score: f64,
    /// Evaluating each group, the end of the evaluation, and writing and
    /// putting the files in place.
    pub(crate) evaluate: f64,
}

/// [`score_grouped`], with the time its scoring and its evaluating took.
pub(crate) fn score_grouped_timed(
    data: &mut dyn DeviceGroups,
    how: &GroupedScoring<'_>,
    out: &Path,
    on_group: &mut dyn FnMut(usize, usize),
) -> Result<(Reported, GroupedTimes)> {
    let mut times = GroupedTimes::default();
    let started = Instant::now();
    let model = how.model;
    let threshold = how.eval.threshold(&model.training_scores)?;
    let (first, last) = data
        .time_bounds()
        .ok_or_else(|| Error::NoData("the data set has no rows".to_owned()))?;
    let split: Split = match how.split {
        Some(s) => *s,
        None => split_for_bounds(first, last, model, how.model_path)?,
    };
    let devices = data.devices().to_vec();
    let mut parts = EvaluationParts::new();
    let mut timelines = Timelines::new(split.cut_us, MAX_TIMELINES);
    let mut csv = ScoresCsv::create(&out.join("scores.csv"))?;
    let method = model.attribution_method().to_owned();
    let mut done = 0;
    times.evaluate += started.elapsed().as_secs_f64();
    for group in groups_of(&devices, how.group_rows.max(1)) {
        let t = Instant::now();
        let batch = data.load(&group)?;
        let ts = batch.timestamps();
        let (scores, kept) =
            model.score_and_explain(&batch, |r, s| explained(&split, ts[r], s, &threshold))?;
        times.score += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let rows = ScoredRows::from_batch(&batch, &scores)?;
        let contributions = |r: usize| kept.of_row(r);
        let attribution = Attribution {
            method: method.clone(),
            features: &model.feature_names,
            families: &model.feature_families,
            contributions: &contributions,
        };
        parts.add(&rows, &context(&split, threshold, how, Some(&attribution)))?;
        timelines.offer(&rows);
        csv.append(&rows, threshold.value)?;
        times.evaluate += t.elapsed().as_secs_f64();
        done += group.len();
        on_group(done, devices.len());
    }
    let t = Instant::now();
    let evaluated = parts.finish(&context(&split, threshold, how, None))?;
    let reported = Evaluated::new(evaluated, threshold, model, how.ctx)
        .stage_with(csv.finish()?, &timelines, out)?
        .commit()?;
    times.evaluate += t.elapsed().as_secs_f64();
    Ok((reported, times))
}

/// The evaluation's context for one group (with its contributions) or for the
/// end.
fn context<'a>(
    split: &'a Split,
    threshold: itap_eval::Threshold,
    how: &'a GroupedScoring<'_>,
    attribution: Option<&'a Attribution<'a>>,
) -> EvalContext<'a> {
    EvalContext {
        split,
        threshold,
        params: how.eval,
        alerts: &how.ctx.alerts,
        calibration: &how.model.training_scores,
        attribution,
    }
}
