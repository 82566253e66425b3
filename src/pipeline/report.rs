//! Evaluation and the artifacts a run leaves: metrics.json, alerts.json,
//! scores.csv and report.html.

use std::path::{Path, PathBuf};

use itap_eval::{
    ALERTS_FORMAT_VERSION, Alert, AlertsFile, Attribution, CheckedAlerts, CheckedEval, EvalContext,
    Evaluation, InputDigest, METRICS_FORMAT_VERSION, MetricsFile, ScoredRows, Split, Threshold,
    ThresholdRule, Timelines,
};
use itap_store::{AlertRecord, AlertsWritten};
use itap_telemetry::{AtomicFile, Batch, TimeZone, parse_timestamp};

use crate::error::{Error, Result};
use crate::model::ModelFile;
use crate::pipeline::ingest::{StoreSettings, store_runtime};
use crate::pipeline::score::{RowContributions, Scored};

/// What a run's evaluation is told besides the scores: what metrics.json records
/// about the input and configuration, and the `[alerts]` settings.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The input.
    pub input: InputDigest,
    /// The configuration.
    pub config: serde_json::Value,
    /// How alerts open, close and are routed.
    pub alerts: CheckedAlerts,
}

/// What [`evaluate_and_write`] measured and wrote.
#[derive(Debug, Clone)]
pub struct Reported {
    /// The evaluation (metrics.json).
    pub evaluation: Evaluation,
    /// The alerts over the evaluated rows (alerts.json).
    pub alerts: Vec<Alert>,
    /// The files written.
    pub files: Vec<PathBuf>,
}

/// The rows the model held back to set its threshold on: those of the batch in
/// the held-back last slice of the training span (or the whole span when none
/// was held back), in the evaluated states, and, unless the model was trained
/// unsupervised, without a fault tag, as in training.
///
/// # Errors
/// [`Error::NoData`] when the model file's training span does not parse.
pub fn calibration_rows(batch: &Batch, model: &ModelFile, eval: &CheckedEval) -> Result<Vec<bool>> {
    let t = &model.training;
    let bad = |e: itap_telemetry::Error| Error::NoData(format!("the model's training span: {e}"));
    let from = match &t.calibration_from {
        Some(s) => parse_timestamp(s, TimeZone::default()).map_err(bad)?,
        None => parse_timestamp(&t.first, TimeZone::default()).map_err(bad)? - 1,
    };
    let until = parse_timestamp(&t.until, TimeZone::default()).map_err(bad)?;
    let states = &eval.params().states;
    let ts = batch.timestamps();
    Ok((0..batch.len())
        .map(|r| {
            ts[r] > from
                && ts[r] < until
                && batch.states().is_none_or(|s| states.contains(&s[r]))
                && (t.unsupervised || batch.tag_codes().is_none_or(|g| g[r] == 0))
        })
        .collect())
}

/// The operating threshold, by the evaluation's rule: from the model's sketch of
/// held-back training scores, or, for a target of false alerts per device-day,
/// from replaying the alert tracker over the held-back rows of `batch` (which
/// must then hold the model's training span).
///
/// # Errors
/// [`Error::Eval`] when the sketch is empty; [`Error::NoData`] when, for the
/// target rule, the batch has none of the held-back rows.
pub fn operating_threshold(
    batch: &Batch,
    scored: &Scored,
    model: &ModelFile,
    eval: &CheckedEval,
    alerts: &CheckedAlerts,
) -> Result<Threshold> {
    threshold_for_scores(batch, &scored.scores, model, eval, alerts)
}

/// [`operating_threshold`] from the scores alone (one per batch row).
///
/// # Errors
/// As [`operating_threshold`].
pub fn threshold_for_scores(
    batch: &Batch,
    scores: &[f64],
    model: &ModelFile,
    eval: &CheckedEval,
    alerts: &CheckedAlerts,
) -> Result<Threshold> {
    if !matches!(eval.rule(), ThresholdRule::TargetFalseAlerts(_)) {
        return Ok(eval.threshold(&model.training_scores)?);
    }
    let select = calibration_rows(batch, model, eval)?;
    if !select.contains(&true) {
        return Err(Error::NoData(format!(
            "eval.target_false_alerts_per_device_day sets the threshold on the rows the model held back ({} – {}), and this data has none of them; score the data the model was trained on, or use eval.threshold_quantile",
            model
                .training
                .calibration_from
                .as_deref()
                .unwrap_or(&model.training.first),
            model.training.until
        )));
    }
    let rows = ScoredRows::from_batch(batch, scores)?;
    Ok(eval.threshold_calibrated(&model.training_scores, &rows, &select, alerts)?)
}

/// Evaluates scores after the split, at the threshold itap-eval decides from the
/// model's held-back training scores, builds the alerts, and writes
/// metrics.json, alerts.json, scores.csv and report.html into `out`.
///
/// # Errors
/// [`crate::Error::Eval`] when evaluating or writing fails.
pub fn evaluate_and_write(
    batch: &Batch,
    scored: &Scored,
    model: &ModelFile,
    split: &Split,
    eval: &CheckedEval,
    ctx: &RunContext,
    out: &Path,
) -> Result<Reported> {
    let threshold = operating_threshold(batch, scored, model, eval, &ctx.alerts)?;
    let contributions = |r: usize| model.contributions(scored, r);
    evaluate_only(
        batch,
        &scored.scores,
        &contributions,
        threshold,
        model,
        split,
        eval,
        ctx,
    )?
    .write(batch, &scored.scores, out)
}

/// [`evaluate_and_write`] from the scores alone (one per batch row, as
/// [`ModelFile::score_rows`] gives them): the alerts' contributions are
/// computed again, a chunk of devices at a time, for the evaluated rows above
/// the threshold only. The same files as [`evaluate_and_write`] with the same
/// scores.
///
/// # Errors
/// As [`evaluate_and_write`]; the feature engine's errors.
pub fn evaluate_scores_and_write(
    batch: &Batch,
    scores: &[f64],
    model: &ModelFile,
    split: &Split,
    eval: &CheckedEval,
    ctx: &RunContext,
    out: &Path,
) -> Result<Reported> {
    evaluate_scores(batch, scores, model, split, eval, ctx)?.write(batch, scores, out)
}

/// The computing half of [`evaluate_scores_and_write`].
pub(crate) fn evaluate_scores(
    batch: &Batch,
    scores: &[f64],
    model: &ModelFile,
    split: &Split,
    eval: &CheckedEval,
    ctx: &RunContext,
) -> Result<Evaluated> {
    let threshold = threshold_for_scores(batch, scores, model, eval, &ctx.alerts)?;
    // The tracker asks for the contributions of evaluated rows above the
    // threshold; these are a superset (every state).
    let ts = batch.timestamps();
    let wanted: Vec<bool> = (0..batch.len().min(scores.len()))
        .map(|r| explained(split, ts[r], scores[r], &threshold))
        .collect();
    let kept = model.contributions_of(batch, &wanted)?;
    evaluate_explained(batch, scores, &kept, threshold, model, split, eval, ctx)
}

/// The evaluated rows whose contributions the alerts ask for, at threshold
/// `t`: those after the training span scoring above it (a superset: every
/// state).
pub(crate) fn explained(split: &Split, ts: i64, score: f64, t: &Threshold) -> bool {
    !split.is_train(ts) && score > t.value
}

/// [`evaluate_only`] with the contributions kept for the rows [`explained`]
/// names.
#[allow(clippy::too_many_arguments)]
pub(crate) fn evaluate_explained(
    batch: &Batch,
    scores: &[f64],
    kept: &RowContributions,
    threshold: Threshold,
    model: &ModelFile,
    split: &Split,
    eval: &CheckedEval,
    ctx: &RunContext,
) -> Result<Evaluated> {
    let contributions = |r: usize| kept.of_row(r);
    evaluate_only(
        batch,
        scores,
        &contributions,
        threshold,
        model,
        split,
        eval,
        ctx,
    )
}

/// An evaluation not yet written: what [`evaluate_and_write`] computes before it
/// writes anything (the pipeline computes it while the rows are still being
/// stored, and writes only once they are).
#[derive(Debug)]
pub(crate) struct Evaluated {
    metrics: MetricsFile,
    alerts: AlertsFile,
}

/// The computing half of [`evaluate_and_write`] at a threshold already decided:
/// nothing is written.
#[allow(clippy::too_many_arguments)]
fn evaluate_only(
    batch: &Batch,
    scores: &[f64],
    contributions: &dyn Fn(usize) -> Vec<f64>,
    threshold: Threshold,
    model: &ModelFile,
    split: &Split,
    eval: &CheckedEval,
    ctx: &RunContext,
) -> Result<Evaluated> {
    let rows = ScoredRows::from_batch(batch, scores)?;
    let attribution = Attribution {
        method: model.attribution_method().to_owned(),
        features: &model.feature_names,
        families: &model.feature_families,
        contributions,
    };
    let evaluated = itap_eval::evaluate_with(
        &rows,
        &EvalContext {
            split,
            threshold,
            params: eval,
            alerts: &ctx.alerts,
            calibration: &model.training_scores,
            attribution: Some(&attribution),
        },
    )?;
    Ok(Evaluated::new(evaluated, threshold, model, ctx))
}

impl Evaluated {
    /// metrics.json's and alerts.json's contents from an evaluation at `threshold`.
    pub(crate) fn new(
        evaluated: itap_eval::Evaluated,
        threshold: Threshold,
        model: &ModelFile,
        ctx: &RunContext,
    ) -> Self {
        Evaluated {
            metrics: MetricsFile {
                format_version: METRICS_FORMAT_VERSION,
                input: ctx.input.clone(),
                config: ctx.config.clone(),
                detector: model.describe(),
                evaluation: evaluated.evaluation,
            },
            alerts: AlertsFile {
                format_version: ALERTS_FORMAT_VERSION,
                threshold,
                params: ctx.alerts.params().clone(),
                alerts: evaluated.alerts,
            },
        }
    }

    /// The writing half of [`evaluate_and_write`]: metrics.json, alerts.json,
    /// scores.csv and report.html into `out` (the rows and scores evaluated).
    pub(crate) fn write(self, batch: &Batch, scores: &[f64], out: &Path) -> Result<Reported> {
        self.stage(batch, scores, out)?.commit()
    }

    /// Writes metrics.json, alerts.json, scores.csv and report.html into
    /// temporary files in `out`, synced but not in place: [`Staged::commit`]
    /// publishes them, dropping the [`Staged`] removes them.
    pub(crate) fn stage(self, batch: &Batch, scores: &[f64], out: &Path) -> Result<Staged> {
        let rows = ScoredRows::from_batch(batch, scores)?;
        let threshold = self.alerts.threshold.value;
        let scores_file = stage_scores(&rows, threshold, out)?;
        self.stage_beside(&rows, scores_file, out)
    }

    /// [`Evaluated::stage`] with scores.csv written already (by [`stage_scores`],
    /// at this evaluation's threshold, from the same `rows`).
    pub(crate) fn stage_beside(
        self,
        rows: &ScoredRows<'_>,
        scores_file: AtomicFile,
        out: &Path,
    ) -> Result<Staged> {
        let mut timelines = Timelines::for_evaluation(&self.metrics.evaluation, MAX_TIMELINES)?;
        timelines.offer(rows);
        self.stage_with(scores_file, &timelines, out)
    }

    /// [`Evaluated::stage`] with scores.csv written already and the report's
    /// timelines gathered (a group of devices at a time).
    pub(crate) fn stage_with(
        self,
        scores_file: AtomicFile,
        timelines: &Timelines,
        out: &Path,
    ) -> Result<Staged> {
        let Evaluated { metrics, alerts } = self;
        let metrics_file = itap_eval::stage_json(&metrics, &out.join("metrics.json"))?;
        let alerts_file = itap_eval::stage_json(&alerts, &out.join("alerts.json"))?;
        let html = itap_eval::report_page(REPORT_TITLE, &metrics, timelines, &alerts.alerts)?;
        let report_file = itap_telemetry::stage_atomic(out.join("report.html"), html.as_bytes())?;
        Ok(Staged {
            evaluation: metrics.evaluation,
            alerts: alerts.alerts,
            files: vec![metrics_file, alerts_file, scores_file, report_file],
        })
    }
}

/// scores.csv of `rows`, flagged above `threshold`, into a temporary file in
/// `out` (synced, not in place): it needs the threshold but not the evaluation,
/// so a caller that knows the threshold first can write it while evaluating.
///
/// # Errors
/// [`crate::Error::Eval`] when writing fails.
pub(crate) fn stage_scores(
    rows: &ScoredRows<'_>,
    threshold: f64,
    out: &Path,
) -> Result<AtomicFile> {
    Ok(itap_eval::stage_scores_csv(
        rows,
        threshold,
        &out.join("scores.csv"),
    )?)
}

/// The report page's title.
const REPORT_TITLE: &str = "ITAP evaluation report";

/// Devices whose score timelines the report draws.
pub(crate) const MAX_TIMELINES: usize = 6;

/// An evaluation's files written but not yet in place (see [`Evaluated::stage`]).
#[derive(Debug)]
pub(crate) struct Staged {
    evaluation: Evaluation,
    alerts: Vec<Alert>,
    files: Vec<AtomicFile>,
}

impl Staged {
    /// Renames the files into place, in the order metrics.json, alerts.json,
    /// scores.csv, report.html.
    pub(crate) fn commit(self) -> Result<Reported> {
        let mut paths = Vec::with_capacity(self.files.len());
        for file in self.files {
            paths.push(file.path().to_path_buf());
            file.commit()?;
        }
        Ok(Reported {
            evaluation: self.evaluation,
            alerts: self.alerts,
            files: paths,
        })
    }
}

/// The store's record of an alert: its figures as columns, its family shares,
/// top features, labels and fault (if labelled) as JSON in `detail`.
pub fn alert_record(alert: &Alert, model: &str) -> AlertRecord {
    let detail = serde_json::json!({
        "families": alert.families,
        "top_features": alert.top_features,
        "labels": alert.labels,
        "fault": alert.fault,
        "open": alert.open,
        "peak_tail_log10": alert.peak_tail_log10,
    });
    AlertRecord {
        id: alert.id.clone(),
        device: alert.device.clone(),
        start_us: alert.start_us,
        end_us: alert.end_us,
        peak_us: alert.peak_us,
        rows: alert.rows,
        peak_score: alert.peak_score,
        mean_score: alert.mean_score,
        severity: alert.severity.as_str().to_owned(),
        family: alert.family.clone().unwrap_or_default(),
        route: alert.route.clone(),
        rule: alert.rule.clone(),
        detail: detail.to_string(),
        model: model.to_owned(),
    }
}

/// Stores alerts in the `itap_alerts` table of the settings' dataset: an alert
/// stored before (same id) is replaced when it changed (an alert that was still
/// open, now longer), else left as it is.
///
/// # Errors
/// [`Error::Store`] when the store cannot be reached or refuses an alert.
pub fn store_alerts(
    settings: &StoreSettings,
    alerts: &[Alert],
    model: &str,
) -> Result<AlertsWritten> {
    let records: Vec<AlertRecord> = alerts.iter().map(|a| alert_record(a, model)).collect();
    store_runtime()?.block_on(async {
        let store = settings.connect().await?;
        let done = store.put_alerts(&settings.dataset, &records).await;
        store.close().await;
        Ok(done?)
    })
}
