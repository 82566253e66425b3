//! What the operator's view shows of each device: its last row, score and
//! alerts, kept up to date by `serve` after every commit (or built once from a
//! batch run's files) and read by the HTTP API.

use std::collections::BTreeMap;
use std::sync::Mutex;

use itap::eval::Alert;
use itap::store::ScoreRecord;

/// One device as the dashboard sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceView {
    /// Its last scored row, UTC µs.
    pub last_us: Option<i64>,
    /// The machine state of that row (`RUN`, `IDLE`, …), when known.
    pub state: Option<String>,
    /// Its score.
    pub last_score: Option<f64>,
    /// Whether it was above the threshold.
    pub flagged: bool,
    /// The family behind it, when flagged.
    pub family: Option<String>,
    /// Rows scored.
    pub rows: u64,
    /// Ids of its open alerts, in order.
    pub open_alerts: Vec<String>,
    /// Alerts closed since the view began (or in the files).
    pub closed_alerts: u64,
}

/// Every device's [`DeviceView`], shared between the worker and the API.
#[derive(Debug, Default)]
pub struct Fleet {
    devices: Mutex<BTreeMap<String, DeviceView>>,
}

impl Fleet {
    /// A copy of every device's view, by device id.
    pub fn snapshot(&self) -> BTreeMap<String, DeviceView> {
        self.lock().clone()
    }

    /// One device's view.
    pub fn device(&self, id: &str) -> Option<DeviceView> {
        self.lock().get(id).cloned()
    }

    /// Sets a device's view (when resuming or loading files).
    pub fn set(&self, id: &str, view: DeviceView) {
        self.lock().insert(id.to_owned(), view);
    }

    /// Takes a step's scored rows (each device's in time order) with their
    /// machine states, the alerts that closed and every alert still open.
    pub fn record(
        &self,
        scores: &[ScoreRecord],
        states: &[Option<&str>],
        closed: &[Alert],
        open: &[Alert],
    ) {
        let mut d = self.lock();
        for (s, st) in scores.iter().zip(states) {
            // A device seen before (every row but its first) allocates nothing.
            let v = match d.get_mut(&s.device) {
                Some(v) => v,
                None => d.entry(s.device.clone()).or_default(),
            };
            v.last_us = Some(s.ts_us);
            v.last_score = Some(s.score);
            v.flagged = s.flagged;
            v.family.clone_from(&s.family);
            if v.state.as_deref() != *st {
                v.state = st.map(str::to_owned);
            }
            v.rows += 1;
        }
        for a in closed {
            d.entry(a.device.clone()).or_default().closed_alerts += 1;
        }
        for v in d.values_mut() {
            v.open_alerts.clear();
        }
        for a in open {
            d.entry(a.device.clone())
                .or_default()
                .open_alerts
                .push(a.id.clone());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, DeviceView>> {
        // A panic elsewhere cannot leave a view half-updated in a way that
        // matters to a reader: take the data as it is.
        self.devices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(device: &str, ts_us: i64, score: f64) -> ScoreRecord {
        ScoreRecord {
            device: device.into(),
            ts_us,
            score,
            flagged: score > 5.0,
            family: (score > 5.0).then(|| "Temperature".into()),
        }
    }

    #[test]
    fn a_step_leaves_each_device_at_its_last_row() {
        let f = Fleet::default();
        f.record(
            &[score("B", 1, 1.0), score("A", 1, 9.0), score("B", 2, 2.0)],
            &[Some("RUN"), None, Some("IDLE")],
            &[],
            &[],
        );
        let v = f.snapshot();
        assert_eq!(v.keys().collect::<Vec<_>>(), ["A", "B"]);
        assert_eq!(
            (v["B"].last_us, v["B"].last_score, v["B"].rows),
            (Some(2), Some(2.0), 2)
        );
        assert_eq!(v["B"].state.as_deref(), Some("IDLE"));
        assert!(v["A"].flagged && v["A"].family.as_deref() == Some("Temperature"));
        assert_eq!(v["A"].state, None);
        // The next step moves only the devices it has rows of.
        f.record(&[score("A", 3, 0.5)], &[Some("RUN")], &[], &[]);
        let v = f.snapshot();
        assert_eq!(
            (v["A"].rows, v["A"].flagged, v["A"].family.clone()),
            (2, false, None)
        );
        assert_eq!(v["B"].last_us, Some(2));
        assert!(f.device("C").is_none());
    }
}
