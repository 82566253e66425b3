#![doc = include_str!("../README.md")]

mod alert_params;
mod breakdown;
mod error;
mod evaluate;
mod events;
mod fleet;
mod metrics;
mod params;
mod parts;
mod report;
mod threshold;
mod tracker;

pub use alert_params::{AlertParams, AlertRule, CheckedAlerts, Severity};
pub use error::{Error, Result};
pub use evaluate::{
    Attribution, Breakdown, EvalContext, Evaluated, Evaluation, EventMetrics, FaultMetrics,
    PointMetrics, ScoredRows, Share, SplitInfo, Sweep, SweepPoint, Threshold, evaluate,
    evaluate_with, threshold_from_training,
};
pub use fleet::DeviceAlerts;
pub use itap_telemetry::{InvalidParam, ParamGuard};
pub use metrics::{Confusion, CurvePoint, average_precision, curves, quantile, roc_auc};
pub use params::{CheckedEval, EvalParams, Split, ThresholdRule};
pub use parts::EvaluationParts;
pub use report::{
    InputDigest, METRICS_FORMAT_VERSION, MetricsFile, ScoresCsv, Timelines, report_html,
    report_page, scores_csv, stage_json, stage_scores_csv, write_json, write_scores_csv,
};
pub use threshold::{SKETCH_MAX_QUANTILE, SKETCH_MIN_QUANTILE, ScoreSketch};
pub use tracker::{ALERTS_FORMAT_VERSION, Alert, AlertRow, AlertTracker, AlertsFile, build_alerts};
