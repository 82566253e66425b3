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
    // A block of samples of every device at a time, spread into its own
    // stretch of the batch's rows (the rows of a block are consecutive): only
    // the block's series are held beside the batch, and its writes stay in the
    // processor's caches.
    let mut sim = FleetSim::new(p);
    let steps = (BLOCK_ROWS / devices.max(1)).max(1);
    while sim.fill(steps, &mut cols, true) {}
    cols.into_batch(p, 0)
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

/// The fleet simulated a span of samples at a time, for fleets and spans too
/// large to hold at once: each [`next_block`](FleetSim::next_block) gives the
/// next samples of every device, and the blocks, one after the other, are the
/// rows [`simulate`] gives, in the same order. Only the devices' simulation
/// states (a few hundred bytes each) are kept between blocks.
///
/// ```
/// use itap_telemetry::{FleetSim, ParamGuard, SimParams, simulate};
/// let p = SimParams::default().devices(3).hours(1.0).check()?;
/// let mut sim = FleetSim::new(&p);
/// let first = sim.next_block(100).unwrap();
/// assert_eq!(first.len(), 3 * 100);
/// assert_eq!(first.signal(0), &simulate(&p).signal(0)[..300]);
/// let rest = sim.next_block(1000).unwrap();
/// assert_eq!(rest.len(), 3 * 260);
/// assert!(sim.next_block(1000).is_none());
/// # Ok::<(), itap_telemetry::Error>(())
/// ```
pub struct FleetSim<'p> {
    p: &'p CheckedSimParams,
    devices: Vec<(DeviceSim, DeviceSeries)>,
    next_step: usize,
}

impl std::fmt::Debug for FleetSim<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetSim")
            .field("devices", &self.devices.len())
            .field("next_step", &self.next_step)
            .finish_non_exhaustive()
    }
}

impl<'p> FleetSim<'p> {
    /// The fleet at its first sample.
    pub fn new(p: &'p CheckedSimParams) -> FleetSim<'p> {
        let k = p.params.signals.len();
        FleetSim {
            p,
            devices: (0..p.params.devices)
                .map(|d| (DeviceSim::new(p, d), DeviceSeries::with_capacity(k, 0)))
                .collect(),
            next_step: 0,
        }
    }

    /// Samples given so far, per device.
    pub fn steps_done(&self) -> usize {
        self.next_step
    }

    /// The next `steps` samples of every device (fewer at the end of the span;
    /// at least one), ordered by timestamp, then device, as [`simulate`]'s rows;
    /// `None` once the span is done. The devices are advanced in parallel
    /// (rayon); the rows do not depend on the thread count or on the block sizes.
    pub fn next_block(&mut self, steps: usize) -> Option<Batch> {
        let p = self.p;
        let first_step = self.next_step;
        let steps = steps.max(1).min(p.steps - first_step);
        let mut cols = Columns::new(p.schema.len(), steps * self.devices.len());
        self.fill(steps, &mut cols, false)
            .then(|| cols.into_batch(p, first_step))
    }

    /// Advances every device by `steps` samples (fewer at the end) and puts
    /// them in `cols`: at their own rows when `cols` holds the whole span
    /// (`whole`), else at its start. Whether there were any left.
    fn fill(&mut self, steps: usize, cols: &mut Columns, whole: bool) -> bool {
        let p = self.p;
        let steps = steps.max(1).min(p.steps - self.next_step);
        if steps == 0 {
            return false;
        }
        self.devices.par_iter_mut().for_each(|(sim, series)| {
            series.clear();
            sim.advance(p, steps, series);
        });
        let devices = self.devices.len();
        let first_row = if whole { self.next_step * devices } else { 0 };
        let series: Vec<&DeviceSeries> = self.devices.iter().map(|(_, s)| s).collect();
        cols.spread(first_row..first_row + steps * devices, devices, &series);
        self.next_step += steps;
        true
    }
}

/// Rows of a [`FleetSim`] block that [`simulate_to_csv`] aims for (about 18 MB
/// with the default signals).
const BLOCK_ROWS: usize = 262_144;

/// What [`simulate_to_csv`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimulatedCsv {
    /// Rows written.
    pub rows: u64,
    /// Rows tagged with a fault.
    pub tagged_rows: u64,
}

/// Simulates the fleet into a CSV file a block of samples at a time (see
/// [`FleetSim`]): the file is the bytes [`write_csv`](crate::write_csv) writes
/// for [`simulate`]'s batch, and the memory held does not grow with the span or
/// the fleet beyond each device's few hundred bytes of state. The file is
/// written through an [`AtomicFile`](crate::AtomicFile): whole or not at all.
/// `on_rows` hears the rows written so far after each block.
///
/// # Errors
/// [`Error::Io`](crate::Error::Io) naming the path when a folder or the file
/// cannot be written.
pub fn simulate_to_csv(
    p: &CheckedSimParams,
    path: impl AsRef<std::path::Path>,
    on_rows: &mut dyn FnMut(u64),
) -> crate::Result<SimulatedCsv> {
    let path = path.as_ref();
    let mut file = crate::AtomicFile::create(path)?;
    let mut rows = 0u64;
    let done = simulate_into(p, &mut file, path, &mut |block| {
        rows += block.len() as u64;
        on_rows(rows);
        Ok::<(), crate::Error>(())
    })?;
    file.commit()?;
    Ok(done)
}

/// Simulates the fleet as CSV into `out` a block of samples at a time (the
/// bytes [`simulate_to_csv`] writes; `path` names `out` in errors), and hands
/// each block, once written, to `on_block`: a caller can validate or keep the
/// rows as they go by without holding the fleet. The next block is simulated
/// on a thread of its own meanwhile. An error from `on_block` stops the
/// simulation and is returned.
///
/// ```
/// use itap_telemetry::{ParamGuard, SimParams, simulate, simulate_into, write_csv_to};
/// let p = SimParams::default().devices(3).hours(1.0).check()?;
/// let (mut bytes, mut rows) = (Vec::new(), 0);
/// simulate_into(&p, &mut bytes, "fleet.csv".as_ref(), &mut |block| {
///     rows += block.len();
///     Ok::<(), itap_telemetry::Error>(())
/// })?;
/// let mut whole = Vec::new();
/// write_csv_to(&simulate(&p), &mut whole)?;
/// assert_eq!((bytes, rows), (whole, 3 * 360));
/// # Ok::<(), itap_telemetry::Error>(())
/// ```
///
/// # Errors
/// [`Error::Io`](crate::Error::Io) naming `path` when `out` cannot be
/// written; `on_block`'s error.
pub fn simulate_into<E: From<crate::Error>>(
    p: &CheckedSimParams,
    out: &mut dyn std::io::Write,
    path: &std::path::Path,
    on_block: &mut dyn FnMut(&Batch) -> Result<(), E>,
) -> Result<SimulatedCsv, E> {
    let mut out = crate::CsvBatchWriter::new(out);
    let steps = (BLOCK_ROWS / p.params.devices.max(1)).max(1);
    let mut done = SimulatedCsv {
        rows: 0,
        tagged_rows: 0,
    };
    // The next block is simulated on a thread of its own while this one is
    // written, in a pool as large as the caller's (a thread outside any pool
    // would use rayon's global one).
    let pool = rayon::current_num_threads();
    std::thread::scope(|s| -> Result<(), E> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        s.spawn(move || {
            let simulate = || {
                let mut sim = FleetSim::new(p);
                while let Some(block) = sim.next_block(steps) {
                    if tx.send(block).is_err() {
                        break;
                    }
                }
            };
            match rayon::ThreadPoolBuilder::new().num_threads(pool).build() {
                Ok(own) => own.install(simulate),
                Err(_) => simulate(),
            }
        });
        for block in rx {
            out.write(&block).map_err(|e| e.at_path(path))?;
            done.rows += block.len() as u64;
            done.tagged_rows += block.tagged_rows() as u64;
            on_block(&block)?;
        }
        Ok(())
    })?;
    Ok(done)
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

impl DeviceSeries {
    fn with_capacity(signals: usize, n: usize) -> DeviceSeries {
        DeviceSeries {
            signals: vec![Vec::with_capacity(n); signals],
            states: Vec::with_capacity(n),
            errors: Vec::with_capacity(n),
            tags: Vec::with_capacity(n),
        }
    }

    fn clear(&mut self) {
        self.signals.iter_mut().for_each(Vec::clear);
        self.states.clear();
        self.errors.clear();
        self.tags.clear();
    }
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

fn simulate_device(p: &CheckedSimParams, device: usize) -> DeviceSeries {
    let mut sim = DeviceSim::new(p, device);
    let mut out = DeviceSeries::with_capacity(p.params.signals.len(), p.steps);
    sim.advance(p, p.steps, &mut out);
    out
}

/// One device's simulation, a sample at a time: everything its series carries
/// from one sample to the next (the RNG, whose draw order is part of the
/// output's determinism, the Markov state, the lags and the active fault), and
/// the constants drawn or derived once. Advancing it in pieces gives the same
/// samples as in one go.
struct DeviceSim {
    rng: ChaCha8Rng,
    /// The next sample's index.
    i: usize,
    models: Vec<Model>,
    ints: Vec<bool>,
    rpm_nom: f64,
    current_nom: f64,
    vib_nom: f64,
    speed_factor: f64,
    vib_factor: f64,
    current_factor: f64,
    voltage_offset: f64,
    load_factor: f64,
    phase: f64,
    dt: f64,
    rpm_alpha: f64,
    heat_alpha: f64,
    leave: [f64; 3],
    temp_rise_nom: f64,
    kinds: Vec<(FaultKind, f64)>,
    total_weight: f64,
    state: State,
    speed: f64,
    heat: f64,
    fault: Option<ActiveFault>,
}

fn heat_share(s: State) -> f64 {
    match s {
        State::Run => 1.0,
        State::Idle => 0.35,
        State::Maint => 0.0,
    }
}

impl DeviceSim {
    fn new(p: &CheckedSimParams, device: usize) -> DeviceSim {
        let prm = &p.params;
        let mut rng = ChaCha8Rng::seed_from_u64(prm.seed);
        rng.set_stream(device as u64);
        let dt = p.interval_us as f64 / 1e6;
        let st = &prm.states;
        let f = &prm.faults;

        // Nominal levels the physical models refer to (defaults if a signal is absent).
        let level = |name: &str, default: f64| {
            prm.signals
                .iter()
                .find(|s| s.signal.name == name)
                .map_or(default, |s| s.nominal)
        };
        let rpm_nom = level("rpm", 1800.0).max(1.0);

        // Per-device heterogeneity, drawn first so that it never depends on the span.
        let speed_factor = 1.0 + 0.03 * normal(&mut rng);
        let temp_offset = 1.5 * normal(&mut rng);
        let vib_factor = (0.12 * normal(&mut rng)).exp();
        let current_factor = 1.0 + 0.04 * normal(&mut rng);
        let voltage_offset = 0.1 * normal(&mut rng);
        let load_factor = 1.0 + 0.05 * normal(&mut rng);
        let phase = TAU * rng.random::<f64>();

        let kinds: Vec<(FaultKind, f64)> = FaultKind::ALL
            .iter()
            .map(|&kind| (kind, f.kind(kind)))
            .filter(|(_, kp)| kp.enabled && kp.weight > 0.0)
            .map(|(kind, kp)| (kind, kp.weight))
            .collect();
        let total_weight = kinds.iter().map(|(_, w)| w).sum();
        let temp_rise_nom = level("temp_c", 55.0) + temp_offset - prm.ambient.mean_c;
        DeviceSim {
            rng,
            i: 0,
            models: prm
                .signals
                .iter()
                .map(|s| model_of(&s.signal.name))
                .collect(),
            ints: prm
                .signals
                .iter()
                .map(|s| s.signal.kind == crate::schema::SignalKind::Int)
                .collect(),
            rpm_nom,
            current_nom: level("current_a", 6.5),
            vib_nom: level("vibration_g", 0.25),
            speed_factor,
            vib_factor,
            current_factor,
            voltage_offset,
            load_factor,
            phase,
            dt,
            rpm_alpha: 1.0 - (-dt / st.rpm_time_constant_s).exp(),
            heat_alpha: 1.0 - (-dt / st.thermal_time_constant_s).exp(),
            leave: State::ALL.map(|s| 1.0 - (-dt / st.dwell_seconds(s)).exp()),
            temp_rise_nom,
            kinds,
            total_weight,
            // Start warm and running, as a fleet observed mid-shift.
            state: State::Run,
            speed: rpm_nom * speed_factor,
            heat: temp_rise_nom,
            fault: None,
        }
    }

    /// Appends the next `count` samples (fewer at the end of the span) to `out`.
    fn advance(&mut self, p: &CheckedSimParams, count: usize, out: &mut DeviceSeries) {
        let end = (self.i + count).min(p.steps);
        while self.i < end {
            self.step(p, out);
            self.i += 1;
        }
    }

    /// Draws a new state, maybe starts a fault, and returns the fault in
    /// progress with how far along it is (0 to 1).
    fn next_state(&mut self, p: &CheckedSimParams) -> (Option<&ActiveFault>, f64) {
        let (i, st, f) = (self.i, &p.params.states, &p.params.faults);
        let rng = &mut self.rng;
        if i > 0 && rng.random::<f64>() < self.leave[self.state as usize] {
            self.state = match self.state {
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
        if self.fault.is_none()
            && self.state != State::Maint
            && f.rate > 0.0
            && rng.random::<f64>() < f.rate
        {
            let kinds = &self.kinds;
            let mut pick = rng.random::<f64>() * self.total_weight;
            let mut chosen = kinds[kinds.len() - 1].0;
            for &(kind, w) in kinds {
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
            self.fault = Some(ActiveFault {
                kind: chosen,
                start: i,
                len: ((secs / self.dt).round() as usize).max(1),
                severity,
                sign,
            });
        }
        match &self.fault {
            Some(af) => (Some(af), (i - af.start + 1) as f64 / af.len as f64),
            None => (None, 0.0),
        }
    }

    /// Sample `self.i`, appended to `out`.
    fn step(&mut self, p: &CheckedSimParams, out: &mut DeviceSeries) {
        let prm = &p.params;
        let (st, amb, f) = (&prm.states, &prm.ambient, &prm.faults);
        let (active, progress) = self.next_state(p);
        let active = active.map(|af| (af.kind, af.severity, af.sign));
        let i = self.i;
        let t = i as f64 * self.dt;
        let state = self.state;
        let load_of = match state {
            State::Run => 1.0,
            State::Idle => st.idle_load,
            State::Maint => 0.0,
        };

        // Physical state: first-order lags toward the state's targets.
        let target_speed = self.rpm_nom * self.speed_factor * load_of;
        self.speed += (target_speed - self.speed) * self.rpm_alpha;
        let target_heat = self.temp_rise_nom * heat_share(state);
        self.heat += (target_heat - self.heat) * self.heat_alpha;
        let load = (self.speed / self.rpm_nom).max(0.0);
        let ambient = amb.mean_c
            + amb.amplitude_c * (TAU * t / (amb.period_hours * 3600.0) + self.phase).sin();

        let mut error = codes::OK;
        let mut temperature = ambient + self.heat;
        let mut current_scale = 1.0;
        let mut vib_extra = 0.0;
        let mut vib_scale = 1.0;
        let mut volt_scale = 1.0;
        let mut dropout = false;
        if let Some((kind, severity, sign)) = active {
            match kind {
                FaultKind::OverheatDrift => {
                    temperature += f.overheat_rise_c * severity * progress;
                }
                FaultKind::BearingWear => {
                    let growth = severity * progress;
                    vib_scale = 1.0 + 1.5 * growth;
                    let wave = 0.5 + 0.5 * (TAU * t / f.bearing_period_s).sin();
                    vib_extra = self.vib_nom * self.vib_factor * 0.8 * growth * wave;
                    current_scale = 1.0 + 0.04 * growth;
                }
                FaultKind::PowerSpike => {
                    volt_scale = 1.0 + sign * 0.2 * severity;
                    current_scale = 1.0 + 0.5 * severity;
                }
                FaultKind::SensorDropout => {
                    dropout = true;
                    error = codes::SENSOR_LOST;
                }
            }
        }
        let rng = &mut self.rng;
        if error == codes::OK
            && f.nuisance_error_rate > 0.0
            && rng.random::<f64>() < f.nuisance_error_rate
        {
            error = codes::NUISANCE;
        }

        let current_nom = self.current_nom;
        let current_true = (0.6 + (current_nom - 0.6) * load) * self.current_factor * current_scale;
        for (j, s) in prm.signals.iter().enumerate() {
            let noise = s.noise * normal(rng);
            let mut v = match self.models[j] {
                Model::Rpm => self.speed + noise,
                Model::Temp => temperature + noise,
                Model::Vibration => {
                    let base = s.nominal * self.vib_factor * load.powf(1.5) + 0.01;
                    (base * vib_scale + vib_extra) * (1.0 + 0.04 * normal(rng)) + noise
                }
                Model::Current => current_true + noise,
                Model::Voltage => {
                    (s.nominal + self.voltage_offset - 0.03 * (current_true - current_nom))
                        * volt_scale
                        + noise
                }
                Model::Load => s.nominal * self.load_factor * (0.2 + 0.8 * load) + noise,
            };
            if self.ints[j] {
                v = v.round();
            }
            // Non-negative quantities; `<=` also turns -0.0 into 0.0.
            if matches!(
                self.models[j],
                Model::Rpm | Model::Vibration | Model::Current
            ) && v <= 0.0
            {
                v = 0.0;
            }
            out.signals[j].push(if dropout && p.dropout.contains(&j) {
                f64::NAN
            } else {
                v
            });
        }
        if matches!(active, Some((FaultKind::OverheatDrift, ..)))
            && temperature > f.overheat_limit_c
        {
            error = codes::OVER_TEMPERATURE;
        }
        out.states.push(state);
        out.errors.push(error);
        out.tags.push(active.map_or(0, |(kind, ..)| tag_code(kind)));
        if let Some(af) = &self.fault
            && i + 1 >= af.start + af.len
        {
            self.fault = None;
        }
    }
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

    /// Puts the series of every device (of `devices`) in `rows`, consecutive
    /// rows ordered by time, then device: the series' step i of device d is row
    /// `rows.start + i × devices + d`.
    fn spread(&mut self, rows: std::ops::Range<usize>, devices: usize, series: &[&DeviceSeries]) {
        fn put<T: Copy>(
            col: &mut [T],
            devices: usize,
            series: &[&DeviceSeries],
            get: impl Fn(&DeviceSeries) -> &[T],
        ) {
            for (i, row) in col.chunks_exact_mut(devices).enumerate() {
                for (slot, s) in row.iter_mut().zip(series) {
                    *slot = get(s)[i];
                }
            }
        }
        if devices == 0 {
            return;
        }
        let r = rows;
        self.signals
            .par_iter_mut()
            .enumerate()
            .for_each(|(j, col)| put(&mut col[r.clone()], devices, series, |s| &s.signals[j]));
        put(&mut self.states[r.clone()], devices, series, |s| &s.states);
        put(&mut self.errors[r.clone()], devices, series, |s| &s.errors);
        put(&mut self.tags[r], devices, series, |s| &s.tags);
    }

    /// The batch of these columns, whose first rows are sample `first_step`.
    fn into_batch(self, p: &CheckedSimParams, first_step: usize) -> Batch {
        let devices = p.params.devices;
        let rows = self.states.len();
        Batch::from_columns(BatchColumns {
            schema: p.schema.clone(),
            timestamps: (0..rows)
                .map(|r| p.start_us + (first_step + r / devices.max(1)) as i64 * p.interval_us)
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
