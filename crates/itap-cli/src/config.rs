//! The configuration file and the one place where files and flags become checked
//! parameters.
//!
//! Precedence: built-in defaults, then the TOML file, then command-line flags. An
//! unknown key anywhere is an error that names it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indexmap::IndexMap;
use serde::Deserialize;

use itap::anomaly::{
    CheckedDetector, DetectorKind, DetectorParams, IsolationForestParams, PcaParams, ResidualParams,
};
use itap::eval::{AlertParams, CheckedAlerts, CheckedEval, EvalParams};
use itap::features::{CheckedFeatures, FeatureKind, FeatureParams};
use itap::store::OnConflict;
use itap::telemetry::{
    AmbientParams, CheckedSimParams, FaultParams, ReadOptions, SignalKind, SimParams, SimSignal,
    State, StateParams, TimeZone, default_sim_signals,
};
use itap::validate::{CheckedValidation, Policy, ValidationParams};
use itap::{ParamGuard, TrainingSet};

/// The whole configuration file, a section per pipeline stage.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    pub(crate) telemetry: TelemetrySection,
    pub(crate) signals: IndexMap<String, SignalSection>,
    pub(crate) faults: FaultParams,
    pub(crate) validation: ValidationParams,
    pub(crate) store: itap::StoreSettings,
    pub(crate) features: FeatureParams,
    pub(crate) model: ModelSection,
    pub(crate) eval: EvalParams,
    pub(crate) alerts: AlertParams,
    pub(crate) output: OutputSection,
}

/// `[model]`: the detector, what it reads and which rows it learns from.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ModelSection {
    pub(crate) detector: DetectorKind,
    pub(crate) inputs: Vec<FeatureKind>,
    pub(crate) exclude_states: Vec<State>,
    pub(crate) unsupervised: bool,
    pub(crate) calibration_fraction: f64,
    pub(crate) max_training_rows: u64,
    pub(crate) group_rows: u64,
    pub(crate) memory_rows: u64,
    pub(crate) path: PathBuf,
    pub(crate) iforest: IsolationForestParams,
    pub(crate) pca: PcaParams,
    pub(crate) residual: ResidualParams,
}

impl Default for ModelSection {
    fn default() -> Self {
        let t = TrainingSet::default();
        let d = DetectorParams::default();
        ModelSection {
            detector: itap::DEFAULT_DETECTOR,
            inputs: t.inputs,
            exclude_states: t.exclude_states,
            unsupervised: t.unsupervised,
            calibration_fraction: t.calibration_fraction,
            max_training_rows: t.max_training_rows,
            group_rows: itap::DEFAULT_GROUP_ROWS,
            memory_rows: itap::DEFAULT_MEMORY_ROWS,
            path: PathBuf::from("artifacts/model.json"),
            iforest: d.iforest,
            pca: d.pca,
            residual: d.residual,
        }
    }
}

/// `--signals`: the signals an input must have.
#[derive(Debug, Default, Clone, clap::Args)]
pub(crate) struct SignalsFlag {
    /// Signals the input must have, comma-separated: a missing one is an error
    /// (nothing is stored), a signal column not named is a warning. Without it,
    /// the `[signals.NAME]` sections of the config declare them; with neither, the
    /// signals are the numeric columns of the header.
    #[arg(long, value_name = "A,B,…", value_delimiter = ',')]
    pub(crate) signals: Option<Vec<String>>,
}

/// The flags that name a CSV's key columns (`itap run`, `itap train`, `itap score`).
#[derive(Debug, Default, Clone, clap::Args)]
pub(crate) struct ColumnFlags {
    /// The CSV's timestamp column, when it is not found by its name
    /// [config: telemetry.input.timestamp_column].
    #[arg(long, value_name = "NAME", requires = "input")]
    pub(crate) timestamp_column: Option<String>,

    /// The CSV's device column, when it is not found by its name; without one the
    /// whole file is one device [config: telemetry.input.device_column].
    #[arg(long, value_name = "NAME", requires = "input")]
    pub(crate) device_column: Option<String>,
}

impl ColumnFlags {
    /// The config's read options with these flags applied.
    pub(crate) fn apply(&self, mut opts: ReadOptions) -> ReadOptions {
        if self.timestamp_column.is_some() {
            opts.timestamp_column = self.timestamp_column.clone();
        }
        if self.device_column.is_some() {
            opts.device_column = self.device_column.clone();
        }
        opts
    }
}

/// The flags that choose the split and the training set (`itap train`, `itap run`).
#[derive(Debug, Default, Clone, clap::Args)]
pub(crate) struct TrainFlags {
    /// Detector: residual, pca or iforest [config: model.detector, default residual].
    #[arg(long, value_name = "NAME")]
    pub(crate) detector: Option<DetectorKind>,

    /// Train on this first share of the data's time span [config:
    /// eval.train_fraction, default 0.7].
    #[arg(long, value_name = "F", conflicts_with = "train_until")]
    pub(crate) train_fraction: Option<f64>,

    /// Train on the rows before this time (RFC 3339, e.g. 2026-01-01T04:00:00Z)
    /// [config: eval.train_until].
    #[arg(long, value_name = "TIMESTAMP")]
    pub(crate) train_until: Option<String>,

    /// Train on every row of the training span and use no labels (by default rows
    /// in MAINT and rows tagged as faulty are left out) [config: model.unsupervised].
    #[arg(long)]
    pub(crate) unsupervised: bool,
}

/// `[telemetry]`: the simulated fleet, and how input files are read.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TelemetrySection {
    devices: usize,
    seed: u64,
    start: String,
    hours: f64,
    freq_seconds: f64,
    device_prefix: String,
    states: StateParams,
    ambient: AmbientParams,
    input: InputSection,
}

impl Default for TelemetrySection {
    fn default() -> Self {
        let p = SimParams::default();
        TelemetrySection {
            devices: p.devices,
            seed: p.seed,
            start: p.start,
            hours: p.hours,
            freq_seconds: p.freq_seconds,
            device_prefix: p.device_prefix,
            states: p.states,
            ambient: p.ambient,
            input: InputSection::default(),
        }
    }
}

/// `[telemetry.input]`: how a user's CSV maps onto the schema.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct InputSection {
    timestamp_column: Option<String>,
    device_column: Option<String>,
    signals: Vec<String>,
    timezone: Option<TimeZone>,
    default_device: Option<String>,
}

/// `[signals.NAME]`: a signal declaration, overriding a default signal's fields or
/// adding a new signal.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SignalSection {
    unit: Option<String>,
    kind: Option<SignalKind>,
    min: Option<f64>,
    max: Option<f64>,
    family: Option<String>,
    direction: Option<itap::telemetry::Direction>,
    nominal: Option<f64>,
    noise: Option<f64>,
}

/// `[output]`: where results go.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct OutputSection {
    /// Where `itap generate` writes its CSV.
    pub(crate) telemetry_csv: PathBuf,
    /// Where `itap run` and `itap score` write model, metrics, scores and report.
    pub(crate) dir: PathBuf,
}

impl Default for OutputSection {
    fn default() -> Self {
        OutputSection {
            telemetry_csv: PathBuf::from("data/raw/telemetry.csv"),
            dir: PathBuf::from("artifacts"),
        }
    }
}

impl Config {
    /// Reads a config file, or the defaults when `path` is `None`.
    pub(crate) fn load(path: Option<&Path>) -> Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config file {}", path.display()))
    }

    /// Parses TOML text.
    pub(crate) fn parse(text: &str) -> Result<Config> {
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
    }

    /// The simulated signals: the defaults, changed and extended by `[signals]`.
    fn sim_signals(&self) -> Result<Vec<SimSignal>> {
        let mut out = default_sim_signals();
        for (name, sec) in &self.signals {
            let existing = out.iter().position(|s| &s.signal.name == name);
            let entry = match existing {
                Some(i) => &mut out[i],
                None => {
                    let Some(nominal) = sec.nominal else {
                        bail!(
                            "signals.{name}: a new signal needs `nominal` (its level at full load) to be simulated"
                        );
                    };
                    out.push(SimSignal::new(
                        itap::telemetry::Signal::new(name.clone()),
                        nominal,
                        0.01 * nominal.abs(),
                    ));
                    out.last_mut().expect("just pushed")
                }
            };
            let s = &mut entry.signal;
            if let Some(v) = &sec.unit {
                s.unit = v.clone();
            }
            if let Some(v) = sec.kind {
                s.kind = v;
            }
            if sec.min.is_some() {
                s.min = sec.min;
            }
            if sec.max.is_some() {
                s.max = sec.max;
            }
            if let Some(v) = &sec.family {
                s.family = v.clone();
            }
            if let Some(v) = sec.direction {
                s.direction = v;
            }
            if let Some(v) = sec.nominal {
                entry.nominal = v;
            }
            if let Some(v) = sec.noise {
                entry.noise = v;
            }
        }
        Ok(out)
    }

    /// Simulator parameters from the file, before flags.
    pub(crate) fn sim_params(&self) -> Result<SimParams> {
        let t = &self.telemetry;
        Ok(SimParams {
            devices: t.devices,
            seed: t.seed,
            start: t.start.clone(),
            hours: t.hours,
            freq_seconds: t.freq_seconds,
            device_prefix: t.device_prefix.clone(),
            signals: self.sim_signals()?,
            states: t.states.clone(),
            ambient: t.ambient.clone(),
            faults: self.faults.clone(),
        })
    }

    /// How to read input CSV files, before flags.
    pub(crate) fn read_options(&self) -> Result<ReadOptions> {
        let i = &self.telemetry.input;
        Ok(ReadOptions {
            timestamp_column: i.timestamp_column.clone(),
            device_column: i.device_column.clone(),
            signals: i.signals.clone(),
            declared: self.sim_signals()?.into_iter().map(|s| s.signal).collect(),
            timezone: i.timezone.unwrap_or_default(),
            default_device: i.default_device.clone(),
            ..ReadOptions::default()
        })
    }

    /// Checked store settings: `[store]`, then the flags.
    pub(crate) fn store_settings(
        &self,
        db: &crate::DbArgs,
        on_conflict: Option<OnConflict>,
        chunk_rows: Option<usize>,
    ) -> Result<itap::StoreSettings> {
        let s = &self.store;
        let settings = itap::StoreSettings {
            url: db.db.clone().unwrap_or_else(|| s.url.clone()),
            dataset: db.dataset.clone().unwrap_or_else(|| s.dataset.clone()),
            pg_schema: db.pg_schema.clone().or_else(|| s.pg_schema.clone()),
            on_conflict: on_conflict.unwrap_or(s.on_conflict),
            chunk_rows: chunk_rows.unwrap_or(s.chunk_rows),
            // A chunk size given on the command line is the size wanted: the
            // per-device raise applies to the configured one only.
            chunk_rows_per_device: if chunk_rows.is_some() {
                0
            } else {
                s.chunk_rows_per_device
            },
        };
        Ok(settings.check().map_err(|e| e.in_section("store"))?)
    }

    /// Checked feature parameters: `[features]` (flags are applied by the command
    /// before checking, see `features.rs`).
    pub(crate) fn feature_params(&self) -> Result<CheckedFeatures> {
        check_features(self.features.clone())
    }

    /// The detector's parameters: `[model]`, then `--detector`.
    pub(crate) fn detector_params(&self, flags: &TrainFlags) -> Result<CheckedDetector> {
        let m = &self.model;
        let p = DetectorParams {
            detector: flags.detector.unwrap_or(m.detector),
            iforest: m.iforest.clone(),
            pca: m.pca.clone(),
            residual: m.residual.clone(),
        };
        Ok(p.check().map_err(|e| e.in_section("model"))?)
    }

    /// The training set: `[model]`, then `--unsupervised`; its inputs checked
    /// against the feature kinds.
    pub(crate) fn training_set(
        &self,
        flags: &TrainFlags,
        features: &CheckedFeatures,
    ) -> Result<TrainingSet> {
        let m = &self.model;
        let set = TrainingSet {
            exclude_states: m.exclude_states.clone(),
            unsupervised: m.unsupervised || flags.unsupervised,
            inputs: m.inputs.clone(),
            calibration_fraction: m.calibration_fraction,
            max_training_rows: m.max_training_rows,
        };
        set.check().map_err(|e| e.in_section("model"))?;
        itap::detector_features(features, &set.inputs).map_err(|e| e.in_section("model"))?;
        Ok(set)
    }

    /// Evaluation and split: `[eval]`, then the split flags.
    pub(crate) fn eval_params(&self, flags: &TrainFlags) -> Result<CheckedEval> {
        let mut p = self.eval.clone();
        if let Some(f) = flags.train_fraction {
            p.train_fraction = f;
            p.train_until = None;
        }
        if let Some(t) = &flags.train_until {
            p.train_until = Some(t.clone());
        }
        Ok(p.check().map_err(|e| e.in_section("eval"))?)
    }

    /// How alerts open, close and are routed: `[alerts]`.
    pub(crate) fn alert_params(&self) -> Result<CheckedAlerts> {
        Ok(self
            .alerts
            .clone()
            .check()
            .map_err(|e| e.in_section("alerts"))?)
    }

    /// The whole configuration as JSON, for metrics.json.
    pub(crate) fn to_json(&self, flags: &TrainFlags) -> serde_json::Value {
        serde_json::json!({
            "features": self.features,
            "model": {
                "detector": flags.detector.unwrap_or(self.model.detector),
                "inputs": self.model.inputs,
                "exclude_states": self.model.exclude_states,
                "unsupervised": self.model.unsupervised || flags.unsupervised,
                "calibration_fraction": self.model.calibration_fraction,
                "iforest": self.model.iforest,
                "pca": self.model.pca,
                "residual": self.model.residual,
            },
            "eval": self.eval,
            "alerts": self.alerts,
            "flags": {
                "train_fraction": flags.train_fraction,
                "train_until": flags.train_until,
            },
        })
    }

    /// The signals an input must have: `--signals`, else the `[signals.NAME]`
    /// sections of the file; `None` (signals taken from the header) when neither
    /// declares any.
    pub(crate) fn declared_signals(&self, flag: &SignalsFlag) -> Option<Vec<String>> {
        match &flag.signals {
            Some(names) => Some(names.clone()),
            None if self.signals.is_empty() => None,
            None => Some(self.signals.keys().cloned().collect()),
        }
    }

    /// Checked validation parameters: `[validation]`, then the `--policy` flag,
    /// with the declared signals (`--signals` or `[signals]`).
    pub(crate) fn validation_params(
        &self,
        policy: Option<Policy>,
        signals: &SignalsFlag,
    ) -> Result<CheckedValidation> {
        let mut params = self
            .validation
            .clone()
            .declared_signals(self.declared_signals(signals));
        if let Some(p) = policy {
            params.policy = p;
        }
        Ok(params.check().map_err(|e| e.in_section("validation"))?)
    }
}

/// Checks simulator parameters (the file's and the flags'), naming a refused one
/// as in the config file: `[telemetry]` for the fleet, `[faults]` and `[signals]`
/// for their own sections.
pub(crate) fn check_sim(params: SimParams) -> Result<CheckedSimParams> {
    params.check().map_err(|e| match e {
        itap::telemetry::Error::InvalidParam(p)
            if !(p.name.starts_with("faults") || p.name.starts_with("signals")) =>
        {
            itap::telemetry::Error::InvalidParam(p.prefixed("telemetry")).into()
        }
        other => other.into(),
    })
}

/// Checks feature parameters (the file's and the flags'), naming a refused one in
/// `[features]`.
pub(crate) fn check_features(params: FeatureParams) -> Result<CheckedFeatures> {
    Ok(params.check().map_err(|e| e.in_section("features"))?)
}

/// Names a parameter the pipeline refuses by the config section it comes from:
/// `[eval]` for the evaluation's, `[features]` for the features', `[model]` for
/// the training set's (`model.inputs`).
pub(crate) fn in_config(e: itap::Error) -> itap::Error {
    match e {
        itap::Error::Eval(e) => itap::Error::Eval(e.in_section("eval")),
        itap::Error::Features(e) => itap::Error::Features(e.in_section("features")),
        e => e.in_section("model"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use itap::anomaly::Detector;

    #[test]
    fn the_example_config_parses_and_equals_the_defaults() {
        let text = include_str!("../../../configs/local.example.toml");
        let c = Config::parse(text).unwrap();
        assert_eq!(c.sim_params().unwrap(), SimParams::default());
        assert_eq!(c.faults, FaultParams::default());
        assert_eq!(
            c.output.telemetry_csv,
            PathBuf::from("data/raw/telemetry.csv")
        );
        assert_eq!(c.validation, ValidationParams::default());
        assert_eq!(c.model, ModelSection::default());
        assert_eq!(c.eval, EvalParams::default());
        assert_eq!(c.output.dir, PathBuf::from("artifacts"));
        // Every key of [validation] is in the example, set or commented out.
        let defaults = toml::to_string(&ValidationParams::default()).unwrap();
        let section = text
            .split("[validation]")
            .nth(1)
            .expect("the example has a [validation] section");
        for line in defaults.lines().filter(|l| l.contains(" = ")) {
            let key = line.split(" = ").next().unwrap();
            assert!(
                section.contains(&format!("\n{key} = "))
                    || section.contains(&format!("\n# {key} = ")),
                "[validation] key `{key}` is missing from the example config"
            );
        }
        for key in ["now", "severity"] {
            assert!(section.contains(key), "{key}");
        }
        assert_eq!(c.features, FeatureParams::default());
        assert_eq!(
            c.feature_params().unwrap(),
            FeatureParams::default().check().unwrap()
        );
        // Every key of [features] is in the example, set or commented out.
        let defaults = toml::to_string(&FeatureParams::default()).unwrap();
        let section = text
            .split("[features]")
            .nth(1)
            .expect("the example has a [features] section")
            .split("\n[")
            .next()
            .unwrap();
        for line in defaults.lines().filter(|l| l.contains(" = ")) {
            let key = line.split(" = ").next().unwrap();
            assert!(
                section.contains(&format!("\n{key} = "))
                    || section.contains(&format!("\n# {key} = ")),
                "[features] key `{key}` is missing from the example config"
            );
        }
    }

    #[test]
    fn features_section_maps_to_checked_params() {
        let c = Config::parse(
            "[features]\nwindows = [\"1m\", \"30rows\"]\nkinds = [\"mean\", \"z\"]\nperiod = \"24h\"\n",
        )
        .unwrap();
        let p = c.feature_params().unwrap();
        assert_eq!(p.windows().len(), 2);
        assert_eq!(p.kinds().len(), 2);
        let e = Config::parse("[features]\nwindow = [\"5m\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("window"), "{e}");
        let e = Config::parse("[features]\nkinds = [\"fft\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("fft"), "{e}");
        let e = Config::parse("[features]\nwindows = [\"5 parsecs\"]\n")
            .unwrap()
            .feature_params()
            .unwrap_err()
            .to_string();
        assert!(e.contains("features.windows"), "{e}");
    }

    #[test]
    fn validation_section_maps_to_checked_params() {
        let c = Config::parse(
            "[validation]\npolicy = \"quarantine\"\ngap_factor = 5.0\n[validation.severity]\n\"time.gap\" = \"error\"\n",
        )
        .unwrap();
        let p = c.validation_params(None, &SignalsFlag::default()).unwrap();
        assert_eq!(p.params().policy, Policy::Quarantine);
        assert_eq!(p.params().gap_factor, 5.0);
        assert_eq!(
            p.level(itap::validate::Check::Gap),
            itap::validate::Level::Error
        );
        let flagged = c
            .validation_params(Some(Policy::Reject), &SignalsFlag::default())
            .unwrap();
        assert_eq!(flagged.params().policy, Policy::Reject, "the flag wins");
        let e = Config::parse("[validation]\ngap_factr = 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("gap_factr"), "{e}");
        let e = Config::parse("[validation]\ngap_factor = 0.5\n")
            .unwrap()
            .validation_params(None, &SignalsFlag::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("validation.gap_factor"), "{e}");
    }

    #[test]
    fn signals_are_declared_by_the_flag_or_the_signals_sections() {
        let none = SignalsFlag::default();
        let plain = Config::parse("").unwrap();
        assert_eq!(
            plain.declared_signals(&none),
            None,
            "inferred from the header"
        );
        assert_eq!(
            plain
                .validation_params(None, &none)
                .unwrap()
                .params()
                .declared_signals,
            None
        );
        let c = Config::parse("[signals.temp_c]\nmax = 150\n[signals.rpm]\nmax = 4000\n").unwrap();
        let mut declared = c.declared_signals(&none).unwrap();
        declared.sort();
        assert_eq!(declared, ["rpm", "temp_c"]);
        let flag = SignalsFlag {
            signals: Some(vec!["voltage_v".into()]),
        };
        assert_eq!(
            c.validation_params(None, &flag)
                .unwrap()
                .params()
                .declared_signals,
            Some(vec!["voltage_v".to_owned()]),
            "the flag wins"
        );
        let e = plain
            .validation_params(
                None,
                &SignalsFlag {
                    signals: Some(vec!["a".into(), "a".into()]),
                },
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("validation.declared_signals"), "{e}");
    }

    #[test]
    fn model_and_eval_sections_map_to_checked_params() {
        let c = Config::parse(
            "[model]\ndetector = \"iforest\"\ninputs = [\"z\"]\n[model.iforest]\ntrees = 50\n[eval]\ntrain_fraction = 0.5\n",
        )
        .unwrap();
        let none = TrainFlags::default();
        let d = c.detector_params(&none).unwrap();
        assert_eq!(d.kind(), DetectorKind::IsolationForest);
        let f = c.feature_params().unwrap();
        assert_eq!(
            c.training_set(&none, &f).unwrap().inputs,
            vec![FeatureKind::Z]
        );
        assert!(!c.training_set(&none, &f).unwrap().unsupervised);
        assert_eq!(c.eval_params(&none).unwrap().params().train_fraction, 0.5);
        let flags = TrainFlags {
            detector: Some(DetectorKind::Pca),
            train_fraction: Some(0.8),
            train_until: None,
            unsupervised: true,
        };
        assert_eq!(c.detector_params(&flags).unwrap().kind(), DetectorKind::Pca);
        assert!(
            c.training_set(&flags, &f).unwrap().unsupervised,
            "the flag wins"
        );
        // Inputs that the features do not make are refused at load, named.
        let e =
            Config::parse("[model]\ninputs = [\"z\"]\n[features]\nkinds = [\"mean\"]\n").unwrap();
        let e = e
            .training_set(&none, &e.feature_params().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("model.inputs"), "{e}");
        assert_eq!(c.eval_params(&flags).unwrap().params().train_fraction, 0.8);
        let e = Config::parse("[model]\ndetecter = \"pca\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("detecter"), "{e}");
        let e = Config::parse("[model]\ndetector = \"svm\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("svm"), "{e}");
        let e = Config::parse("[model]\ndetector = \"iforest\"\n[model.iforest]\ntrees = 0\n")
            .unwrap()
            .detector_params(&none)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`model.iforest.trees`"), "{e}");
        let e = Config::parse("[eval]\ntrain_fraction = 1.5\n")
            .unwrap()
            .eval_params(&none)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`eval.train_fraction`"), "{e}");
    }

    #[test]
    fn refused_parameters_are_named_by_their_section() {
        let sim = |text: &str| {
            check_sim(Config::parse(text).unwrap().sim_params().unwrap())
                .unwrap_err()
                .to_string()
        };
        assert!(sim("[telemetry]\ndevices = 0\n").contains("`telemetry.devices`"));
        assert!(
            sim("[telemetry.states]\nidle_load = 2.0\n").contains("`telemetry.states.idle_load`")
        );
        assert!(sim("[faults]\nrate = 1.5\n").contains("`faults.rate`"));
        assert!(sim("[signals.rpm]\nnoise = -1.0\n").contains("`signals.rpm.noise`"));
        let e = in_config(itap::Error::Eval(
            itap::InvalidParam::new("threshold", "no training score").into(),
        ));
        assert!(e.to_string().contains("`eval.threshold`"), "{e}");
        let e = in_config(itap::InvalidParam::new("inputs", "none of them").into());
        assert!(e.to_string().contains("`model.inputs`"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::parse("[telemetry]\ndevics = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("devics"), "{e}");
        let e = Config::parse("[faults.power_spike]\nweigth = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("weigth"), "{e}");
        let e = Config::parse("[nonsense]\n").unwrap_err().to_string();
        assert!(e.contains("nonsense"), "{e}");
    }

    #[test]
    fn signals_override_and_extend() {
        let c = Config::parse(
            "[signals.rpm]\nnominal = 1500\n[signals.pressure_bar]\nnominal = 6.0\nunit = \"bar\"\nmax = 16\n",
        )
        .unwrap();
        let s = c.sim_params().unwrap().signals;
        assert_eq!(s[0].nominal, 1500.0);
        assert_eq!(
            s[0].signal.unit, "rpm",
            "untouched fields keep their defaults"
        );
        assert_eq!(s.last().unwrap().signal.name, "pressure_bar");
        assert_eq!(s.last().unwrap().signal.max, Some(16.0));
        let e = Config::parse("[signals.flow]\nunit = \"l/min\"\n")
            .unwrap()
            .sim_params()
            .unwrap_err();
        assert!(e.to_string().contains("signals.flow"), "{e}");
    }
}
