#![doc = include_str!("../README.md")]

mod catalogue;
mod engine;
mod error;
mod fit;
mod matrix;
mod order;
mod params;
mod spectral;
mod window;

pub use catalogue::{FeatureInfo, catalogue};
pub use engine::{
    ChunkedTransform, DeviceState, FeatureChunk, OnlineFeatures, OnlineRow, transform,
};
pub use error::{Error, Result};
pub use fit::{
    Baseline, DeviceBaselines, DevicesFit, FeaturesFit, FleetFit, SeasonalProfile, TrainSpan,
    describe_period, fit, fit_devices, fit_fleet,
};
pub use itap_telemetry::{InvalidParam, ParamGuard};
pub use matrix::{FeatureMatrix, PARQUET_CATALOGUE_KEY};
pub use params::{CheckedFeatures, FeatureKind, FeatureParams, Period, Window, WindowEngine};
