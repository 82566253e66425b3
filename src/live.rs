//! Live scoring: a saved model applied row by row as telemetry arrives, with a
//! feature state per device, giving the scores batch scoring gives for the same
//! rows (see `tests/live.rs`).

use std::collections::BTreeMap;

use itap_anomaly::FittedDetector;
use itap_anomaly::ndarray::Array2;
use itap_eval::{Alert, AlertRow, AlertTracker, CheckedAlerts, CheckedEval, Threshold};
use itap_features::{DeviceState, OnlineFeatures, OnlineRow};
use itap_telemetry::State;

use crate::error::{Error, Result};
use crate::model::ModelFile;

/// The start of a state saved by [`LiveScorer::saved_state`].
const SAVED_MAGIC: &[u8; 4] = b"ILS1";

/// One row to score: a device's reading, its values in the model's schema order
/// (NaN for a missing value).
#[derive(Debug, Clone, Copy)]
pub struct LiveRow<'a> {
    /// Device id.
    pub device: &'a str,
    /// UTC microseconds.
    pub ts: i64,
    /// Operating state, if sent.
    pub state: Option<State>,
    /// Error code, if sent.
    pub error_code: Option<i32>,
    /// One value per signal of the model's schema.
    pub values: &'a [f64],
}

/// A scored row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowScore {
    /// The detector's score, higher = more anomalous.
    pub score: f64,
    /// Whether it is above the threshold.
    pub flagged: bool,
    /// For a flagged row, the family of the feature that contributes most.
    pub family: Option<String>,
}

/// A model made ready for row-by-row scoring, with every device's feature state
/// and the alert engine.
#[derive(Debug)]
pub struct LiveScorer {
    model: ModelFile,
    online: OnlineFeatures,
    /// For each featurised signal, its position in the model's schema.
    signal_at: Vec<usize>,
    devices: BTreeMap<String, DeviceState>,
    threshold: Threshold,
    tracker: AlertTracker,
    /// Alerts finalised and not yet taken.
    finished: Vec<Alert>,
    values: Vec<f64>,
}

impl LiveScorer {
    /// Readies `model` for live scoring at the threshold `eval` sets from its
    /// training scores, with alerts as `alerts` say.
    ///
    /// # Errors
    /// [`Error::Features`] when the model reads windowed features (they cannot be
    /// computed row by row); [`Error::Eval`] when the threshold rule needs the
    /// held-back rows replayed (`target_false_alerts_per_device_day`): live
    /// scoring takes a threshold from the training scores alone.
    pub fn new(model: ModelFile, eval: &CheckedEval, alerts: &CheckedAlerts) -> Result<Self> {
        let online = OnlineFeatures::new(&model.features)?;
        if online.names() != model.feature_names.as_slice() {
            return Err(Error::FeatureMismatch {
                missing: model.feature_names.clone(),
                extra: online.names().to_vec(),
            });
        }
        let signal_at = online
            .signals()
            .iter()
            .map(|s| {
                model.schema.index_of(s).ok_or_else(|| {
                    Error::NoData(format!(
                        "the model's features read `{s}`, which its schema lacks"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let threshold = eval.threshold(&model.training_scores)?;
        let tracker = AlertTracker::new(
            alerts,
            threshold.value,
            &model.training_scores,
            &model.feature_names,
            &model.feature_families,
        );
        Ok(LiveScorer {
            values: vec![0.0; signal_at.len()],
            model,
            online,
            signal_at,
            devices: BTreeMap::new(),
            threshold,
            tracker,
            finished: Vec::new(),
        })
    }

    /// The model.
    pub fn model(&self) -> &ModelFile {
        &self.model
    }

    /// The threshold rows are flagged above.
    pub fn threshold(&self) -> &Threshold {
        &self.threshold
    }

    /// The time of a device's last scored row.
    pub fn last_ts(&self, device: &str) -> Option<i64> {
        self.devices.get(device).and_then(DeviceState::last_ts)
    }

    /// Rows of a device scored so far (counting those before a resume).
    pub fn rows(&self, device: &str) -> u64 {
        self.devices.get(device).map_or(0, DeviceState::rows)
    }

    /// A device's state, saved (for [`LiveScorer::resume`]): its feature state
    /// (exact bytes) and its alert engine state (JSON), one after the other.
    pub fn saved_state(&self, device: &str) -> Option<Vec<u8>> {
        let features = self.devices.get(device)?.to_bytes();
        let alerts = self.tracker.device_state(device).unwrap_or_default();
        let mut out = Vec::with_capacity(12 + features.len() + alerts.len());
        out.extend_from_slice(SAVED_MAGIC);
        out.extend_from_slice(&(features.len() as u64).to_le_bytes());
        out.extend_from_slice(&features);
        out.extend_from_slice(alerts.as_bytes());
        Some(out)
    }

    /// Resumes a device's state saved by [`LiveScorer::saved_state`]: its
    /// features and its alerts go on as in the scorer that saved it.
    ///
    /// # Errors
    /// [`Error::Features`] when the bytes are not a state of this model's
    /// features, or their alert part is damaged (nothing changes then).
    pub fn resume(&mut self, device: &str, bytes: &[u8]) -> Result<()> {
        let bad = |reason: String| {
            Error::from(itap_features::Error::OnlineRow {
                device: device.to_owned(),
                reason,
            })
        };
        let rest = bytes
            .strip_prefix(SAVED_MAGIC.as_slice())
            .ok_or_else(|| bad("not a saved live state".into()))?;
        let (len, rest) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| bad("a saved live state cut short".into()))?;
        let len = usize::try_from(u64::from_le_bytes(*len)).unwrap_or(usize::MAX);
        if len > rest.len() {
            return Err(bad("a saved live state cut short".into()));
        }
        let (features, alerts) = rest.split_at(len);
        let st = self.online.resume(device, features)?;
        let alerts =
            std::str::from_utf8(alerts).map_err(|e| bad(format!("its alert state: {e}")))?;
        if !alerts.is_empty() {
            // Parsed whole before anything changes.
            self.tracker
                .resume_device(device, alerts)
                .map_err(|e| bad(format!("its alert state: {e}")))?;
        }
        self.devices.insert(device.to_owned(), st);
        Ok(())
    }

    /// Scores `rows`, each after its device's previous row (rows of one device in
    /// time order), and feeds them to the alert engine.
    ///
    /// # Errors
    /// [`Error::Features`] for a row not after its device's previous row or with
    /// the wrong number of values; nothing is scored then (all rows are checked
    /// first). The detector's errors.
    pub fn score(&mut self, rows: &[LiveRow<'_>]) -> Result<Vec<RowScore>> {
        self.check_order(rows)?;
        let width = self.online.names().len();
        let mut x = Array2::<f64>::zeros((rows.len(), width));
        for (r, row) in rows.iter().enumerate() {
            for (v, &at) in self.values.iter_mut().zip(&self.signal_at) {
                *v = row.values[at];
            }
            let dev = match self.devices.get_mut(row.device) {
                Some(d) => d,
                None => self
                    .devices
                    .entry(row.device.to_owned())
                    .or_insert_with(|| self.online.device(row.device)),
            };
            let online_row = OnlineRow {
                ts: row.ts,
                state: row.state,
                error_code: row.error_code,
                values: &self.values,
            };
            let out = x.row_mut(r).into_slice().ok_or_else(|| {
                Error::NoData("the feature matrix is not in standard layout".into())
            })?;
            self.online.push(dev, &online_row, out)?;
        }
        self.model.scaler.scale_inplace(x.view_mut())?;
        x.mapv_inplace(|v| if v.is_finite() { v } else { 0.0 });
        let scores = self.model.detector.score(x.view())?;
        let mut out = Vec::with_capacity(rows.len());
        for (r, (row, &score)) in rows.iter().zip(scores.iter()).enumerate() {
            let flagged = score > self.threshold.value;
            let contributions = if flagged {
                Some(match self.model.detector.column_scores(x.row(r))? {
                    Some(v) => v,
                    None => x.row(r).iter().map(|v| v.abs()).collect(),
                })
            } else {
                None
            };
            let family = contributions.as_deref().and_then(|c| self.family_of(c));
            let done = self.tracker.push(AlertRow {
                device: row.device,
                ts_us: row.ts,
                score,
                contributions: contributions.as_deref(),
            });
            self.finished.extend(done);
            out.push(RowScore {
                score,
                flagged,
                family,
            });
        }
        Ok(out)
    }

    /// Refuses a batch with a row not after its device's previous one.
    fn check_order(&self, rows: &[LiveRow<'_>]) -> Result<()> {
        let mut last: BTreeMap<&str, i64> = BTreeMap::new();
        for row in rows {
            let prev = match last.get(row.device) {
                Some(&t) => Some(t),
                None => self.last_ts(row.device),
            };
            if prev.is_some_and(|t| row.ts <= t) || row.values.len() != self.model.schema.len() {
                return Err(itap_features::Error::OnlineRow {
                    device: row.device.to_owned(),
                    reason: format!(
                        "a row at {} with {} values after one at {:?} (the schema has {} signals)",
                        row.ts,
                        row.values.len(),
                        prev,
                        self.model.schema.len()
                    ),
                }
                .into());
            }
            last.insert(row.device, row.ts);
        }
        Ok(())
    }

    /// The family of the largest contribution.
    fn family_of(&self, contributions: &[f64]) -> Option<String> {
        let (j, _) = contributions
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .max_by(|a, b| a.1.total_cmp(b.1))?;
        self.model.feature_families.get(j).cloned()
    }

    /// Alerts finalised since the last call, and every alert still open (or
    /// still able to merge) as of now, as of `now_us` (rows of a device are not
    /// expected before it: quiet alerts close).
    pub fn alerts(&mut self, now_us: Option<i64>) -> (Vec<Alert>, Vec<Alert>) {
        if let Some(now) = now_us {
            let done = self.tracker.advance(now);
            self.finished.extend(done);
        }
        (
            std::mem::take(&mut self.finished),
            self.tracker.open_alerts(),
        )
    }
}
