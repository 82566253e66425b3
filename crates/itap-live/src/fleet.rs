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
            let v = d.entry(s.device.clone()).or_default();
            v.last_us = Some(s.ts_us);
            v.last_score = Some(s.score);
            v.flagged = s.flagged;
            v.family.clone_from(&s.family);
            v.state = st.map(str::to_owned);
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
