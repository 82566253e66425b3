//! `itap serve --artifacts DIR`: a batch run's files (model.json, alerts.json,
//! scores.csv) loaded into a store the API reads, so that `itap run` users get
//! the same pages as a live worker.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use itap::ModelFile;
use itap::eval::AlertsFile;
use itap::store::{LiveCommit, ScoreRecord, Store};
use itap::telemetry::{Schema, TimeZone, parse_timestamp};

use crate::error::{Error, Result};
use crate::fleet::DeviceView;
use crate::serve::ServeStats;

/// Scores stored per transaction while loading.
const LOAD_CHUNK: usize = 50_000;

/// What [`load_artifacts`] found.
#[derive(Debug, Clone)]
pub struct ArtifactsSummary {
    /// The model's schema.
    pub schema: Schema,
    /// The threshold the alerts were built at.
    pub threshold: f64,
    /// Scored rows loaded.
    pub rows: u64,
    /// Alerts loaded.
    pub alerts: usize,
    /// Devices seen.
    pub devices: usize,
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Artifacts {
        path: path.to_path_buf(),
        reason: reason.into(),
        source: None,
    }
}

/// [`bad`] with the reader's error behind it.
fn bad_from(
    path: &Path,
    reason: impl Into<String>,
    e: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::Artifacts {
        path: path.to_path_buf(),
        reason: reason.into(),
        source: Some(Box::new(e)),
    }
}

/// Loads `dir`'s model.json (its schema), alerts.json and scores.csv into
/// `store` under `dataset` (`itap_alerts`, `itap_scores`), and sets `stats`'s
/// counters and each device's view from them. `progress` is called with the
/// rows loaded so far.
///
/// # Errors
/// [`Error::Artifacts`] naming the file (and line) that is missing or cannot be
/// read; store errors.
pub async fn load_artifacts(
    dir: &Path,
    store: &Store,
    dataset: &str,
    stats: &ServeStats,
    mut progress: impl FnMut(u64),
) -> Result<ArtifactsSummary> {
    let need = |name: &str| -> Result<PathBuf> {
        let p = dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(bad(
                &p,
                format!(
                    "{name} is missing: point --artifacts at the folder `itap run --out` wrote"
                ),
            ))
        }
    };
    let model_path = need("model.json")?;
    let alerts_path = need("alerts.json")?;
    let scores_path = need("scores.csv")?;
    let model = ModelFile::load(&model_path)?;
    let text = std::fs::read_to_string(&alerts_path)
        .map_err(|e| bad_from(&alerts_path, "cannot read it", e))?;
    let file: AlertsFile = serde_json::from_str(&text).map_err(|e| {
        bad_from(
            &alerts_path,
            "it is not an alerts.json `itap run` writes",
            e,
        )
    })?;
    store.ensure_dataset(dataset, &model.schema).await?;
    let model_name = model_path.display().to_string();
    let records: Vec<_> = file
        .alerts
        .iter()
        .map(|a| itap::alert_record(a, &model_name))
        .collect();
    store.put_alerts(dataset, &records).await?;

    let mut reader = csv::Reader::from_path(&scores_path)
        .map_err(|e| bad_from(&scores_path, "cannot read it", e))?;
    let headers = reader
        .headers()
        .map_err(|e| bad_from(&scores_path, "line 1: cannot read the header", e))?
        .clone();
    let col = |name: &str| -> Result<usize> {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            bad(
                &scores_path,
                format!("line 1: no column `{name}` (a scores.csv of `itap run` has timestamp, device_id, state, score, flagged)"),
            )
        })
    };
    let (c_ts, c_dev, c_state, c_score, c_flag) = (
        col("timestamp")?,
        col("device_id")?,
        col("state")?,
        col("score")?,
        col("flagged")?,
    );
    let mut views: std::collections::BTreeMap<String, DeviceView> = Default::default();
    let mut chunk: Vec<ScoreRecord> = Vec::with_capacity(LOAD_CHUNK);
    let (mut rows, mut flagged) = (0u64, 0u64);
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(bad_from(&scores_path, "cannot read it as CSV", e)),
        }
        let line = record.position().map_or(0, csv::Position::line);
        let at = |what: &str| bad(&scores_path, format!("line {line}: {what}"));
        let ts = parse_timestamp(&record[c_ts], TimeZone::UTC)
            .map_err(|_| at(&format!("{:?} is not a timestamp", &record[c_ts])))?;
        let device = &record[c_dev];
        let score_text = &record[c_score];
        if score_text.is_empty() {
            // No score (a row the detector could not score): nothing to show.
            continue;
        }
        let score: f64 = score_text
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite())
            .ok_or_else(|| at(&format!("score {score_text:?} is not a finite number")))?;
        let is_flagged = &record[c_flag] == "1";
        let v = views.entry(device.to_owned()).or_default();
        v.last_us = Some(ts);
        v.last_score = Some(score);
        v.flagged = is_flagged;
        v.state = Some(&record[c_state])
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        v.rows += 1;
        rows += 1;
        flagged += u64::from(is_flagged);
        chunk.push(ScoreRecord {
            device: device.to_owned(),
            ts_us: ts,
            score,
            flagged: is_flagged,
            family: None,
        });
        if chunk.len() == LOAD_CHUNK {
            commit_scores(store, dataset, &chunk).await?;
            chunk.clear();
            progress(rows);
        }
    }
    commit_scores(store, dataset, &chunk).await?;
    progress(rows);
    for a in &file.alerts {
        let v = views.entry(a.device.clone()).or_default();
        if a.open {
            v.open_alerts.push(a.id.clone());
        } else {
            v.closed_alerts += 1;
        }
    }
    let devices = views.len();
    for (id, v) in views {
        stats.fleet.set(&id, v);
    }
    for c in [&stats.received, &stats.stored, &stats.scored] {
        c.store(rows, Ordering::Relaxed);
    }
    stats.flagged.store(flagged, Ordering::Relaxed);
    Ok(ArtifactsSummary {
        schema: model.schema,
        threshold: file.threshold.value,
        rows,
        alerts: file.alerts.len(),
        devices,
    })
}

async fn commit_scores(store: &Store, dataset: &str, scores: &[ScoreRecord]) -> Result<()> {
    store
        .commit_live(
            dataset,
            &LiveCommit {
                scores,
                states: &[],
                alerts: &[],
                rejects: &[],
            },
        )
        .await?;
    Ok(())
}
