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
    /// Ids of its alerts that closed but a later alert could still merge into
    /// (stored with `open: false`; not counted as open).
    pub pending_alerts: Vec<String>,
    /// Its other alerts that have closed: those stored when the view began
    /// (from the files, or the database on a restart) and those closed since.
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
    /// machine states, the alerts that closed and every alert not yet closed
    /// for good ([`itap::LiveScorer::alerts`]: open ones, and pending ones with
    /// `open: false`).
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
            v.pending_alerts.clear();
        }
        for a in open {
            let v = d.entry(a.device.clone()).or_default();
            if a.open {
                v.open_alerts.push(a.id.clone());
            } else {
                v.pending_alerts.push(a.id.clone());
            }
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

    fn alert(device: &str, id: &str, open: bool) -> Alert {
        serde_json::from_value(serde_json::json!({
            "id": id, "device": device,
            "start": "", "end": "", "peak_at": "", "opened_at": "",
            "start_us": 0, "end_us": 0, "peak_us": 0, "opened_us": 0,
            "open": open, "rows": 1, "peak_score": 1.0, "peak_tail_log10": 1.0,
            "mean_score": 1.0, "severity": "info", "rule": "k_of_m 5/30",
            "family": null, "families": [], "top_features": [], "route": "operations",
            "labels": [], "fault": null
        }))
        .unwrap()
    }

    #[test]
    fn only_open_alerts_count_as_open() {
        let f = Fleet::default();
        // A, open; B, closed but pending a merge (the engine reports it with the
        // open ones, `open: false`).
        f.record(
            &[score("A", 1, 9.0), score("B", 1, 9.0)],
            &[None, None],
            &[],
            &[alert("A", "A@1", true), alert("B", "B@1", false)],
        );
        let v = f.snapshot();
        assert_eq!(v["A"].open_alerts, ["A@1"]);
        assert!(v["B"].open_alerts.is_empty());
        assert_eq!(v["B"].pending_alerts, ["B@1"]);
        // B's alert ends for good; A's stays open.
        f.record(
            &[],
            &[],
            &[alert("B", "B@1", false)],
            &[alert("A", "A@1", true)],
        );
        let v = f.snapshot();
        assert!(v["B"].pending_alerts.is_empty());
        assert_eq!((v["B"].closed_alerts, v["A"].closed_alerts), (1, 0));
        assert_eq!(v["A"].open_alerts, ["A@1"]);
    }
}
