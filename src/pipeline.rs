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
use itap_telemetry::{
    Batch, CheckedSimParams, InvalidParam, ReadOptions, simulate, write_atomic, write_csv,
};
use itap_validate::{CheckedValidation, Report, Validated, ValidatedChunks, validate_file};
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
    conclude(ingest, outcome, source, report).await
}

/// Reads a CSV and validates it in memory, computing the file's SHA-256 alongside
/// (for the report and the ingest ledger): the validated rows when the verdict
/// lets them be used (valid, or quarantined with the bad rows removed), else
/// [`Error::Refused`].
///
/// # Errors
/// [`Error::Telemetry`] naming file, line and column when it cannot be read;
/// [`Error::Refused`] when validation rejects it.
pub fn read_validated(
    path: &Path,
    opts: &ReadOptions,
    validation: &CheckedValidation,
) -> Result<(Validated<Batch>, Report)> {
    let (batch, sha) = std::thread::scope(|s| {
        let sha = s.spawn(|| itap_validate::sha256_file(path));
        let batch = itap_telemetry::read_csv(path, opts);
        (batch, sha.join())
    });
    let batch = batch?;
    let sha = match sha {
        Ok(r) => r?,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let (mut report, outcome) = itap_validate::validate_batch(batch, validation);
    report.input.path = Some(path.display().to_string());
    report.input.sha256 = Some(sha);
    report.input.bytes = std::fs::metadata(path).ok().map(|m| m.len());
    match outcome {
        Ok(valid) if report.verdict.is_storable() => Ok((valid, report)),
        _ => Err(Error::Refused {
            path: path.display().to_string(),
            reason: report
                .first_error()
                .unwrap_or_else(|| "error-severity findings".to_owned()),
        }),
    }
}

/// Stores validated rows that are already in memory, in transactions of
/// `settings.chunk_rows` rows, recording `report`'s input (path, SHA-256) in the
/// ingest ledger; `on_chunk` hears the rows written so far. On failure the ledger
/// entry is marked failed; committed chunks stay.
///
/// # Errors
/// The store's errors.
pub async fn store_batch(
    valid: &Validated<Batch>,
    report: &Report,
    store: &Store,
    settings: &StoreSettings,
    on_chunk: &mut (dyn FnMut(u64) + Send),
) -> Result<IngestReport> {
    let source = IngestSource {
        path: report.input.path.clone().unwrap_or_default(),
        sha256: report.input.sha256.clone().unwrap_or_default(),
    };
    let mut ingest = store
        .begin_ingest(
            &settings.dataset,
            valid.schema(),
            source.clone(),
            settings.on_conflict,
        )
        .await?;
    let mut written = 0u64;
    let outcome: Result<()> = async {
        for chunk in valid.chunks(settings.chunk_rows) {
            ingest.write(&chunk).await?;
            written += chunk.len() as u64;
            on_chunk(written);
        }
        Ok(())
    }
    .await;
    conclude(ingest, outcome, source, report).await
}

/// Loads a whole dataset from the store, in time order per device.
///
/// # Errors
/// [`Error::Store`]; [`Error::NoData`] when the dataset is empty.
pub async fn load_dataset(settings: &StoreSettings) -> Result<Batch> {
    let store = settings.connect().await?;
    let batch = store
        .load_range(&settings.dataset, &RangeQuery::all())
        .await;
    store.close().await;
    let batch = batch?;
    if batch.is_empty() {
        return Err(Error::NoData(format!(
            "dataset `{}` at {} holds no rows; ingest some into it first",
            settings.dataset, settings.url
        )));
    }
    Ok(batch)
}

/// The split a model was trained with, applied to `batch`: rows before the model's
/// cut are its training span, the rest are evaluated (all of them for data that
/// starts after the cut).
///
/// # Errors
/// [`Error::ModelFile`] when the model's training span cannot be read.
pub fn split_of_model(batch: &Batch, model: &ModelFile, model_path: &Path) -> Result<Split> {
    let parse = |t: &str| {
        itap_telemetry::parse_timestamp(t, itap_telemetry::TimeZone::default()).map_err(|e| {
            Error::ModelFile {
                path: model_path.to_path_buf(),
                reason: format!("training span `{t}`: {e}"),
            }
        })
    };
    let cut_us = parse(&model.training.until)?;
    let model_first = parse(&model.training.first)?;
    let (first, last) = batch
        .time_bounds()
        .ok_or_else(|| Error::NoData("the data set has no rows".to_owned()))?;
    Ok(Split {
        first_us: first.min(model_first),
        last_us: last.max(cut_us),
        cut_us,
        fraction: None,
    })
}

/// Ends an ingest: records the rows read and rejected when every chunk was
/// written, or marks the ledger entry failed (committed chunks stay) and returns
/// the error.
async fn conclude(
    ingest: itap_store::Ingest<'_>,
    outcome: Result<()>,
    source: IngestSource,
    report: &Report,
) -> Result<IngestReport> {
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
/// [`Error::NoData`] when the batch is empty; [`Error::Eval`] when the cut leaves a
/// side empty.
pub fn split_of(batch: &Batch, eval: &CheckedEval) -> Result<Split> {
    let (first, last) = batch
        .time_bounds()
        .ok_or_else(|| Error::NoData("the data set has no rows".to_owned()))?;
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
        Error::Eval(
            InvalidParam::new(
                "threshold_quantile",
                format!(
                    "the model records training-score quantiles {:?}; choose one of them or between them",
                    model.score_quantiles.iter().map(|s| s.q).collect::<Vec<_>>()
                ),
            )
            .into(),
        )
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
    write_atomic(
        &scores_path,
        itap_eval::scores_csv(&rows, threshold.value).as_bytes(),
    )?;
    let html = itap_eval::report_html("ITAP evaluation report", &metrics, &rows, 6)?;
    write_atomic(&report_path, html.as_bytes())?;
    Ok((evaluation, vec![metrics_path, scores_path, report_path]))
}

/// Runs every stage: generate (or read), validate, ingest, train, score, evaluate,
/// report. `on_stage` is called as each stage ends.
///
/// The input is read and validated once, in memory; its validated rows are stored
/// (idempotently: a re-run inserts nothing) and are the rows trained on, scored
/// and evaluated. To train on everything a dataset holds, load it with
/// [`load_dataset`] and call the stages one by one (as `itap train` does).
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

    let t = Instant::now();
    let (valid, report) = read_validated(&input, &p.read, &p.validation)?;
    sw.record(
        "read+validate",
        report.rows,
        t,
        format!(
            "{}, {} rows accepted, {} devices",
            report.verdict.as_str(),
            report.rows_accepted,
            valid.device_names().len()
        ),
    );

    let t = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let ingested = runtime.block_on(async {
        let store = p.store.connect().await?;
        let done = store_batch(&valid, &report, &store, &p.store, &mut |_| {}).await;
        store.close().await;
        done
    })?;
    sw.record(
        "ingest",
        valid.len() as u64,
        t,
        format!(
            "{} dataset `{}`: inserted {}, duplicates {}, conflicts {}",
            p.store.url,
            p.store.dataset,
            ingested.counts.inserted,
            ingested.counts.duplicates,
            ingested.counts.conflicts
        ),
    );
    // What is trained and scored: the input's validated rows, just stored.
    let batch = valid.into_inner();

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
