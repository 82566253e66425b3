#![doc = include_str!("../README.md")]

mod error;
mod evaluate;
mod metrics;
mod params;
mod report;

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
