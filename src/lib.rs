//! ITAP, the Industrial Telemetry Analytics Platform: the crates re-exported under one
//! name, and the pipeline that wires them (read or simulate, validate, store,
//! train, score, evaluate; [`run`] does all of it).
//!
//! | module | crate | one job |
//! |---|---|---|
//! | [`telemetry`] | itap-telemetry | schema, columnar batch, CSV I/O, simulator |
//! | [`validate`] | itap-validate | data-quality checks, report, quarantine, `Validated<Batch>` |
//! | [`eval`] | itap-eval | time split, threshold from training, metrics, events, reports |
//! | [`store`] | itap-store | SQLite / PostgreSQL storage, idempotent ingest, queries, metrics |
//! | [`features`] | itap-features | causal per-device features (polars): windows, spectra, trend/seasonality, state baselines, event counters |
//! | [`anomaly`] | itap-anomaly | Isolation Forest and PCA T²/Q detectors, standard scaler, their serialization |
//!
//! ```
//! use itap::ParamGuard;
//! let params = itap::telemetry::SimParams::default().devices(2).hours(0.5).check()?;
//! let batch = itap::telemetry::simulate(&params);
//! assert_eq!(batch.len(), 2 * 180);
//! # Ok::<(), itap::telemetry::Error>(())
//! ```

mod error;
mod live;
mod model;
mod pipeline;

pub use error::{Error, Result};
pub use itap_telemetry::{InvalidParam, ParamGuard};
pub use live::{LiveRow, LiveScorer, RowScore};
pub use model::{MODEL_FORMAT_VERSION, ModelFile, TrainingInfo};
pub use pipeline::{
    ATTRIBUTION_METHOD, BatchGroups, CALIBRATED_ATTRIBUTION_METHOD, DEFAULT_CALIBRATION_FRACTION,
    DEFAULT_DETECTOR, DEFAULT_GROUP_ROWS, DEFAULT_INPUTS, DEFAULT_MAX_TRAINING_ROWS,
    DEFAULT_MEMORY_ROWS, DeviceGroups, GroupedScoring, GroupedTraining, Progress, QUARANTINE_FILE,
    Reported, RowContributions, RunContext, RunParams, RunSummary, ScaledFeatures, Scored, Source,
    StageTiming, StoreGroups, StoreSettings, TRAINING_SAMPLE_SEED, Trained, TrainedScores,
    TrainingSet, alert_record, calibration_rows, default_detector, detector_features,
    evaluate_and_write, evaluate_scores_and_write, ingest_file, load_dataset, operating_threshold,
    read_validated, run, run_with_progress, score_grouped, split_at_model_cut, split_by_time,
    store_alerts, store_batch, store_runtime, store_validated, threshold_for_scores, train,
    train_and_score, train_grouped, validate_in_memory,
};

pub use itap_anomaly as anomaly;
pub use itap_eval as eval;
pub use itap_features as features;
pub use itap_store as store;
pub use itap_telemetry as telemetry;
pub use itap_validate as validate;
