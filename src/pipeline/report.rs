//! Evaluation and the artifacts a run leaves: metrics.json, scores.csv and
//! report.html.

use std::path::{Path, PathBuf};

use itap_eval::{
    Attribution, CheckedEval, Evaluation, InputDigest, METRICS_FORMAT_VERSION, MetricsFile,
    ScoredRows, Split,
};
use itap_telemetry::Batch;

use crate::error::Result;
use crate::model::ModelFile;
use crate::pipeline::score::Scored;

/// What metrics.json records besides the evaluation.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The input.
    pub input: InputDigest,
    /// The configuration.
    pub config: serde_json::Value,
}

/// Evaluates scores after the split, at the threshold itap-eval decides from the
/// model's training scores, and writes metrics.json, scores.csv and report.html
/// into `out`.
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
) -> Result<(Evaluation, Vec<PathBuf>)> {
    let threshold = eval.threshold(&model.training_scores)?;
    let rows = ScoredRows::from_batch(batch, &scored.scores)?;
    let contributions = |r: usize| model.contributions(scored, r);
    let attribution = Attribution {
        method: model.attribution_method().to_owned(),
        features: &model.feature_names,
        families: &model.feature_families,
        contributions: &contributions,
    };
    let evaluation = itap_eval::evaluate(&rows, split, threshold, eval, Some(&attribution))?;
    let metrics = MetricsFile {
        format_version: METRICS_FORMAT_VERSION,
        input: ctx.input.clone(),
        config: ctx.config.clone(),
        detector: model.describe(),
        evaluation: evaluation.clone(),
    };
    let metrics_path = out.join("metrics.json");
    let scores_path = out.join("scores.csv");
    let report_path = out.join("report.html");
    itap_eval::write_json(&metrics, &metrics_path)?;
    itap_telemetry::write_atomic(
        &scores_path,
        itap_eval::scores_csv(&rows, threshold.value).as_bytes(),
    )?;
    let html = itap_eval::report_html("ITAP evaluation report", &metrics, &rows, 6)?;
    itap_telemetry::write_atomic(&report_path, html.as_bytes())?;
    Ok((evaluation, vec![metrics_path, scores_path, report_path]))
}
