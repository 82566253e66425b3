//! Training on a fleet a group of devices at a time, for datasets too large to
//! hold at once: [`train_grouped`] over any [`DeviceGroups`] (a stored dataset,
//! [`StoreGroups`]; a batch in memory, [`BatchGroups`]).
//!
//! What it holds at a time: one group's rows and features, the devices' fitted
//! baselines, and the training sample (at most `max_training_rows` fitted rows and
//! as many held-back rows, with their features). What [`train_and_score`]
//! computes from the whole batch comes from:
//! - the fleet's pooled baselines, fallback spreads and seasonal profiles: a
//!   whole fit ([`itap_features::fit_fleet`]) of the devices of a seeded sample
//!   of at most `fleet_rows` rows (every device when the fleet has no more rows;
//!   the model then is [`train_and_score`]'s, bit for bit);
//! - each device's baselines: [`itap_features::fit_devices`] on its group, against
//!   those fleet parts;
//! - the scaler's and the detector's sample, and the held-back rows: the rows with
//!   the smallest [`sample_key`]s, which do not depend on how the fleet is grouped.
//!
//! [`train_and_score`]: crate::train_and_score

use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, PoisonError};

use itap_anomaly::CheckedDetector;
use itap_anomaly::ndarray::{Array2, ShapeBuilder};
use itap_eval::CheckedEval;
use itap_features::{
    CheckedFeatures, ChunkedTransform, DevicesFit, FeatureChunk, FeaturesFit, TrainSpan,
};
use itap_store::{RangeQuery, Store};
use itap_telemetry::{Batch, format_timestamp};

use crate::error::{Error, Result};
use crate::model::{ModelFile, TrainingInfo};
use crate::pipeline::ingest::{StoreSettings, store_runtime};
use crate::pipeline::train::{
    MIN_CALIBRATION_ROWS, TrainingSet, detector_features, directions, exclusions,
    fit_scaler_and_detector, model_file, sample_key, training_rows,
};

/// A dataset read a group of devices at a time.
pub trait DeviceGroups {
    /// Every device id with its number of rows, ordered by device id.
    fn devices(&self) -> &[(String, u64)];

    /// The first and last timestamp of all rows (UTC microseconds); `None`
    /// without rows.
    fn time_bounds(&self) -> Option<(i64, i64)>;

    /// Every row of `devices`, in time order, then by device id.
    ///
    /// # Errors
    /// When the rows cannot be read.
    fn load(&mut self, devices: &[String]) -> Result<Batch>;
}

/// A batch already in memory, read a group of devices at a time (what
/// [`train_grouped`] gives on it is compared with training on the whole).
#[derive(Debug)]
pub struct BatchGroups<'a> {
    batch: &'a Batch,
    devices: Vec<(String, u64)>,
}

impl<'a> BatchGroups<'a> {
    /// The devices of `batch` and their rows.
    pub fn new(batch: &'a Batch) -> Self {
        let mut counts = vec![0u64; batch.device_names().len()];
        for &c in batch.device_codes() {
            counts[c as usize] += 1;
        }
        let mut devices: Vec<(String, u64)> = batch
            .device_names()
            .iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .map(|(d, n)| (d.clone(), n))
            .collect();
        devices.sort();
        BatchGroups { batch, devices }
    }
}

impl DeviceGroups for BatchGroups<'_> {
    fn devices(&self) -> &[(String, u64)] {
        &self.devices
    }

    fn time_bounds(&self) -> Option<(i64, i64)> {
        self.batch.time_bounds()
    }

    fn load(&mut self, devices: &[String]) -> Result<Batch> {
        let names = self.batch.device_names();
        let wanted: Vec<bool> = names.iter().map(|n| devices.contains(n)).collect();
        let codes = self.batch.device_codes();
        let mut rows: Vec<usize> = (0..self.batch.len())
            .filter(|&r| wanted[codes[r] as usize])
            .collect();
        let ts = self.batch.timestamps();
        rows.sort_by(|&a, &b| {
            (ts[a], &names[codes[a] as usize]).cmp(&(ts[b], &names[codes[b] as usize]))
        });
        Ok(self.batch.take(&rows))
    }
}

/// A stored dataset, read a group of devices at a time.
#[derive(Debug)]
pub struct StoreGroups {
    runtime: tokio::runtime::Runtime,
    store: Store,
    dataset: String,
    devices: Vec<(String, u64)>,
    bounds: Option<(i64, i64)>,
}

impl StoreGroups {
    /// Opens the settings' dataset and counts its rows per device.
    ///
    /// # Errors
    /// [`Error::Store`] when the store cannot be reached or has no such dataset.
    pub fn open(settings: &StoreSettings) -> Result<Self> {
        let runtime = store_runtime()?;
        let (store, rows) = runtime.block_on(async {
            let store = settings.connect().await?;
            match store.device_rows(&settings.dataset).await {
                Ok(rows) => Ok((store, rows)),
                Err(e) => {
                    store.close().await;
                    Err(Error::from(e))
                }
            }
        })?;
        let bounds = rows.iter().fold(None, |b: Option<(i64, i64)>, r| {
            Some(b.map_or((r.2, r.3), |(lo, hi)| (lo.min(r.2), hi.max(r.3))))
        });
        let mut devices: Vec<(String, u64)> = rows.into_iter().map(|r| (r.0, r.1)).collect();
        devices.sort();
        Ok(StoreGroups {
            runtime,
            store,
            dataset: settings.dataset.clone(),
            devices,
            bounds,
        })
    }

    /// Closes the store.
    pub fn close(self) {
        self.runtime.block_on(self.store.close());
    }
}

impl DeviceGroups for StoreGroups {
    fn devices(&self) -> &[(String, u64)] {
        &self.devices
    }

    fn time_bounds(&self) -> Option<(i64, i64)> {
        self.bounds
    }

    fn load(&mut self, devices: &[String]) -> Result<Batch> {
        let q = RangeQuery::all().devices(devices.iter().cloned());
        Ok(self
            .runtime
            .block_on(self.store.load_range(&self.dataset, &q))?)
    }
}

/// The default of [`GroupedTraining::group_rows`] and
/// [`GroupedTraining::fleet_rows`]: rows read at a time.
pub const DEFAULT_GROUP_ROWS: u64 = 1_000_000;

/// Consecutive devices (by id) in groups of at most `rows` rows (a device with
/// more is a group alone).
pub(crate) fn groups_of(devices: &[(String, u64)], rows: u64) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut held = 0u64;
    for (d, n) in devices {
        match out.last_mut() {
            Some(g) if held + n <= rows => g.push(d.clone()),
            _ => {
                out.push(vec![d.clone()]);
                held = 0;
            }
        }
        held += n;
    }
    out
}

/// The devices the fleet's parts are fitted on: all of them when their rows are
/// at most `rows`, else those first by a seeded hash of their ids while their
/// rows stay within `rows` (at least one).
fn fleet_sample(devices: &[(String, u64)], rows: u64) -> Vec<String> {
    if devices.iter().map(|d| d.1).sum::<u64>() <= rows {
        return devices.iter().map(|d| d.0.clone()).collect();
    }
    let mut by_hash: Vec<(u64, &String, u64)> = devices
        .iter()
        .map(|(d, n)| (sample_key(d, i64::MIN), d, *n))
        .collect();
    by_hash.sort();
    let mut held = 0u64;
    let mut picked = Vec::new();
    for (_, d, n) in by_hash {
        if !picked.is_empty() && held + n > rows {
            break;
        }
        held += n;
        picked.push(d.clone());
    }
    picked.sort();
    picked
}

/// A row's place in the sample: its key, then its timestamp and device.
type SampleKey = (u64, i64, Arc<str>);

/// One sampled row: its [`SampleKey`] and where its features are.
type Entry = (u64, i64, Arc<str>, usize);

/// The `k` rows with the smallest keys of all offered, with their features,
/// whatever the order they are offered in (0 = every row).
struct BottomK {
    k: usize,
    width: usize,
    heap: BinaryHeap<Entry>,
    values: Vec<f64>,
    free: Vec<usize>,
}

impl BottomK {
    fn new(k: u64, width: usize) -> Self {
        BottomK {
            k: usize::try_from(k)
                .ok()
                .filter(|&k| k > 0)
                .unwrap_or(usize::MAX),
            width,
            heap: BinaryHeap::new(),
            values: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Whether a row of key `key` would be taken now.
    fn wants(&self, key: &SampleKey) -> bool {
        self.heap.len() < self.k
            || self
                .heap
                .peek()
                .is_some_and(|top| (key.0, key.1, &key.2) < (top.0, top.1, &top.2))
    }

    fn offer(&mut self, key: SampleKey, values: impl Iterator<Item = f64>) {
        if !self.wants(&key) {
            return;
        }
        let slot = if self.heap.len() < self.k {
            match self.free.pop() {
                Some(s) => s,
                None => {
                    self.values.resize(self.values.len() + self.width, 0.0);
                    self.values.len() / self.width.max(1) - 1
                }
            }
        } else {
            self.heap
                .pop()
                .unwrap_or_else(|| unreachable!("a full heap has a top"))
                .3
        };
        let at = slot * self.width;
        for (dst, v) in self.values[at..at + self.width].iter_mut().zip(values) {
            *dst = v;
        }
        self.heap.push((key.0, key.1, key.2, slot));
    }

    /// The rows taken, in time order then by device id, as rows × features
    /// stored column by column.
    fn into_array(self) -> Array2<f64> {
        let mut rows: Vec<Entry> = self.heap.into_vec();
        rows.sort_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)));
        let (n, c) = (rows.len(), self.width);
        let mut data = Vec::with_capacity(n * c);
        for j in 0..c {
            data.extend(rows.iter().map(|e| self.values[e.3 * c + j]));
        }
        Array2::from_shape_vec((n, c).f(), data).unwrap_or_else(|_| unreachable!("n × c values"))
    }
}

/// What training on a fleet a group of devices at a time is told besides the
/// data (see [`train_grouped`]).
#[derive(Debug, Clone, Copy)]
pub struct GroupedTraining<'a> {
    /// The split (from `[eval]`).
    pub eval: &'a CheckedEval,
    /// Which rows are trained on.
    pub set: &'a TrainingSet,
    /// The features.
    pub features: &'a CheckedFeatures,
    /// The detector.
    pub detector: &'a CheckedDetector,
    /// Rows read at a time: a group's devices.
    pub group_rows: u64,
    /// Rows the fleet's parts are fitted on at most (the rows of a seeded
    /// sample of devices; every device when the fleet has no more).
    pub fleet_rows: u64,
}

/// Trains on `data` a group of devices at a time (see the module's text): the
/// model [`crate::train_and_score`] makes on the whole, bit for bit, when the
/// fleet has at most `fleet_rows` rows (whatever `group_rows`); beyond, its
/// fleet-wide feature parts come from a seeded sample of devices
/// ([`TrainingInfo::fleet_devices`] says how many).
/// `on_group(devices done, devices)` is called after each group.
///
/// # Errors
/// [`Error::NoData`] without rows; [`Error::NoTrainingRows`] when the exclusions
/// leave fewer than two rows, or a held-back slice of fewer than 100 rows;
/// the stages' and the source's errors.
pub fn train_grouped(
    data: &mut dyn DeviceGroups,
    how: &GroupedTraining<'_>,
    on_group: &mut dyn FnMut(usize, usize),
) -> Result<ModelFile> {
    let set = how.set;
    set.check()?;
    let (first, last) = data
        .time_bounds()
        .ok_or_else(|| Error::NoData("the data set has no rows".to_owned()))?;
    let split = how.eval.split(first, last)?;
    let features = detector_features(how.features, &set.inputs)?;
    let devices = data.devices().to_vec();
    let group_rows = how.group_rows.max(1);

    // The fleet's parts, from a sample of its devices.
    let sample = fleet_sample(&devices, how.fleet_rows.max(1));
    // Held back `always`, every group has the same cut: the sample's says it.
    let (fleet, calibration_from) = {
        let b = data.load(&sample)?;
        let rows = training_rows(&b, &split, set, true);
        let fleet = itap_features::fit_fleet(&b, TrainSpan::Rows(&rows.used), &features)?;
        (fleet, rows.info.calibration_from)
    };

    let groups = groups_of(&devices, group_rows);
    let mut parts: Vec<DevicesFit> = Vec::with_capacity(groups.len());
    let mut totals = TrainingInfo {
        first: format_timestamp(split.first_us),
        until: format_timestamp(split.cut_us),
        rows_in_span: 0,
        rows_used: 0,
        calibration_rows: 0,
        calibration_from,
        rows_sampled: None,
        excluded_by_state: 0,
        excluded_as_faulty: 0,
        exclusions: Vec::new(),
        unsupervised: set.unsupervised,
        fleet_devices: Some(sample.len() as u64),
    };
    let (mut has_states, mut has_tags) = (false, false);
    let mut samples: Option<(Mutex<BottomK>, Mutex<BottomK>)> = None;
    let mut catalogue = None;
    let mut schema = None;
    let mut done = 0;
    for group in &groups {
        let b = data.load(group)?;
        let rows = training_rows(&b, &split, set, true);
        has_states |= b.states().is_some();
        has_tags |= b.tag_codes().is_some();
        let i = &rows.info;
        totals.rows_in_span += i.rows_in_span;
        totals.rows_used += i.rows_used;
        totals.calibration_rows += i.calibration_rows;
        totals.excluded_by_state += i.excluded_by_state;
        totals.excluded_as_faulty += i.excluded_as_faulty;
        let part = itap_features::fit_devices(&b, TrainSpan::Rows(&rows.used), &fleet)?;
        if i.rows_used + i.calibration_rows > 0 {
            let fit = fleet.fit_for(&part);
            let engine = ChunkedTransform::new(&b, &fit)?;
            let names: Vec<String> = engine.catalogue().into_iter().map(|f| f.name).collect();
            match &catalogue {
                None => {
                    let width = names.len();
                    samples = Some((
                        Mutex::new(BottomK::new(set.max_training_rows, width)),
                        Mutex::new(BottomK::new(set.max_training_rows, width)),
                    ));
                    catalogue = Some(engine.catalogue());
                    schema = Some(b.schema().clone());
                }
                Some(c) if c.iter().map(|f| &f.name).ne(names.iter()) => {
                    return Err(Error::NoData(format!(
                        "the devices {} – {} give other features than the first group's",
                        group[0],
                        group[group.len() - 1]
                    )));
                }
                Some(_) => {}
            }
            let (fitted, held) = samples
                .as_ref()
                .unwrap_or_else(|| unreachable!("set with the catalogue"));
            let mut held_back = vec![false; b.len()];
            for &r in &rows.calibration {
                held_back[r] = true;
            }
            offer_rows(&engine, &b, &[(&rows.used, fitted), (&held_back, held)])?;
        }
        parts.push(part);
        done += group.len();
        on_group(done, devices.len());
    }

    let fitted_rows = totals.rows_used;
    if set.calibration_fraction > 0.0
        && (totals.calibration_rows < MIN_CALIBRATION_ROWS as u64 || fitted_rows < 2)
    {
        return Err(Error::NoTrainingRows(format!(
            "{} rows held back and {fitted_rows} fitted: too few to train a group of devices at a time; train on the data in memory",
            totals.calibration_rows
        )));
    }
    if fitted_rows < 2 {
        return Err(Error::NoTrainingRows(
            exclusions(set, has_states, has_tags, 0).join("; "),
        ));
    }
    let (Some((fitted, held)), Some(catalogue), Some(schema)) = (samples, catalogue, schema) else {
        unreachable!("a group with fitted rows set them")
    };
    let max = set.max_training_rows;
    if max > 0 && fitted_rows > max {
        totals.rows_sampled = Some(max);
    }
    totals.exclusions = exclusions(set, has_states, has_tags, totals.calibration_rows);
    let x = fitted
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_array();
    let held = held.into_inner().unwrap_or_else(PoisonError::into_inner);
    let held = (!held.heap.is_empty()).then(|| held.into_array());
    let fitted = fit_scaler_and_detector(x, held, how.detector, directions(&catalogue, &schema))?;
    let features = FeaturesFit::assemble(fleet, parts)?;
    Ok(model_file(fitted, &catalogue, schema, features, totals))
}

/// Offers the features of the rows of `b` marked in each list's flags to its
/// sample, in one pass of the feature engine.
fn offer_rows(
    engine: &ChunkedTransform<'_>,
    b: &Batch,
    lists: &[(&[bool], &Mutex<BottomK>)],
) -> Result<()> {
    let (ts, codes) = (b.timestamps(), b.device_codes());
    let names: Vec<Arc<str>> = b
        .device_names()
        .iter()
        .map(|n| Arc::from(n.as_str()))
        .collect();
    engine.for_each(|chunk: &FeatureChunk<'_>| {
        let cols = chunk.columns();
        for &(rows, sample) in lists {
            let keyed: Vec<(usize, SampleKey)> = chunk
                .rows()
                .iter()
                .enumerate()
                .filter(|&(_, &r)| rows[r])
                .map(|(k, &r)| {
                    let d = &names[codes[r] as usize];
                    (k, (sample_key(d, ts[r]), ts[r], Arc::clone(d)))
                })
                .collect();
            if keyed.is_empty() {
                continue;
            }
            let mut s = sample.lock().unwrap_or_else(PoisonError::into_inner);
            for (k, key) in keyed {
                s.offer(key, cols.iter().map(|c| c[k]));
            }
        }
        Ok::<(), Error>(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_hold_consecutive_devices_within_the_rows() {
        let d = |n: &[(u64, &str)]| -> Vec<(String, u64)> {
            n.iter().map(|(r, s)| ((*s).to_owned(), *r)).collect()
        };
        let devices = d(&[(3, "a"), (3, "b"), (5, "c"), (1, "d"), (9, "e")]);
        assert_eq!(
            groups_of(&devices, 6),
            vec![vec!["a", "b"], vec!["c", "d"], vec!["e"]]
        );
        assert_eq!(groups_of(&devices, 100).len(), 1);
        // The fleet's sample: every device when they fit, else a seeded choice
        // within the rows, in id order, the same every time.
        assert_eq!(fleet_sample(&devices, 21).len(), 5);
        let s = fleet_sample(&devices, 8);
        assert!(!s.is_empty() && s.is_sorted());
        let held: u64 = devices
            .iter()
            .filter(|d| s.contains(&d.0))
            .map(|d| d.1)
            .sum();
        assert!(held <= 8 || s.len() == 1, "{s:?}");
        assert_eq!(s, fleet_sample(&devices, 8));
    }

    #[test]
    fn a_bottom_k_sample_does_not_depend_on_the_order_rows_come_in() {
        let key = |i: i64| (sample_key("dev", i), i, Arc::<str>::from("dev"));
        let take = |order: &[i64]| {
            let mut s = BottomK::new(10, 2);
            for &i in order {
                s.offer(key(i), [i as f64, -(i as f64)].into_iter());
            }
            s.into_array()
        };
        let forward: Vec<i64> = (0..200).collect();
        let mut backward = forward.clone();
        backward.reverse();
        let a = take(&forward);
        assert_eq!(a.dim(), (10, 2));
        assert_eq!(a, take(&backward));
        // The rows kept are those of the smallest keys, in time order.
        let mut want: Vec<(u64, i64)> = forward.iter().map(|&i| (key(i).0, i)).collect();
        want.sort();
        let mut ts: Vec<i64> = want[..10].iter().map(|w| w.1).collect();
        ts.sort();
        let got: Vec<i64> = a.column(0).iter().map(|&v| v as i64).collect();
        assert_eq!(got, ts);
        assert!(
            a.column(1)
                .iter()
                .zip(&got)
                .all(|(&v, &t)| v == -(t as f64))
        );
    }
}
