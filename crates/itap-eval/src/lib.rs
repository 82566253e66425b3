#![doc = include_str!("../README.md")]

mod breakdown;
mod error;
mod evaluate;
mod events;
mod metrics;
mod params;
mod report;
mod threshold;
mod top_alerts;

pub use error::{Error, Result};
pub use evaluate::{
    AlertDetail, Attribution, Breakdown, Evaluation, EventMetrics, FaultMetrics, PointMetrics,
    ScoredRows, Share, SplitInfo, Sweep, SweepPoint, Threshold, evaluate, threshold_from_training,
};
pub use itap_telemetry::{InvalidParam, ParamGuard};
pub use metrics::{Confusion, CurvePoint, average_precision, curves, quantile, roc_auc};
pub use params::{CheckedEval, EvalParams, Split, ThresholdRule};
pub use report::{
    InputDigest, METRICS_FORMAT_VERSION, MetricsFile, report_html, scores_csv, write_json,
};
pub use threshold::{SKETCH_MAX_QUANTILE, SKETCH_MIN_QUANTILE, ScoreSketch};
