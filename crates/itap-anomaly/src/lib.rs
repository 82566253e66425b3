#![doc = include_str!("../README.md")]

mod detector;
mod ecosystem;
mod error;
mod iforest;
mod matrix;
mod pca;
mod residual;
mod scaler;

pub use detector::{
    CheckedDetector, Detector, DetectorKind, DetectorParams, FittedDetector, Model,
};
pub use error::{Error, Result};
pub use iforest::{
    CheckedIsolationForest, IsolationForest, IsolationForestParams, MAX_SAMPLES_LIMIT,
    average_path_length,
};
pub use itap_telemetry::{InvalidParam, ParamGuard};
pub use matrix::{finite_rows, select_rows};
pub use pca::{CheckedPca, PcaDetector, PcaParams, PcaStatistics};
pub use residual::{CheckedResidual, ResidualDetector, ResidualParams};
pub use scaler::{StandardScaler, StandardScalerParams};

/// The ndarray this crate's API is written in (0.16, linfa's line).
pub use ndarray;

/// The linfa this crate implements the traits of.
pub use linfa;
