//! [`run`]: every stage in order, each timed and reported as it ends.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use itap_anomaly::CheckedDetector;
use itap_eval::{
    Alert, CheckedAlerts, CheckedEval, Evaluation, InputDigest, ScoredRows, ThresholdRule,
};
use itap_features::CheckedFeatures;
use itap_store::AlertsWritten;
use itap_telemetry::{AtomicFile, Batch, CheckedSimParams, ReadOptions, simulate, write_csv_to};
use itap_validate::{BatchStream, CheckedValidation, InputInfo, Policy, Report, Validated};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::pipeline::grouped::{DeviceGroups, GroupedTraining, train_grouped};
use crate::pipeline::grouped_score::{GroupedScoring, GroupedTimes, score_grouped_timed};
use crate::pipeline::ingest::{
    StoreSettings, read_validated, refused, spill_validated, store_batch, store_by_device,
    store_runtime, validate_file_with_progress, validate_in_memory,
};
use crate::pipeline::report::{
    Reported, RunContext, Staged, evaluate_explained, evaluate_scores, explained, stage_scores,
    store_alerts,
};
use crate::pipeline::spill::{Spill, SpillGroups};
use crate::pipeline::split::split_by_time;
use crate::pipeline::train::{TrainingSet, fit_chunked};
use crate::pipeline::yielding::behind_the_writer;

/// The file, in the output folder, that [`run`] writes the rows validation set
/// aside to under the quarantine policy.
pub const QUARANTINE_FILE: &str = "quarantine.csv";

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

/// Times the stages and tells the caller about each as it ends.
struct Stopwatch<'a> {
    on_stage: &'a mut dyn FnMut(&StageTiming),
    timings: Vec<StageTiming>,
}

impl Stopwatch<'_> {
    fn record(&mut self, stage: &str, rows: u64, started: Instant, detail: String) {
        self.record_seconds(stage, rows, started.elapsed().as_secs_f64(), detail);
    }

    fn record_seconds(&mut self, stage: &str, rows: u64, seconds: f64, detail: String) {
        self.tell(StageTiming {
            stage: stage.to_owned(),
            rows,
            seconds,
            detail,
        });
    }

    fn tell(&mut self, t: StageTiming) {
        (self.on_stage)(&t);
        self.timings.push(t);
    }
}

/// Where the pipeline's telemetry comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Simulate with these parameters; the CSV is written to this path for the
    /// user, and the simulated rows go on in memory.
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
    /// Storage (checked: [`ParamGuard::check`](itap_telemetry::ParamGuard::check)).
    pub store: StoreSettings,
    /// Features.
    pub features: CheckedFeatures,
    /// Detector.
    pub detector: CheckedDetector,
    /// Training rows.
    pub training: TrainingSet,
    /// Split, threshold and evaluation.
    pub eval: CheckedEval,
    /// How alerts open, close and are routed.
    pub alerts: CheckedAlerts,
    /// Folder for model.json, metrics.json, scores.csv, report.html.
    pub out_dir: PathBuf,
    /// The configuration, recorded in metrics.json.
    pub config_json: serde_json::Value,
    /// Rows held in memory at most: a larger input is set aside by device on
    /// disk, and stored and analysed from there a group of devices at a time
    /// (see [`run`]); 0 = always in memory.
    pub memory_rows: u64,
    /// Rows analysed at a time when the input is larger than `memory_rows`
    /// (a group of whole devices).
    pub group_rows: u64,
}

/// The default of [`RunParams::memory_rows`].
pub const DEFAULT_MEMORY_ROWS: u64 = 10_000_000;

/// What [`run`] produced.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Every stage with rows and wall time.
    pub timings: Vec<StageTiming>,
    /// The evaluation.
    pub evaluation: Evaluation,
    /// The alerts over the evaluated rows (also in alerts.json and the store).
    pub alerts: Vec<Alert>,
    /// What storing the alerts did.
    pub alerts_stored: AlertsWritten,
    /// The files written.
    pub artifacts: Vec<PathBuf>,
    /// Rows of the input validation set aside under the quarantine policy (and
    /// wrote to [`QUARANTINE_FILE`] in the output folder); 0 under the reject
    /// policy, which refuses an input with error rows instead.
    pub rows_quarantined: u64,
}

/// Simulates the fleet and writes its CSV for the user; the rows are validated in
/// memory, not read back — except under the quarantine policy (`quarantine` is
/// then the file for the set-aside rows), where the CSV is read back and
/// validated as a file, so that the set-aside rows are written with their lines.
fn generate(
    sim: &CheckedSimParams,
    path: &Path,
    validation: &CheckedValidation,
    quarantine: Option<&Path>,
    sw: &mut Stopwatch<'_>,
) -> Result<(Validated<Batch>, Report)> {
    let t = Instant::now();
    let batch = simulate(sim);
    let (sha, bytes) = write_csv_digest(&batch, path)?;
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
    let t = Instant::now();
    if let Some(q) = quarantine {
        let opts = ReadOptions {
            declared: batch.schema().signals().to_vec(),
            ..ReadOptions::default()
        };
        drop(batch);
        let (valid, report) = read_validated(path, &opts, validation, Some(q))?;
        record_validation(sw, t, &valid, &report, "read+validate", quarantine);
        return Ok((valid, report));
    }
    let (valid, report) = validate_in_memory(batch, validation, path, sha, Some(bytes))?;
    record_validation(sw, t, &valid, &report, "validate", None);
    Ok((valid, report))
}

/// Writes the batch's CSV (atomically) and returns its SHA-256 (hex) and size,
/// computed from the bytes as they are written: the file is not read back.
fn write_csv_digest(batch: &Batch, path: &Path) -> Result<(String, u64)> {
    let mut file = AtomicFile::create(path)?;
    let mut out = Digesting::new(&mut file);
    write_csv_to(batch, &mut out).map_err(|e| e.at_path(path))?;
    let digest = out.finish();
    file.commit()?;
    Ok(digest)
}

/// Passes bytes on to a file while hashing them.
struct Digesting<'a> {
    file: &'a mut AtomicFile,
    sha: Sha256,
    bytes: u64,
}

impl<'a> Digesting<'a> {
    fn new(file: &'a mut AtomicFile) -> Self {
        Digesting {
            file,
            sha: Sha256::new(),
            bytes: 0,
        }
    }

    /// The SHA-256 (lowercase hex) and size of what was written.
    fn finish(self) -> (String, u64) {
        let sha = self.sha.finalize();
        (sha.iter().map(|b| format!("{b:02x}")).collect(), self.bytes)
    }
}

impl Write for Digesting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn record_validation(
    sw: &mut Stopwatch<'_>,
    t: Instant,
    valid: &Validated<Batch>,
    report: &Report,
    stage: &str,
    quarantine: Option<&Path>,
) {
    let detail = validation_detail(report, quarantine, valid.device_names().len() as u64);
    sw.record(stage, report.rows, t, detail);
}

/// A validation stage's detail: the verdict, the rows accepted (and where the
/// others went) and the devices.
fn validation_detail(report: &Report, quarantine: Option<&Path>, devices: u64) -> String {
    let set_aside = match quarantine {
        Some(q) => format!(
            ", {} set aside → {}",
            report.rows - report.rows_accepted,
            q.display()
        ),
        None => String::new(),
    };
    format!(
        "{}, {} rows accepted{set_aside}, {} devices",
        report.verdict.as_str(),
        report.rows_accepted,
        devices
    )
}

/// The evaluation's context: the input and its digest, the configuration
/// and the alert rules.
fn run_context(p: &RunParams, input: &Path, report: &Report) -> RunContext {
    RunContext {
        input: InputDigest {
            path: input.display().to_string(),
            sha256: report.input.sha256.clone(),
        },
        config: p.config_json.clone(),
        alerts: p.alerts.clone(),
    }
}

/// Tells `on_progress` that `stage` has done `done` of `total` `unit`s.
fn tell(
    on_progress: &mut (dyn FnMut(&Progress<'_>) + Send),
    stage: &str,
    done: u64,
    total: u64,
    unit: &str,
) {
    on_progress(&Progress {
        stage,
        done,
        total,
        unit,
    });
}

/// What [`analyse`] leaves for the run to publish once the rows are stored.
struct Analysed {
    /// model.json, written but not in place.
    model_file: AtomicFile,
    /// The evaluation's files, written but not in place.
    staged: Staged,
    /// The time evaluating took so far, writing included (publishing comes after).
    evaluate_seconds: f64,
}

/// Trains on the rows, scores them, evaluates the scores and writes the
/// artifacts into temporary files in the output folder (the train and score
/// stages are recorded as they end); nothing is put in place.
fn analyse(
    batch: &Batch,
    p: &RunParams,
    ctx: &RunContext,
    sw: &mut Stopwatch<'_>,
) -> Result<Analysed> {
    let split = split_by_time(batch, &p.eval)?;
    let t = Instant::now();
    let model = fit_chunked(batch, &split, &p.training, &p.features, &p.detector)?;
    sw.record(
        "train",
        model.training.rows_used,
        t,
        format!(
            "{} features, {} of {} training rows used{}",
            model.feature_names.len(),
            model.training.rows_used,
            model.training.rows_in_span,
            model
                .training
                .rows_sampled
                .map_or_else(String::new, |n| format!(
                    " (scaler and detector on a seeded sample of {n})"
                ))
        ),
    );

    // The features are computed again, a chunk of devices at a time, and only
    // the scores are kept, with, when the threshold is already known (a rule
    // on the training sketch alone), the contributions the alerts will ask
    // for.
    let t = Instant::now();
    let early = match p.eval.rule() {
        ThresholdRule::TargetFalseAlerts(_) => None,
        _ => Some(p.eval.threshold(&model.training_scores)?),
    };
    let ts = batch.timestamps();
    let (scores, kept) = match &early {
        Some(th) => {
            let (scores, kept) =
                model.score_and_explain(batch, |r, s| explained(&split, ts[r], s, th))?;
            (scores, Some(kept))
        }
        None => (model.score_rows(batch)?, None),
    };
    sw.record(
        "score",
        batch.len() as u64,
        t,
        format!("model {}", p.out_dir.join("model.json").display()),
    );

    let t = Instant::now();
    let staged = match (early, kept) {
        // The threshold is known: scores.csv (most of the bytes written) is
        // written while the evaluation runs (on two threads when the pool has
        // them free); the files are the same either way.
        (Some(th), Some(kept)) => {
            let rows = ScoredRows::from_batch(batch, &scores)?;
            let (evaluated, scores_file) = rayon::join(
                || evaluate_explained(batch, &scores, &kept, th, &model, &split, &p.eval, ctx),
                || stage_scores(&rows, th.value, &p.out_dir),
            );
            evaluated?.stage_beside(&rows, scores_file?, &p.out_dir)?
        }
        _ => evaluate_scores(batch, &scores, &model, &split, &p.eval, ctx)?
            .stage(batch, &scores, &p.out_dir)?,
    };
    let model_file = itap_eval::stage_json(&model, &p.out_dir.join("model.json"))?;
    Ok(Analysed {
        model_file,
        staged,
        evaluate_seconds: t.elapsed().as_secs_f64(),
    })
}

/// Runs every stage: generate (or read), validate, ingest, train, score, evaluate,
/// report. `on_stage` is called as each stage ends.
///
/// The input is read (or simulated) and validated once, in memory; its validated
/// rows are stored (idempotently: a re-run inserts nothing) and are the rows
/// trained on, scored and evaluated. Storing runs on its own thread beside
/// training, scoring and evaluating (the same rows, read-only; the analysis
/// on a rayon pool of its own, as many threads as the caller's, at a lower
/// scheduling priority on Linux, so that the single writer gets a core when
/// both want one; results do not depend on it); the artifacts
/// are written meanwhile into temporary files in the output folder, and they are
/// renamed into place and the alerts stored only after the rows are stored (a
/// failed ingest leaves none of them); the ingest stage is reported after the
/// score stage, with its own wall time.
/// Their features are computed once, in the train stage, and scored by the
/// score stage. To train on everything a dataset holds, load it with
/// [`crate::load_dataset`] and call the stages one by one (as `itap train` does).
///
/// An input of more than [`RunParams::memory_rows`] rows (the simulated fleet's
/// rows, or a CSV's estimated from its size and its first lines) is not held:
/// its validated rows are set aside by device in a temporary file in
/// `out_dir` (the rows as binary numbers, 57 bytes a row with the simulator's
/// five signals; removed at the end). A simulated fleet is written to its CSV
/// a block at a time, each block validated and set aside as it is written
/// (stages generate, validate, set aside); a CSV, or a simulated fleet under
/// the quarantine policy, is read and validated whole first (stage
/// read+validate; nothing is stored when validation rejects it) and then read
/// again and set aside (stage set aside). The rows set aside are stored a
/// group of whole devices at a time in device order (stage ingest: each group
/// validated again in memory, one transaction each), and trained on and
/// scored a group of devices at a time ([`crate::train_grouped`],
/// [`crate::score_grouped`]; stages train, score and evaluate). As in memory,
/// the analysis covers this input's validated rows (not rows stored before);
/// scores.csv lists the groups one after another; a threshold rule on false
/// alerts per device-day is refused there.
///
/// Under the validation policy `reject` (the default) an input with error rows is
/// refused; under `quarantine` those rows are set aside into [`QUARANTINE_FILE`]
/// in `out_dir` (with their reasons; the file is written, possibly with a header
/// only, whenever the run gets past validation), the run goes on with the rest,
/// and [`RunSummary::rows_quarantined`] counts them.
///
/// # Errors
/// The first stage error; [`crate::Error::Refused`] when validation rejects the
/// input (nothing is stored and no artifact is written).
pub fn run(p: &RunParams, on_stage: &mut dyn FnMut(&StageTiming)) -> Result<RunSummary> {
    run_with_progress(p, on_stage, &mut |_| {})
}

/// Progress within a stage of a streamed [`run`] (one past
/// [`RunParams::memory_rows`]): `done` of `total` `unit`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<'a> {
    /// The stage.
    pub stage: &'a str,
    /// Units done so far.
    pub done: u64,
    /// Units in all.
    pub total: u64,
    /// What is counted: "rows" or "devices".
    pub unit: &'a str,
}

/// [`run`], telling `on_progress` how far each stage of a streamed run has
/// got (generate, read+validate, set aside and ingest in rows — read+validate's
/// estimated from the bytes read until its last report —, train and
/// score+evaluate in devices); an input held in memory reports no progress.
///
/// # Errors
/// As [`run`].
pub fn run_with_progress(
    p: &RunParams,
    on_stage: &mut dyn FnMut(&StageTiming),
    on_progress: &mut (dyn FnMut(&Progress<'_>) + Send),
) -> Result<RunSummary> {
    let mut sw = Stopwatch {
        on_stage,
        timings: Vec::new(),
    };
    let quarantine = (p.validation.params().policy == Policy::Quarantine)
        .then(|| p.out_dir.join(QUARANTINE_FILE));
    let quarantine = quarantine.as_deref();
    let rows = if p.memory_rows > 0 {
        input_rows(&p.source)?
    } else {
        0
    };
    if rows > p.memory_rows {
        return run_streamed(p, rows, quarantine, &mut sw, on_progress);
    }
    let (input, (valid, report)) = match &p.source {
        Source::Simulate(sim, path) => (
            path,
            generate(sim, path, &p.validation, quarantine, &mut sw)?,
        ),
        Source::Csv(path) => {
            let t = Instant::now();
            let read = read_validated(path, &p.read, &p.validation, quarantine)?;
            record_validation(&mut sw, t, &read.0, &read.1, "read+validate", quarantine);
            (path, read)
        }
    };
    let rows_quarantined = report.rows - report.rows_accepted;

    let ctx = run_context(p, input, &report);
    // The rows are stored on a thread of their own while the same rows (in
    // memory, validated, read-only to both) are trained on, scored and
    // evaluated: the two share nothing else, and a store takes one writer at a
    // time, so the analysis's threads use the rest of the machine. The analysis
    // writes its artifacts into temporary files; they are renamed into place and
    // the alerts stored only once the rows are: a failed ingest fails the run
    // with no artifact in place (the temporary files are removed), as when it
    // came first.
    // The store is the run's longer leg and uses about one core whatever the
    // machine has; the analysis runs on a pool of its own at a lower priority
    // (`behind_the_writer`), so that it takes what the writer leaves instead of
    // slowing it. The train and score stages are told, here, as they end.
    let out_existed = p.out_dir.exists();
    let batch = valid.get();
    let threads = rayon::current_num_threads();
    let ctx = &ctx;
    let ((ingested, ingest_seconds), analysed) = std::thread::scope(|s| {
        let ingest = s.spawn(|| {
            let t = Instant::now();
            let done = store_runtime().and_then(|rt| {
                rt.block_on(async {
                    let store = p.store.connect_for_appends().await?;
                    let done = store_batch(&valid, &report, &store, &p.store, &mut |_| {}).await;
                    store.close().await;
                    done
                })
            });
            (done, t.elapsed().as_secs_f64())
        });
        let (ended, stages) = std::sync::mpsc::channel();
        let analysis = s.spawn(move || {
            behind_the_writer(threads, move || {
                let mut tell = |t: &StageTiming| {
                    let _ = ended.send(t.clone());
                };
                let mut own = Stopwatch {
                    on_stage: &mut tell,
                    timings: Vec::new(),
                };
                analyse(batch, p, ctx, &mut own)
            })
        });
        for stage in stages {
            sw.tell(stage);
        }
        let analysed = analysis
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let ingested = ingest
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (ingested, analysed)
    });
    // On failure: the temporary files are gone once `analysed` is dropped; the
    // output folder goes too if the run made it and left it empty.
    let tidy = || {
        if !out_existed {
            let _ = std::fs::remove_dir(&p.out_dir);
        }
    };
    let ingested = match ingested {
        Ok(i) => i,
        Err(e) => {
            drop(analysed);
            tidy();
            return Err(e);
        }
    };
    sw.record_seconds(
        "ingest",
        batch.len() as u64,
        ingest_seconds,
        format!(
            "{} dataset `{}`: inserted {}, duplicates {}, conflicts {} (beside train, score and evaluate)",
            p.store.url,
            p.store.dataset,
            ingested.counts.inserted,
            ingested.counts.duplicates,
            ingested.counts.conflicts
        ),
    );
    let Analysed {
        model_file,
        staged,
        evaluate_seconds,
    } = analysed.inspect_err(|_| tidy())?;

    // The rows are stored: now the artifacts go in place and the alerts are stored.
    let t = Instant::now();
    let model_path = model_file.path().to_path_buf();
    model_file.commit()?;
    let Reported {
        evaluation,
        alerts,
        files: mut artifacts,
    } = staged.commit()?;
    let alerts_stored = store_alerts(&p.store, &alerts, &model_path.display().to_string())?;
    sw.record_seconds(
        "evaluate",
        evaluation.rows_evaluated,
        evaluate_seconds + t.elapsed().as_secs_f64(),
        evaluated(&evaluation, alerts.len(), &alerts_stored),
    );
    artifacts.insert(0, model_path);
    artifacts.extend(quarantine.map(Path::to_path_buf));
    Ok(RunSummary {
        timings: sw.timings,
        evaluation,
        alerts,
        alerts_stored,
        artifacts,
        rows_quarantined,
    })
}

/// The input's rows: the simulated fleet's, or a CSV's estimated from its size
/// and the mean length of its first lines (up to 64 KiB after the header).
fn input_rows(source: &Source) -> Result<u64> {
    match source {
        Source::Simulate(sim, _) => Ok(sim.rows() as u64),
        Source::Csv(path) => {
            use std::io::Read;
            let io = |source| itap_telemetry::Error::Io {
                path: path.clone(),
                source,
            };
            let mut file = std::fs::File::open(path).map_err(io)?;
            let size = file.metadata().map_err(io)?.len();
            let mut head = Vec::with_capacity(65_536);
            std::io::Read::by_ref(&mut file)
                .take(65_536)
                .read_to_end(&mut head)
                .map_err(io)?;
            // Whole lines after the header.
            let ends: Vec<usize> = head
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i)
                .collect();
            Ok(match ends.as_slice() {
                [header, .., last] if last > header => {
                    let lines = (ends.len() - 1) as u64;
                    let per_line = (*last - *header) as u64 / lines;
                    size.saturating_sub(*header as u64 + 1) / per_line.max(1)
                }
                _ => ends.len().saturating_sub(1) as u64,
            })
        }
    }
}

/// [`run`] for an input larger than [`RunParams::memory_rows`]: the validated
/// rows set aside by device in a [`Spill`] in the output folder (as the fleet
/// is generated, [`generate_validated`], or from the file,
/// [`read_validated_aside`]), stored from it device after device, then trained
/// on and scored from it a group of devices at a time. On failure, an output
/// folder the run made is removed if it is left empty.
fn run_streamed(
    p: &RunParams,
    rows: u64,
    quarantine: Option<&Path>,
    sw: &mut Stopwatch<'_>,
    on_progress: &mut (dyn FnMut(&Progress<'_>) + Send),
) -> Result<RunSummary> {
    let out_existed = p.out_dir.exists();
    let done = run_streamed_in(p, rows, quarantine, sw, on_progress);
    if done.is_err() && !out_existed {
        let _ = std::fs::remove_dir(&p.out_dir);
    }
    done
}

fn run_streamed_in(
    p: &RunParams,
    rows: u64,
    quarantine: Option<&Path>,
    sw: &mut Stopwatch<'_>,
    on_progress: &mut (dyn FnMut(&Progress<'_>) + Send),
) -> Result<RunSummary> {
    if matches!(p.eval.rule(), ThresholdRule::TargetFalseAlerts(_)) {
        return Err(crate::Error::param(
            "eval.target_false_alerts_per_device_day",
            format!(
                "sets the threshold by replaying the alerts over every held-back row, which a run of more than {} rows (model.memory_rows) does not hold; use eval.threshold_quantile, or raise model.memory_rows",
                p.memory_rows
            ),
        ));
    }
    let (path, report, mut groups) = match &p.source {
        // Under the reject policy the simulated blocks are validated and set
        // aside as they are written (as the in-memory path validates the
        // simulated rows, not the CSV read back); under quarantine the CSV
        // is read back, so that the set-aside rows are written with their
        // lines.
        Source::Simulate(sim, path) if quarantine.is_none() => {
            let (report, groups) = generate_validated(sim, path, p, sw, on_progress)?;
            (path, report, groups)
        }
        Source::Simulate(sim, path) => {
            let t = Instant::now();
            let total = sim.rows() as u64;
            let done = itap_telemetry::simulate_to_csv(sim, path, &mut |rows| {
                tell(on_progress, "generate", rows, total, "rows");
            })?;
            sw.record(
                "generate",
                done.rows,
                t,
                format!(
                    "{} devices → {} (streamed: more than {} rows)",
                    sim.params().devices,
                    path.display(),
                    p.memory_rows
                ),
            );
            // The simulated signals' declarations (unit, range, family), as
            // the rows in memory carry them.
            let opts = ReadOptions {
                declared: sim.schema().signals().to_vec(),
                ..ReadOptions::default()
            };
            let (report, groups) =
                read_validated_aside(path, &opts, p, rows, quarantine, sw, on_progress)?;
            (path, report, groups)
        }
        Source::Csv(path) => {
            let (report, groups) =
                read_validated_aside(path, &p.read, p, rows, quarantine, sw, on_progress)?;
            (path, report, groups)
        }
    };
    let accepted = report.rows_accepted;
    let t = Instant::now();
    let ingested = store_by_device(
        &mut groups,
        path,
        &p.validation,
        &report,
        &p.store,
        &mut |done| {
            tell(on_progress, "ingest", done, accepted, "rows");
        },
    )?;
    let c = &ingested.counts;
    sw.record(
        "ingest",
        accepted,
        t,
        format!(
            "{} dataset `{}`: inserted {}, duplicates {}, conflicts {} (a group of devices at a time)",
            p.store.url, p.store.dataset, c.inserted, c.duplicates, c.conflicts
        ),
    );

    let (model_file, times, scored) =
        analyse_input(&mut groups, p, path, &report, sw, on_progress)?;
    drop(groups);
    let t = Instant::now();
    let model_path = model_file.path().to_path_buf();
    let Reported {
        evaluation,
        alerts,
        files: mut artifacts,
    } = scored;
    model_file.commit()?;
    let alerts_stored = store_alerts(&p.store, &alerts, &model_path.display().to_string())?;
    // Scoring and evaluating alternate a group at a time: each stage's own
    // time, summed over the groups.
    sw.record_seconds(
        "score",
        evaluation.rows_total,
        times.score,
        format!(
            "model {} (a group of devices at a time, read from the rows set aside)",
            p.out_dir.join("model.json").display()
        ),
    );
    sw.record_seconds(
        "evaluate",
        evaluation.rows_evaluated,
        times.evaluate + t.elapsed().as_secs_f64(),
        format!(
            "{}; a group of devices at a time",
            evaluated(&evaluation, alerts.len(), &alerts_stored)
        ),
    );
    artifacts.insert(0, model_path);
    artifacts.extend(quarantine.map(Path::to_path_buf));
    Ok(RunSummary {
        timings: std::mem::take(&mut sw.timings),
        evaluation,
        alerts,
        alerts_stored,
        artifacts,
        rows_quarantined: report.rows - report.rows_accepted,
    })
}

/// A streamed run's CSV input: read and validated once whole (nothing is
/// stored from a file that validation rejects; stage read+validate), then
/// read again and its validated rows set aside by device (stage set aside).
fn read_validated_aside(
    path: &Path,
    opts: &ReadOptions,
    p: &RunParams,
    rows: u64,
    quarantine: Option<&Path>,
    sw: &mut Stopwatch<'_>,
    on_progress: &mut (dyn FnMut(&Progress<'_>) + Send),
) -> Result<(Report, SpillGroups)> {
    let t = Instant::now();
    // `rows` (the input's, as estimated before the run chose this path),
    // counted off as the file's bytes are read; the stage's last report is
    // the rows read.
    let report =
        validate_file_with_progress(path, opts, &p.validation, quarantine, &mut |done, total| {
            tell(
                on_progress,
                "read+validate",
                (rows as f64 * done as f64 / total.max(1) as f64) as u64,
                rows,
                "rows",
            );
        })?;
    tell(
        on_progress,
        "read+validate",
        report.rows,
        report.rows,
        "rows",
    );
    if !report.verdict.is_storable() {
        return Err(refused(path, report));
    }
    let detail = validation_detail(&report, quarantine, report.devices);
    sw.record("read+validate", report.rows, t, detail);
    let t = Instant::now();
    let accepted = report.rows_accepted;
    let mut spill = Spill::create(&p.out_dir)?;
    let chunk_rows = p
        .store
        .rows_per_chunk(usize::try_from(report.devices).unwrap_or(usize::MAX));
    spill_validated(
        path,
        opts,
        &p.validation,
        &report,
        chunk_rows,
        &mut spill,
        &mut |done| {
            tell(on_progress, "set aside", done, accepted, "rows");
        },
    )?;
    let groups = spill.finish()?;
    sw.record(
        "set aside",
        accepted,
        t,
        format!(
            "read again and set aside by device in {} (more than {} rows, model.memory_rows)",
            p.out_dir.display(),
            p.memory_rows
        ),
    );
    Ok((report, groups))
}

/// A streamed run's simulated input under the reject policy: the fleet is
/// simulated into its CSV a block at a time, and each block, once written,
/// is validated ([`BatchStream`]: the report is the one validating the whole
/// in memory gives) and set aside by device. The three interleave on one
/// thread (the next block is simulated on others meanwhile) and are recorded
/// as stages generate, validate and set aside, each with its own time.
/// Nothing is stored when validation rejects the rows.
fn generate_validated(
    sim: &CheckedSimParams,
    path: &Path,
    p: &RunParams,
    sw: &mut Stopwatch<'_>,
    on_progress: &mut (dyn FnMut(&Progress<'_>) + Send),
) -> Result<(Report, SpillGroups)> {
    let t = Instant::now();
    let total = sim.rows() as u64;
    let mut spill = Spill::create(&p.out_dir)?;
    let mut stream: Option<BatchStream<'_>> = None;
    let (mut validating, mut aside) = (Duration::ZERO, Duration::ZERO);
    let mut file = AtomicFile::create(path)?;
    let mut out = Digesting::new(&mut file);
    let mut rows = 0u64;
    let done = itap_telemetry::simulate_into(sim, &mut out, path, &mut |block| -> Result<()> {
        let v = Instant::now();
        let stream = stream.get_or_insert_with(|| BatchStream::new(&p.validation, block));
        stream.check(block)?;
        validating += v.elapsed();
        let w = Instant::now();
        spill.append(block)?;
        aside += w.elapsed();
        rows += block.len() as u64;
        tell(on_progress, "generate", rows, total, "rows");
        Ok(())
    })?;
    let (sha, bytes) = out.finish();
    file.commit()?;
    let input = InputInfo {
        path: Some(path.display().to_string()),
        sha256: Some(sha),
        bytes: Some(bytes),
    };
    let Some(stream) = stream else {
        return Err(crate::Error::NoData(
            "the simulated fleet has no rows".into(),
        ));
    };
    let report = stream.finish(input);
    let own = t.elapsed().saturating_sub(validating + aside);
    sw.record_seconds(
        "generate",
        done.rows,
        own.as_secs_f64(),
        format!(
            "{} devices → {} (streamed: more than {} rows)",
            sim.params().devices,
            path.display(),
            p.memory_rows
        ),
    );
    if !report.verdict.is_storable() {
        return Err(refused(path, report));
    }
    sw.record_seconds(
        "validate",
        report.rows,
        validating.as_secs_f64(),
        format!(
            "{} (each block as it was written)",
            validation_detail(&report, None, report.devices)
        ),
    );
    sw.record_seconds(
        "set aside",
        report.rows,
        aside.as_secs_f64(),
        format!(
            "set aside by device in {} as generated (more than {} rows, model.memory_rows)",
            p.out_dir.display(),
            p.memory_rows
        ),
    );
    Ok((report, spill.finish()?))
}

/// The evaluate stage's detail: the curves' areas and the alerts.
fn evaluated(ev: &Evaluation, alerts: usize, stored: &AlertsWritten) -> String {
    format!(
        "ROC-AUC {}, PR-AUC {}, {alerts} alerts ({} new in the store)",
        ev.roc_auc.map_or("–".into(), |v| format!("{v:.3}")),
        ev.pr_auc.map_or("–".into(), |v| format!("{v:.3}")),
        stored.inserted
    )
}

/// The streamed run's train, score and evaluate stages on the input's rows:
/// model.json staged (not in place), when the scoring began, and what it wrote.
fn analyse_input(
    groups: &mut dyn DeviceGroups,
    p: &RunParams,
    path: &Path,
    report: &Report,
    sw: &mut Stopwatch<'_>,
    on_progress: &mut (dyn FnMut(&Progress<'_>) + Send),
) -> Result<(AtomicFile, GroupedTimes, Reported)> {
    let t = Instant::now();
    let how = GroupedTraining {
        eval: &p.eval,
        set: &p.training,
        features: &p.features,
        detector: &p.detector,
        group_rows: p.group_rows,
        fleet_rows: p.group_rows,
    };
    let model = train_grouped(groups, &how, &mut |done, total| {
        tell(on_progress, "train", done as u64, total as u64, "devices");
    })?;
    let stored: u64 = groups.devices().iter().map(|d| d.1).sum();
    sw.record(
        "train",
        model.training.rows_used,
        t,
        format!(
            "{} features, {} of {} training rows used, from the input's {} rows a group of devices at a time (fleet-wide parts from {} devices)",
            model.feature_names.len(),
            model.training.rows_used,
            model.training.rows_in_span,
            stored,
            model.training.fleet_devices.unwrap_or(0)
        ),
    );

    let model_path = p.out_dir.join("model.json");
    let model_file = itap_eval::stage_json(&model, &model_path)?;
    let ctx = run_context(p, path, report);
    // The run's split, as training took it (with its training fraction).
    let split = match groups.time_bounds() {
        Some((first, last)) => Some(p.eval.split(first, last)?),
        None => None,
    };
    let scoring = GroupedScoring {
        model: &model,
        model_path: &model_path,
        eval: &p.eval,
        ctx: &ctx,
        group_rows: p.group_rows,
        split: split.as_ref(),
    };
    let (scored, times) = score_grouped_timed(groups, &scoring, &p.out_dir, &mut |done, total| {
        tell(
            on_progress,
            "score+evaluate",
            done as u64,
            total as u64,
            "devices",
        );
    })?;
    Ok((model_file, times, scored))
}
