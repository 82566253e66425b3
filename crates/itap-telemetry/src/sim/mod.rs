//! The fleet simulator: operating states, physical signal models and fault injection.
//!
//! Each device draws from its own ChaCha8 stream, numbered by the device's index
//! under the configured seed, so a device's series does not depend on how many
//! devices there are or on how many threads generate them.

pub(crate) mod params;

use std::f64::consts::TAU;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

use crate::batch::{Batch, BatchColumns};
use crate::schema::{FaultKind, State};
use params::{CheckedSimParams, codes};

/// Simulates the fleet: rows ordered by timestamp, then device (the seed's order).
///
/// ```
/// use itap_telemetry::{ParamGuard, simulate, SimParams};
/// let batch = simulate(&SimParams::default().devices(3).hours(1.0).check()?);
/// assert_eq!(batch.len(), 3 * 360);
/// assert_eq!(batch.device_names(), ["DEV-0000", "DEV-0001", "DEV-0002"]);
/// # Ok::<(), itap_telemetry::Error>(())
/// ```
pub fn simulate(p: &CheckedSimParams) -> Batch {
    let devices = p.params.devices;
    let mut cols = Columns::new(p.schema.len(), p.steps * devices);
    // A block of devices at a time, simulated in parallel and then spread into
    // the batch's columns: only a block's own series are held beside the batch
    // (a whole fleet's would double the memory while they are interleaved).
    let block = 8 * rayon::current_num_threads().max(1);
    let mut first = 0;
    while first < devices {
        let last = (first + block).min(devices);
        let series: Vec<DeviceSeries> = (first..last)
            .into_par_iter()
            .map(|d| simulate_device(p, d))
            .collect();
        cols.spread(devices, first, &series);
        first = last;
    }
    cols.into_batch(p)
}

/// Simulates one device alone; its rows are those [`simulate`] gives that device.
pub fn simulate_device_batch(p: &CheckedSimParams, device: usize) -> Batch {
    let s = simulate_device(p, device);
    let n = p.steps;
    Batch::from_columns(BatchColumns {
        schema: p.schema.clone(),
        timestamps: (0..n)
            .map(|i| p.start_us + i as i64 * p.interval_us)
            .collect(),
        device_names: vec![p.device_id(device)],
        device_codes: vec![0; n],
        signals: s.signals,
        states: Some(s.states),
        error_codes: Some(s.errors),
        tag_names: tag_names(),
        tag_codes: Some(s.tags),
    })
    .expect("simulated columns are consistent by construction")
}

fn tag_names() -> Vec<String> {
    std::iter::once(String::new())
        .chain(FaultKind::ALL.iter().map(|k| k.as_str().to_owned()))
        .collect()
}

fn tag_code(kind: FaultKind) -> u32 {
    FaultKind::ALL
        .iter()
        .position(|&k| k == kind)
        .map_or(0, |i| i as u32 + 1)
}

struct DeviceSeries {
    signals: Vec<Vec<f64>>,
    states: Vec<State>,
    errors: Vec<i32>,
    tags: Vec<u32>,
}

/// A fault in progress.
struct ActiveFault {
    kind: FaultKind,
    start: usize,
    len: usize,
    severity: f64,
    /// +1 or -1: the direction of a power spike's voltage excursion.
    sign: f64,
}

/// Which physical model a signal follows.
#[derive(Clone, Copy)]
enum Model {
    Rpm,
    Temp,
    Vibration,
    Current,
    Voltage,
    Load,
}

fn model_of(name: &str) -> Model {
    match name {
        "rpm" => Model::Rpm,
        "temp_c" => Model::Temp,
        "vibration_g" => Model::Vibration,
        "current_a" => Model::Current,
        "voltage_v" => Model::Voltage,
        _ => Model::Load,
    }
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(StandardNormal)
}

// Over 120 lines on purpose: one pass over the device's samples that holds the
// whole simulation state (Markov state, lags, the active fault, the RNG), whose
// draw order is part of the output's determinism; cut into pieces, those pieces
// would pass a dozen mutable locals between them. Split it when it next changes.
fn simulate_device(p: &CheckedSimParams, device: usize) -> DeviceSeries {
    let prm = &p.params;
    let mut rng = ChaCha8Rng::seed_from_u64(prm.seed);
    rng.set_stream(device as u64);

    let n = p.steps;
    let k = prm.signals.len();
    let dt = p.interval_us as f64 / 1e6;
    let st = &prm.states;
    let amb = &prm.ambient;
    let f = &prm.faults;

    // Nominal levels the physical models refer to (defaults if a signal is absent).
    let level = |name: &str, default: f64| {
        prm.signals
            .iter()
            .find(|s| s.signal.name == name)
            .map_or(default, |s| s.nominal)
    };
    let rpm_nom = level("rpm", 1800.0).max(1.0);
    let current_nom = level("current_a", 6.5);

    // Per-device heterogeneity, drawn first so that it never depends on the span.
    let speed_factor = 1.0 + 0.03 * normal(&mut rng);
    let temp_offset = 1.5 * normal(&mut rng);
    let vib_factor = (0.12 * normal(&mut rng)).exp();
    let current_factor = 1.0 + 0.04 * normal(&mut rng);
    let voltage_offset = 0.1 * normal(&mut rng);
    let load_factor = 1.0 + 0.05 * normal(&mut rng);
    let phase = TAU * rng.random::<f64>();

    let models: Vec<Model> = prm
        .signals
        .iter()
        .map(|s| model_of(&s.signal.name))
        .collect();
    let ints: Vec<bool> = prm
        .signals
        .iter()
        .map(|s| s.signal.kind == crate::schema::SignalKind::Int)
        .collect();
    let mut out = DeviceSeries {
        signals: vec![Vec::with_capacity(n); k],
        states: Vec::with_capacity(n),
        errors: Vec::with_capacity(n),
        tags: Vec::with_capacity(n),
    };

    let rpm_alpha = 1.0 - (-dt / st.rpm_time_constant_s).exp();
    let heat_alpha = 1.0 - (-dt / st.thermal_time_constant_s).exp();
    let leave = State::ALL.map(|s| 1.0 - (-dt / st.dwell_seconds(s)).exp());
    let period_s = amb.period_hours * 3600.0;
    let heat_share = |s: State| match s {
        State::Run => 1.0,
        State::Idle => 0.35,
        State::Maint => 0.0,
    };
    let load_of = |s: State| match s {
        State::Run => 1.0,
        State::Idle => st.idle_load,
        State::Maint => 0.0,
    };
    let ambient_at = |t: f64| amb.mean_c + amb.amplitude_c * (TAU * t / period_s + phase).sin();

    // Start warm and running, as a fleet observed mid-shift.
    let mut state = State::Run;
    let mut speed = rpm_nom * speed_factor;
    let temp_rise_nom = level("temp_c", 55.0) + temp_offset - amb.mean_c;
    let mut heat = temp_rise_nom;
    let mut fault: Option<ActiveFault> = None;
    let kinds: Vec<(FaultKind, f64)> = FaultKind::ALL
        .iter()
        .map(|&kind| (kind, f.kind(kind)))
        .filter(|(_, kp)| kp.enabled && kp.weight > 0.0)
        .map(|(kind, kp)| (kind, kp.weight))
        .collect();
    let total_weight: f64 = kinds.iter().map(|(_, w)| w).sum();

    for i in 0..n {
        let t = i as f64 * dt;
        // State process.
        if i > 0 && rng.random::<f64>() < leave[state as usize] {
            state = match state {
                State::Maint => {
                    if rng.random::<f64>() < 0.7 {
                        State::Run
                    } else {
                        State::Idle
                    }
                }
                s => {
                    if rng.random::<f64>() < st.maint_share {
                        State::Maint
                    } else if s == State::Run {
                        State::Idle
                    } else {
                        State::Run
                    }
                }
            };
        }
        // Fault onset.
        if fault.is_none() && state != State::Maint && f.rate > 0.0 && rng.random::<f64>() < f.rate
        {
            let mut pick = rng.random::<f64>() * total_weight;
            let mut chosen = kinds[kinds.len() - 1].0;
            for &(kind, w) in &kinds {
                if pick < w {
                    chosen = kind;
                    break;
                }
                pick -= w;
            }
            let kp = f.kind(chosen);
            let secs = kp.min_seconds + (kp.max_seconds - kp.min_seconds) * rng.random::<f64>();
            let severity =
                kp.min_severity + (kp.max_severity - kp.min_severity) * rng.random::<f64>();
            let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
            fault = Some(ActiveFault {
                kind: chosen,
                start: i,
                len: ((secs / dt).round() as usize).max(1),
                severity,
                sign,
            });
        }
        let (active, progress) = match &fault {
            Some(af) => (Some(af), (i - af.start + 1) as f64 / af.len as f64),
            None => (None, 0.0),
        };

        // Physical state: first-order lags toward the state's targets.
        let target_speed = rpm_nom * speed_factor * load_of(state);
        speed += (target_speed - speed) * rpm_alpha;
        let target_heat = temp_rise_nom * heat_share(state);
        heat += (target_heat - heat) * heat_alpha;
        let load = (speed / rpm_nom).max(0.0);
        let ambient = ambient_at(t);

        let mut error = codes::OK;
        let mut temperature = ambient + heat;
        let mut current_scale = 1.0;
        let mut vib_extra = 0.0;
        let mut vib_scale = 1.0;
        let mut volt_scale = 1.0;
        let mut dropout = false;
        if let Some(af) = active {
            match af.kind {
                FaultKind::OverheatDrift => {
                    temperature += f.overheat_rise_c * af.severity * progress;
                }
                FaultKind::BearingWear => {
                    let growth = af.severity * progress;
                    vib_scale = 1.0 + 1.5 * growth;
                    let wave = 0.5 + 0.5 * (TAU * t / f.bearing_period_s).sin();
                    vib_extra = level("vibration_g", 0.25) * vib_factor * 0.8 * growth * wave;
                    current_scale = 1.0 + 0.04 * growth;
                }
                FaultKind::PowerSpike => {
                    volt_scale = 1.0 + af.sign * 0.2 * af.severity;
                    current_scale = 1.0 + 0.5 * af.severity;
                }
                FaultKind::SensorDropout => {
                    dropout = true;
                    error = codes::SENSOR_LOST;
                }
            }
        }
        if error == codes::OK
            && f.nuisance_error_rate > 0.0
            && rng.random::<f64>() < f.nuisance_error_rate
        {
            error = codes::NUISANCE;
        }

        let current_true = (0.6 + (current_nom - 0.6) * load) * current_factor * current_scale;
        for (j, s) in prm.signals.iter().enumerate() {
            let noise = s.noise * normal(&mut rng);
            let mut v = match models[j] {
                Model::Rpm => speed + noise,
                Model::Temp => {
                    // Heat scales with the signal's own nominal if it differs from the default.
                    temperature + noise
                }
                Model::Vibration => {
                    let base = s.nominal * vib_factor * load.powf(1.5) + 0.01;
                    (base * vib_scale + vib_extra) * (1.0 + 0.04 * normal(&mut rng)) + noise
                }
                Model::Current => current_true + noise,
                Model::Voltage => {
                    (s.nominal + voltage_offset - 0.03 * (current_true - current_nom)) * volt_scale
                        + noise
                }
                Model::Load => s.nominal * load_factor * (0.2 + 0.8 * load) + noise,
            };
            if ints[j] {
                v = v.round();
            }
            // Non-negative quantities; `<=` also turns -0.0 into 0.0.
            if matches!(models[j], Model::Rpm | Model::Vibration | Model::Current) && v <= 0.0 {
                v = 0.0;
            }
            out.signals[j].push(v);
        }
        if dropout {
            for &j in &p.dropout {
                out.signals[j][i] = f64::NAN;
            }
        }
        if matches!(active, Some(af) if af.kind == FaultKind::OverheatDrift)
            && temperature > f.overheat_limit_c
        {
            error = codes::OVER_TEMPERATURE;
        }
        out.states.push(state);
        out.errors.push(error);
        out.tags.push(active.map_or(0, |af| tag_code(af.kind)));
        if let Some(af) = &fault
            && i + 1 >= af.start + af.len
        {
            fault = None;
        }
    }
    out
}

/// Interleaves per-device series into one batch ordered by (timestamp, device).
/// The fleet's columns, in the order rows by timestamp, then device.
struct Columns {
    signals: Vec<Vec<f64>>,
    states: Vec<State>,
    errors: Vec<i32>,
    tags: Vec<u32>,
}

impl Columns {
    fn new(signals: usize, rows: usize) -> Columns {
        Columns {
            signals: (0..signals).map(|_| vec![0.0; rows]).collect(),
            states: vec![State::Run; rows],
            errors: vec![0; rows],
            tags: vec![0; rows],
        }
    }

    /// Puts the series of devices `first..first + series.len()` (of `devices`)
    /// in their rows: step i of device d is row i × devices + d.
    fn spread(&mut self, devices: usize, first: usize, series: &[DeviceSeries]) {
        fn put<T: Copy>(
            col: &mut [T],
            devices: usize,
            first: usize,
            series: &[DeviceSeries],
            get: impl Fn(&DeviceSeries) -> &[T],
        ) {
            for (i, row) in col.chunks_exact_mut(devices).enumerate() {
                for (slot, s) in row[first..first + series.len()].iter_mut().zip(series) {
                    *slot = get(s)[i];
                }
            }
        }
        self.signals
            .par_iter_mut()
            .enumerate()
            .for_each(|(j, col)| put(col, devices, first, series, |s| &s.signals[j]));
        put(&mut self.states, devices, first, series, |s| &s.states);
        put(&mut self.errors, devices, first, series, |s| &s.errors);
        put(&mut self.tags, devices, first, series, |s| &s.tags);
    }

    fn into_batch(self, p: &CheckedSimParams) -> Batch {
        let devices = p.params.devices;
        let rows = self.states.len();
        Batch::from_columns(BatchColumns {
            schema: p.schema.clone(),
            timestamps: (0..rows)
                .map(|r| p.start_us + (r / devices.max(1)) as i64 * p.interval_us)
                .collect(),
            device_names: (0..devices).map(|d| p.device_id(d)).collect(),
            device_codes: (0..rows).map(|r| (r % devices.max(1)) as u32).collect(),
            signals: self.signals,
            states: Some(self.states),
            error_codes: Some(self.errors),
            tag_names: tag_names(),
            tag_codes: Some(self.tags),
        })
        .expect("simulated columns are consistent by construction")
    }
}
