//! The pipeline: each stage callable alone, and [`run`] for all of them, with a
//! callback told about every stage (rows, wall time) as it ends.

use std::path::{Path, PathBuf};
use std::time::Instant;

use itap_anomaly::CheckedDetector;
use itap_eval::{
    Attribution, CheckedEval, Evaluation, InputDigest, METRICS_FORMAT_VERSION, MetricsFile,
    ScoredRows, Split, Threshold, ThresholdRule,
};
use itap_features::CheckedFeatures;
use itap_store::{IngestReport, IngestSource, OnConflict, RangeQuery, Store, StoreOptions};
use itap_telemetry::{Batch, CheckedSimParams, ReadOptions, simulate, write_csv};
use itap_validate::{CheckedValidation, Report, ValidatedChunks, validate_file};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{ATTRIBUTION_METHOD, ModelFile, Scored, TrainingSet, train};

/// Where and how to store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    /// Database URL.
    pub url: String,
    /// Dataset name.
    pub dataset: String,
    /// PostgreSQL schema, if any.
    pub pg_schema: Option<String>,
    /// Conflict policy.
    pub on_conflict: OnConflict,
    /// Rows per transaction.
    pub chunk_rows: usize,
}

impl StoreSettings {
    /// Opens the store.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn connect(&self) -> Result<Store> {
        let mut o = StoreOptions::new(self.url.clone());
        o.pg_schema = self.pg_schema.clone();
        Ok(Store::connect_with(&o).await?)
    }
}

/// One finished stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTiming {
    /// Stage name.
    pub stage: String,
    /// Rows it handled.
    pub rows: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// A short summary.
    pub detail: String,
}

impl StageTiming {
    /// Rows per second.
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.seconds.max(1e-9)
    }
}

/// Times a stage and reports it.
struct Stopwatch<'a> {
    on_stage: &'a mut dyn FnMut(&StageTiming),
    timings: Vec<StageTiming>,
}

impl Stopwatch<'_> {
    fn record(&mut self, stage: &str, rows: u64, started: Instant, detail: String) {
        let t = StageTiming {
            stage: stage.to_owned(),
            rows,
            seconds: started.elapsed().as_secs_f64(),
            detail,
        };
        (self.on_stage)(&t);
        self.timings.push(t);
    }
}

/// Validates a file and stores its validated rows (see [`store_validated`]).
///
/// # Errors
/// [`Error::Refused`] when validation rejects the file (nothing is stored); the
/// stages' errors otherwise.
pub async fn ingest_file(
    path: &Path,
    opts: &ReadOptions,
    validation: &CheckedValidation,
    quarantine: Option<&Path>,
    store: &Store,
    settings: &StoreSettings,
    on_chunk: &mut (dyn FnMut(u64) + Send),
) -> Result<(Report, IngestReport)> {
    let report = validate_file(path, opts, validation, quarantine)?;
    if !report.verdict.is_storable() {
        return Err(Error::Refused {
            path: path.display().to_string(),
            reason: report
                .first_error()
                .unwrap_or_else(|| "error-severity findings".to_owned()),
        });
    }
    let done = store_validated(path, opts, validation, &report, store, settings, on_chunk).await?;
    Ok((report, done))
}

/// Stores the rows of a file that `report` found storable: a reading thread re-reads
/// it in validated chunks (checking its SHA-256 is still the report's) while the
/// database writes them; `on_chunk` hears the rows written so far. On failure the
/// ledger entry is marked failed; committed chunks stay.
///
/// # Errors
/// The store's and the re-read's errors.
pub async fn store_validated(
    path: &Path,
    opts: &ReadOptions,
    validation: &CheckedValidation,
    report: &Report,
    store: &Store,
    settings: &StoreSettings,
    on_chunk: &mut (dyn FnMut(u64) + Send),
) -> Result<IngestReport> {
    let chunks = ValidatedChunks::open(path, opts, validation, report, settings.chunk_rows)?;
    let schema = chunks.schema().clone();
    let source = IngestSource {
        path: path.display().to_string(),
        sha256: report.input.sha256.clone().unwrap_or_default(),
    };
    let mut ingest = store
        .begin_ingest(
            &settings.dataset,
            &schema,
            source.clone(),
            settings.on_conflict,
        )
        .await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let reader = tokio::task::spawn_blocking(move || {
        for chunk in chunks {
            if tx.blocking_send(chunk).is_err() {
                break;
            }
        }
    });
    let mut written = 0u64;
    let outcome: Result<()> = async {
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk?;
            ingest.write(&chunk).await?;
            written += chunk.len() as u64;
            on_chunk(written);
        }
        Ok(())
    }
    .await;
    drop(rx);
    let _ = reader.await;
    match outcome {
        Ok(()) => {
            let rejected = report.rows - report.rows_accepted;
            Ok(ingest.finish(source, report.rows, rejected).await?)
        }
        Err(e) => {
            let _ = ingest.fail(&e.to_string()).await;
            Err(e)
        }
    }
}

/// Where the pipeline's telemetry comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Simulate with these parameters and write the CSV to this path first.
    Simulate(Box<CheckedSimParams>, PathBuf),
    /// Read this CSV file.
    Csv(PathBuf),
}

/// Everything [`run`] needs, checked.
#[derive(Debug, Clone)]
pub struct RunParams {
    /// The telemetry.
    pub source: Source,
    /// How to read CSV.
    pub read: ReadOptions,
    /// Validation.
    pub validation: CheckedValidation,
    /// Storage.
    pub store: StoreSettings,
    /// Features.
    pub features: CheckedFeatures,
    /// Detector.
    pub detector: CheckedDetector,
    /// Training rows.
    pub training: TrainingSet,
    /// Split, threshold and evaluation.
    pub eval: CheckedEval,
    /// Folder for model.json, metrics.json, scores.csv, report.html.
    pub out_dir: PathBuf,
    /// The configuration, recorded in metrics.json.
    pub config_json: serde_json::Value,
}

/// What [`run`] produced.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Every stage with rows and wall time.
    pub timings: Vec<StageTiming>,
    /// The evaluation.
    pub evaluation: Evaluation,
    /// The files written.
    pub artifacts: Vec<PathBuf>,
}

/// The split of a batch's time span.
///
/// # Errors
/// [`Error::Eval`] when the batch is empty or the cut leaves a side empty.
pub fn split_of(batch: &Batch, eval: &CheckedEval) -> Result<Split> {
    let (first, last) = batch
        .time_bounds()
        .ok_or_else(|| Error::NoTrainingRows("the data set has no rows".to_owned()))?;
    Ok(eval.split(first, last)?)
}

/// The operating threshold from the model's training scores.
///
/// # Errors
/// [`Error::Eval`] when the model has no training scores.
pub fn threshold_of(model: &ModelFile, eval: &CheckedEval) -> Result<Threshold> {
    let q = match eval.rule() {
        ThresholdRule::TrainingQuantile(q) => q,
        ThresholdRule::TargetAlertRate(r) => 1.0 - r,
    };
    let value = model.training_quantile(q).ok_or_else(|| {
        Error::Eval(itap_eval::Error::InvalidParam {
            name: "eval.threshold_quantile".into(),
            reason: format!(
                "the model records training-score quantiles {:?}; choose one of them or between them",
                model.score_quantiles.iter().map(|s| s.q).collect::<Vec<_>>()
            ),
        })
    })?;
    Ok(Threshold {
        value,
        rule: eval.rule(),
        training_rows: model.training.rows_used,
    })
}

/// What metrics.json records besides the evaluation.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The input.
    pub input: InputDigest,
    /// The configuration.
    pub config: serde_json::Value,
}

/// Evaluates scores and writes metrics.json, scores.csv and report.html into `out`.
///
/// # Errors
/// [`Error::Eval`] when evaluating or writing fails.
pub fn evaluate_and_report(
    batch: &Batch,
    scored: &Scored,
    model: &ModelFile,
    split: &Split,
    eval: &CheckedEval,
    ctx: &RunContext,
    out: &Path,
) -> Result<(Evaluation, Vec<PathBuf>)> {
    let threshold = threshold_of(model, eval)?;
    let rows = ScoredRows::from_batch(batch, &scored.scores)?;
    let contributions = |r: usize| scored.contributions(r);
    let attribution = Attribution {
        method: ATTRIBUTION_METHOD.to_owned(),
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
    itap_eval::write_atomic(
        &scores_path,
        itap_eval::scores_csv(&rows, threshold.value).as_bytes(),
    )?;
    let html = itap_eval::report_html("ITAP evaluation report", &metrics, &rows, 6)?;
    itap_eval::write_atomic(&report_path, html.as_bytes())?;
    Ok((evaluation, vec![metrics_path, scores_path, report_path]))
}

/// Runs every stage: generate (or read), validate, ingest, load, train, score,
/// evaluate, report. `on_stage` is called as each stage ends.
///
/// # Errors
/// The first stage error; [`Error::Refused`] when validation rejects the input.
pub fn run(p: &RunParams, on_stage: &mut dyn FnMut(&StageTiming)) -> Result<RunSummary> {
    let mut sw = Stopwatch {
        on_stage,
        timings: Vec::new(),
    };
    let input = match &p.source {
        Source::Simulate(sim, path) => {
            let t = Instant::now();
            let batch = simulate(sim);
            write_csv(&batch, path)?;
            sw.record(
                "generate",
                batch.len() as u64,
                t,
                format!(
                    "{} devices → {}",
                    batch.device_names().len(),
                    path.display()
                ),
            );
            path.clone()
        }
        Source::Csv(path) => path.clone(),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let (report, ingested, batch) = runtime.block_on(async {
        let store = p.store.connect().await?;
        let t = Instant::now();
        let (report, ingested) = ingest_file(
            &input,
            &p.read,
            &p.validation,
            None,
            &store,
            &p.store,
            &mut |_| {},
        )
        .await?;
        let seconds = t.elapsed().as_secs_f64();
        let t_load = Instant::now();
        let batch = store
            .load_range(&p.store.dataset, &RangeQuery::all())
            .await?;
        store.close().await;
        Ok::<_, Error>((report, (ingested, seconds), (batch, t_load)))
    })?;
    let (ingested, ingest_seconds) = ingested;
    // Validation and ingestion overlap in one call; report them as one stage.
    sw.timings.push(StageTiming {
        stage: "validate+ingest".into(),
        rows: report.rows,
        seconds: ingest_seconds,
        detail: format!(
            "{}; inserted {}, duplicates {}, conflicts {}",
            report.verdict.as_str(),
            ingested.counts.inserted,
            ingested.counts.duplicates,
            ingested.counts.conflicts
        ),
    });
    (sw.on_stage)(sw.timings.last().expect("just pushed"));
    let (batch, t_load) = batch;
    sw.record(
        "load",
        batch.len() as u64,
        t_load,
        format!("dataset `{}`", p.store.dataset),
    );

    let split = split_of(&batch, &p.eval)?;
    let t = Instant::now();
    let (model, scored) = train(&batch, &split, &p.training, &p.features, &p.detector)?;
    let model_path = p.out_dir.join("model.json");
    model.save(&model_path)?;
    sw.record(
        "train",
        model.training.rows_used,
        t,
        format!(
            "{} features, {} of {} training rows used",
            model.feature_names.len(),
            model.training.rows_used,
            model.training.rows_in_span
        ),
    );
    // Training scored every row already (one pass of the fitted pieces); the score
    // stage below re-scores from the saved model, as `itap score` would.
    drop(scored);
    let t = Instant::now();
    let scored = model.score(&batch)?;
    sw.record(
        "score",
        batch.len() as u64,
        t,
        format!("model {}", model_path.display()),
    );

    let t = Instant::now();
    let (evaluation, mut artifacts) = evaluate_and_report(
        &batch,
        &scored,
        &model,
        &split,
        &p.eval,
        &RunContext {
            input: InputDigest {
                path: input.display().to_string(),
                sha256: report.input.sha256.clone(),
            },
            config: p.config_json.clone(),
        },
        &p.out_dir,
    )?;
    sw.record(
        "evaluate",
        evaluation.rows_evaluated,
        t,
        format!(
            "ROC-AUC {}, PR-AUC {}",
            evaluation.roc_auc.map_or("–".into(), |v| format!("{v:.3}")),
            evaluation.pr_auc.map_or("–".into(), |v| format!("{v:.3}"))
        ),
    );
    artifacts.insert(0, model_path);
    Ok(RunSummary {
        timings: sw.timings,
        evaluation,
        artifacts,
    })
}
