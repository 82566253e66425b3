//! The pipeline, a module a stage: each stage callable alone, and [`run`] for all
//! of them.
//!
//! | module | stage |
//! |---|---|
//! | `ingest` | read + validate a CSV (or validate rows in memory), store validated rows, load a dataset |
//! | `spill` | a streamed run's validated rows set aside on disk by device |
//! | `split` | the time split: training span and evaluated rows |
//! | `train` | the training rows; fit features, scaler, detector into a model file |
//! | `grouped` | training a group of devices at a time, for data too large to hold |
//! | `grouped_score` | scoring and evaluating a group of devices at a time |
//! | `score` | a model's features and scores for any telemetry |
//! | `report` | evaluation at itap-eval's threshold; metrics.json, scores.csv, report.html |
//! | `run` | every stage in order, timed |
//! | `yielding` | the run's analysis on threads of lower priority than its writer |

mod grouped;
mod grouped_score;
mod ingest;
mod report;
mod run;
mod score;
mod spill;
mod split;
mod train;
mod yielding;

pub use grouped::{
    BatchGroups, DEFAULT_GROUP_ROWS, DeviceGroups, GroupedTraining, StoreGroups, train_grouped,
};
pub use grouped_score::{GroupedScoring, score_grouped};
pub use ingest::{
    StoreSettings, ingest_file, load_dataset, read_validated, store_batch, store_runtime,
    store_validated, validate_in_memory,
};
pub use report::{
    Reported, RunContext, alert_record, calibration_rows, evaluate_and_write,
    evaluate_scores_and_write, operating_threshold, store_alerts, threshold_for_scores,
};
pub use run::{
    DEFAULT_MEMORY_ROWS, Progress, QUARANTINE_FILE, RunParams, RunSummary, Source, StageTiming,
    run, run_with_progress,
};
pub use score::{
    ATTRIBUTION_METHOD, CALIBRATED_ATTRIBUTION_METHOD, RowContributions, ScaledFeatures, Scored,
};
pub use split::{split_at_model_cut, split_by_time};
pub use train::{
    DEFAULT_CALIBRATION_FRACTION, DEFAULT_DETECTOR, DEFAULT_INPUTS, DEFAULT_MAX_TRAINING_ROWS,
    TRAINING_SAMPLE_SEED, Trained, TrainedScores, TrainingSet, default_detector, detector_features,
    train, train_and_score,
};
