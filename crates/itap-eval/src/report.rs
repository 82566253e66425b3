//! Artifacts: metrics.json, scores.csv and a self-contained report.html.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use itap_telemetry::{AtomicFile, format_timestamp, write_timestamp};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::alert_params::Severity;
use crate::breakdown::TagDictionary;
use crate::error::{Error, Result};
use crate::evaluate::Share;
use crate::evaluate::{Evaluation, ScoredRows, Threshold};
use crate::events::events;
use crate::tracker::Alert;

/// The version of the metrics.json layout (2: tracker alerts, alert-level
/// metrics, the fleet summary).
pub const METRICS_FORMAT_VERSION: u32 = 2;

/// Alerts listed in the report's table at most (the first by start).
const MAX_ALERT_ROWS: usize = 500;

/// What metrics.json holds: the evaluation with the context needed to reproduce it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsFile {
    /// Layout version ([`METRICS_FORMAT_VERSION`]).
    pub format_version: u32,
    /// The input: path and SHA-256 (or a description of simulated data).
    pub input: InputDigest,
    /// The configuration the run used, as JSON.
    pub config: serde_json::Value,
    /// The detector, in words (for example `iforest: 200 trees, ψ 256`).
    pub detector: String,
    /// Everything measured.
    pub evaluation: Evaluation,
}

/// Which data was evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputDigest {
    /// Path or description.
    pub path: String,
    /// SHA-256 of the input file, when there is one.
    pub sha256: Option<String>,
}

/// Writes `value` as pretty JSON (and a final newline) to `path` through an
/// [`AtomicFile`]: the file appears whole or not at all; folders are created.
/// Other bytes go through [`itap_telemetry::write_atomic`].
///
/// # Errors
/// [`Error::Io`] naming the path when `value` cannot be serialized or written;
/// [`Error::Telemetry`] holding an `Io` error naming the path (or its folder) when
/// the file cannot be created or committed.
pub fn write_json<T: Serialize>(value: &T, path: &Path) -> Result<()> {
    Ok(stage_json(value, path)?.commit()?)
}

/// Writes `value` as [`write_json`] does into a temporary file beside `path`,
/// synced but not yet renamed into place: [`AtomicFile::commit`] publishes it,
/// dropping it leaves `path` as it was.
///
/// # Errors
/// As [`write_json`].
pub fn stage_json<T: Serialize>(value: &T, path: &Path) -> Result<AtomicFile> {
    let mut file = AtomicFile::create(path)?;
    serde_json::to_writer_pretty(&mut file, value)
        .map_err(std::io::Error::from)
        .and_then(|()| file.write_all(b"\n"))
        .map_err(|e| Error::io(path, e))?;
    file.sync()?;
    Ok(file)
}

/// The header line of scores.csv.
const SCORES_HEADER: &str = "timestamp,device_id,state,score,flagged,anomaly_tag\n";

/// Rows of scores.csv formatted as one piece of text (about 4 MB).
const SCORES_BLOCK_ROWS: usize = 65_536;

/// scores.csv: `timestamp, device_id, state, score, flagged, anomaly_tag`, one line
/// per row of `rows`, in their order.
pub fn scores_csv(rows: &ScoredRows<'_>, threshold: f64) -> String {
    let n = rows.timestamps.len();
    let mut out = String::with_capacity(n * 64 + 64);
    out.push_str(SCORES_HEADER);
    for start in (0..n).step_by(SCORES_BLOCK_ROWS) {
        push_score_lines(
            &mut out,
            rows,
            threshold,
            start..(start + SCORES_BLOCK_ROWS).min(n),
        );
    }
    out
}

/// Writes [`scores_csv`]'s text to `path` (atomically: all of it or, on error,
/// what the path held before) without holding it in memory: blocks of rows are
/// formatted on rayon's threads a few at a time and written in order
/// ([`itap_telemetry::write_in_blocks`]), so the file is the same whatever the
/// thread count.
///
/// # Errors
/// [`Error::Telemetry`] holding an `Io` error naming the path (or its folder) when
/// the file cannot be created, written or committed.
pub fn write_scores_csv(rows: &ScoredRows<'_>, threshold: f64, path: &Path) -> Result<()> {
    Ok(stage_scores_csv(rows, threshold, path)?.commit()?)
}

/// Writes scores.csv as [`write_scores_csv`] does into a temporary file beside
/// `path`, synced but not yet renamed into place: [`AtomicFile::commit`]
/// publishes it, dropping it leaves `path` as it was.
///
/// # Errors
/// As [`write_scores_csv`].
pub fn stage_scores_csv(rows: &ScoredRows<'_>, threshold: f64, path: &Path) -> Result<AtomicFile> {
    let mut csv = ScoresCsv::create(path)?;
    csv.append(rows, threshold)?;
    csv.finish()
}

/// scores.csv written a part of the rows at a time (each part's lines in its
/// order, the parts in the order they come) into a temporary file beside its
/// path: [`ScoresCsv::finish`] syncs it, and [`AtomicFile::commit`] then
/// publishes it; dropped before, it leaves the path as it was.
#[derive(Debug)]
pub struct ScoresCsv {
    file: AtomicFile,
    path: std::path::PathBuf,
}

impl ScoresCsv {
    /// The temporary file, with the header.
    ///
    /// # Errors
    /// As [`write_scores_csv`].
    pub fn create(path: &Path) -> Result<Self> {
        let mut file = AtomicFile::create(path)?;
        file.write_all(SCORES_HEADER.as_bytes())
            .map_err(|e| Error::io(path, e))?;
        Ok(ScoresCsv {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Appends one line per row of `rows`, flagged above `threshold`.
    ///
    /// # Errors
    /// As [`write_scores_csv`].
    pub fn append(&mut self, rows: &ScoredRows<'_>, threshold: f64) -> Result<()> {
        let path = &self.path;
        itap_telemetry::write_in_blocks(
            &mut self.file,
            rows.timestamps.len(),
            SCORES_BLOCK_ROWS,
            |range, text: &mut String| {
                text.clear();
                push_score_lines(text, rows, threshold, range);
                Ok(())
            },
        )
        .map_err(|e| match e {
            itap_telemetry::Error::Io { source, .. } => Error::io(path, source),
            other => other.into(),
        })
    }

    /// The file, synced, not yet in place.
    ///
    /// # Errors
    /// As [`write_scores_csv`].
    pub fn finish(mut self) -> Result<AtomicFile> {
        self.file.sync()?;
        Ok(self.file)
    }
}

/// Appends the scores.csv lines of rows `range`.
fn push_score_lines(
    out: &mut String,
    rows: &ScoredRows<'_>,
    threshold: f64,
    range: std::ops::Range<usize>,
) {
    let mut buf = ryu::Buffer::new();
    for r in range {
        write_timestamp(out, rows.timestamps[r]);
        out.push(',');
        push_field(out, &rows.device_names[rows.device_codes[r] as usize]);
        out.push(',');
        if let Some(s) = rows.states {
            out.push_str(s[r].as_str());
        }
        out.push(',');
        let s = rows.scores[r];
        if s.is_finite() {
            out.push_str(buf.format_finite(s));
        }
        out.push(',');
        out.push(if s > threshold { '1' } else { '0' });
        out.push(',');
        if let Some(t) = rows.tag_codes.map(|t| t[r]).filter(|&t| t != 0) {
            push_field(out, &rows.tag_names[t as usize]);
        }
        out.push('\n');
    }
}

fn push_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn plot_err<E: std::fmt::Debug>(plot: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Plot {
        plot,
        message: format!("{e:?}"),
    }
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

/// The self-contained report page: summary tables and SVG plots (score timelines
/// with fault spans and `alerts` shaded by severity, ROC and PR curves, per-fault
/// recall and delay, the diagnostic sweep), the alerts table (the first 500 by
/// start) and the fleet summary. Nothing is loaded from the network; every
/// string from the data is escaped.
///
/// # Errors
/// [`Error::Plot`] when a plot cannot be drawn.
// Over 120 lines: the page written top to bottom, a few `format!` calls per
// section, the plots in their own functions; cutting it further would scatter
// one page's markup across functions.
pub fn report_html(
    title: &str,
    metrics: &MetricsFile,
    rows: &ScoredRows<'_>,
    alerts: &[Alert],
    max_timelines: usize,
) -> Result<String> {
    let mut timelines = Timelines::for_evaluation(&metrics.evaluation, max_timelines)?;
    timelines.offer(rows);
    report_page(title, metrics, &timelines, alerts)
}

/// [`report_html`] with the timelines' rows gathered beforehand (a part of the
/// fleet at a time): the same page when `timelines` was offered the same rows.
///
/// # Errors
/// [`Error::Plot`] when a plot cannot be drawn.
pub fn report_page(
    title: &str,
    metrics: &MetricsFile,
    timelines: &Timelines,
    alerts: &[Alert],
) -> Result<String> {
    let ev = &metrics.evaluation;
    let mut h = String::with_capacity(256 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}}\
         table{{border-collapse:collapse;margin:8px 0 20px}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
         th{{background:#f2f2f2}}td:first-child,th:first-child{{text-align:left}}\
         .grid{{display:flex;flex-wrap:wrap;gap:16px}}.note{{color:#666;font-size:90%}}\
         h2{{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}}</style></head><body>\
         <h1>{t}</h1>",
        t = html_escape(title)
    );
    let _ = write!(
        h,
        "<p>Input <code>{}</code>{} · detector {} · split: train before <b>{}</b> \
         (data {} … {}) · evaluated states {} · operating threshold {:.4} ({})</p>",
        html_escape(&metrics.input.path),
        metrics
            .input
            .sha256
            .as_ref()
            .map(|s| format!(" (sha256 {}…)", &s[..s.len().min(12)]))
            .unwrap_or_default(),
        html_escape(&metrics.detector),
        ev.split.cut,
        ev.split.first,
        ev.split.last,
        ev.eval_states.join(", "),
        ev.threshold.value,
        threshold_words(&ev.threshold),
    );

    // Summary.
    let m = &ev.at_threshold;
    let e = &ev.events;
    let _ = write!(
        h,
        "<h2>Summary</h2><table><tr><th>metric</th><th>value</th></tr>\
         <tr><td>rows evaluated (faulty)</td><td>{} ({})</td></tr>\
         <tr><td>ROC-AUC</td><td>{}</td></tr><tr><td>PR-AUC (average precision)</td><td>{}</td></tr>\
         <tr><td>precision / recall / F1 at the threshold</td><td>{:.3} / {:.3} / {:.3}</td></tr>\
         <tr><td>alert rate</td><td>{:.2}%</td></tr>\
         <tr><td>event recall</td><td>{:.3} ({} of {})</td></tr>\
         <tr><td>detection delay median / p90</td><td>{} s / {} s</td></tr>\
         <tr><td>alerts (true / false)</td><td>{} ({} / {})</td></tr>\
         <tr><td>alert precision</td><td>{}</td></tr>\
         <tr><td>alerts / false alerts per device-day</td><td>{:.2} / {:.2}</td></tr></table>",
        ev.rows_evaluated,
        ev.rows_faulty,
        fmt_opt(ev.roc_auc, 4),
        fmt_opt(ev.pr_auc, 4),
        m.precision,
        m.recall,
        m.f1,
        m.alert_rate * 100.0,
        e.event_recall,
        e.detected,
        e.events,
        fmt_opt(e.delay_median_s, 0),
        fmt_opt(e.delay_p90_s, 0),
        e.alerts,
        e.true_alerts,
        e.false_alerts,
        fmt_opt(e.alert_precision, 3),
        e.alerts_per_device_day,
        e.false_alerts_per_device_day,
    );

    // Timelines.
    h.push_str("<h2>Score timelines</h2><p class=\"note\">Evaluated span; shaded: ground-truth fault events; bars along the top: alerts from start to end (yellow info, orange warning, red critical); dashed: operating threshold; scores far above it (beyond four times the threshold and the 90th percentile) are drawn at the top of the plot.</p><div class=\"grid\">");
    for svg in timelines.draw(ev, alerts)? {
        h.push_str(&svg);
    }
    h.push_str("</div>");

    // Curves.
    h.push_str("<h2>ROC and precision-recall</h2><div class=\"grid\">");
    h.push_str(&curve_svg(
        "ROC",
        "false positive rate",
        "true positive rate",
        &ev.roc_curve,
    )?);
    h.push_str(&curve_svg(
        "Precision-recall",
        "recall",
        "precision",
        &ev.pr_curve,
    )?);
    h.push_str("</div>");

    // Per fault.
    h.push_str("<h2>Per fault kind</h2><table><tr><th>fault</th><th>rows</th><th>row recall</th><th>events</th><th>event recall</th><th>delay median (s)</th><th>delay p90 (s)</th></tr>");
    for f in &ev.per_fault {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td></tr>",
            html_escape(&f.tag),
            f.rows,
            f.recall,
            f.events,
            f.event_recall,
            fmt_opt(f.delay_median_s, 0),
            fmt_opt(f.delay_p90_s, 0)
        );
    }
    h.push_str("</table><div class=\"grid\">");
    let recall: Vec<(String, f64)> = ev
        .per_fault
        .iter()
        .map(|f| (f.tag.clone(), f.recall))
        .collect();
    let event_recall: Vec<(String, f64)> = ev
        .per_fault
        .iter()
        .map(|f| (f.tag.clone(), f.event_recall))
        .collect();
    let delay: Vec<(String, f64)> = ev
        .per_fault
        .iter()
        .map(|f| (f.tag.clone(), f.delay_median_s.unwrap_or(0.0)))
        .collect();
    h.push_str(&bars_svg("Row recall per fault", &recall, Some(1.0))?);
    h.push_str(&bars_svg(
        "Event recall per fault",
        &event_recall,
        Some(1.0),
    )?);
    h.push_str(&bars_svg("Median detection delay (s)", &delay, None)?);
    h.push_str("</div>");

    // Sweep.
    let _ = write!(
        h,
        "<h2>Threshold sweep (diagnostic)</h2><p class=\"note\">{}</p>",
        html_escape(&ev.sweep.note)
    );
    h.push_str(&sweep_svg(ev)?);

    // Alerts and the fleet.
    alerts_table(&mut h, ev, alerts);
    fleet_table(&mut h, ev);

    // Per device and state.
    h.push_str("<h2>Per state</h2>");
    h.push_str(&breakdown_table(&ev.per_state));
    h.push_str("<h2>Per device</h2>");
    h.push_str(&breakdown_table(&ev.per_device));
    h.push_str("</body></html>\n");
    Ok(h)
}

fn shares_text(v: &[Share]) -> String {
    v.iter()
        .map(|s| format!("{} {:.0}%", html_escape(&s.name), s.share * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

fn alerts_table(h: &mut String, ev: &Evaluation, alerts: &[Alert]) {
    let _ = write!(
        h,
        "<h2>Alerts</h2><p class=\"note\">{} alerts{}; contributions: {}. Fault: the labelled event the alert overlaps most (evaluation only).</p>\
         <table><tr><th>id</th><th>device</th><th>start</th><th>end</th><th>rows</th><th>severity</th><th>peak −log10 tail</th>\
         <th>family</th><th>top features</th><th>route</th><th>rule</th><th>labels</th><th>fault</th></tr>",
        alerts.len(),
        if alerts.len() > MAX_ALERT_ROWS {
            format!(", the first {MAX_ALERT_ROWS} listed")
        } else {
            String::new()
        },
        html_escape(ev.attribution_method.as_deref().unwrap_or("not computed"))
    );
    for a in alerts.iter().take(MAX_ALERT_ROWS) {
        let family = match (&a.family, a.families.first()) {
            (Some(f), Some(s)) => format!("{} {:.0}%", html_escape(f), s.share * 100.0),
            _ => "–".to_owned(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td style=\"background:{}\">{}</td><td>{:.2}</td>\
             <td>{}</td><td style=\"text-align:left\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(&a.id),
            html_escape(&a.device),
            html_escape(&a.start),
            html_escape(&a.end),
            if a.open { " (open)" } else { "" },
            a.rows,
            severity_css(a.severity),
            a.severity.as_str(),
            a.peak_tail_log10,
            family,
            shares_text(&a.top_features),
            html_escape(&a.route),
            html_escape(&a.rule),
            html_escape(&a.labels.join(", ")),
            html_escape(a.fault.as_deref().unwrap_or("–")),
        );
    }
    h.push_str("</table>");
}

fn fleet_table(h: &mut String, ev: &Evaluation) {
    h.push_str(
        "<h2>Fleet</h2><table><tr><th>device</th><th>alerts</th><th>info</th><th>warning</th>\
         <th>critical</th><th>severity p95 (−log10 tail)</th><th>dominant families</th></tr>",
    );
    for d in &ev.fleet {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
            html_escape(&d.device),
            d.alerts,
            d.info,
            d.warning,
            d.critical,
            fmt_opt(d.severity_p95, 2),
            shares_text(&d.dominant_families),
        );
    }
    h.push_str("</table>");
}

fn severity_css(s: Severity) -> &'static str {
    match s {
        Severity::Info => "#fff3b0",
        Severity::Warning => "#ffc98a",
        Severity::Critical => "#ff9a9a",
    }
}

fn severity_colour(s: Severity) -> RGBColor {
    match s {
        Severity::Info => RGBColor(230, 190, 0),
        Severity::Warning => RGBColor(245, 130, 0),
        Severity::Critical => RGBColor(220, 0, 0),
    }
}

fn threshold_words(t: &Threshold) -> String {
    match t.rule {
        crate::params::ThresholdRule::TrainingQuantile(q) => {
            format!("the {q} quantile of {} training scores", t.training_rows)
        }
        crate::params::ThresholdRule::TargetAlertRate(r) => {
            format!(
                "a {:.2}% alert rate on {} training rows",
                r * 100.0,
                t.training_rows
            )
        }
        crate::params::ThresholdRule::TargetFalseAlerts(f) => {
            format!(
                "at most {f} alerts per device-day on the calibration rows (sketch of {} training scores)",
                t.training_rows
            )
        }
    }
}

fn breakdown_table(rows: &[crate::evaluate::Breakdown]) -> String {
    let mut h = String::from(
        "<table><tr><th>key</th><th>rows</th><th>faulty</th><th>flagged</th><th>precision</th><th>recall</th><th>F1</th><th>ROC-AUC</th></tr>",
    );
    for b in rows {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>",
            html_escape(&b.key),
            b.rows,
            b.faulty,
            b.flagged,
            b.precision,
            b.recall,
            b.f1,
            fmt_opt(b.roc_auc, 3)
        );
    }
    h.push_str("</table>");
    h
}

/// One device's rows in the evaluated span (all states), for its timeline.
#[derive(Debug, Clone)]
struct DeviceTimeline {
    /// Device id.
    name: String,
    /// Its ground-truth events in the span.
    events: usize,
    /// Its rows' timestamps, in time order.
    ts: Vec<i64>,
    /// Their scores.
    scores: Vec<f64>,
    /// Its events: start, end, tag code (into [`Timelines`]'s dictionary).
    spans: Vec<(i64, i64, u32)>,
}

/// The rows the report's score timelines draw, gathered a part of the fleet at
/// a time ([`Timelines::offer`]): the rows from the cut on of the devices with
/// the most ground-truth events (ties by device id), and when each fault kind
/// first occurs (its colour: 1 for the first, then in order; ties by name).
/// It holds only the chosen devices' rows.
#[derive(Debug, Clone)]
pub struct Timelines {
    cut: i64,
    max: usize,
    chosen: Vec<DeviceTimeline>,
    tags: TagDictionary,
    /// When each tag of `tags` first occurs.
    first_seen: Vec<i64>,
}

impl Timelines {
    /// None yet, for at most `max` devices, from `cut_us` on.
    pub fn new(cut_us: i64, max: usize) -> Self {
        Timelines {
            cut: cut_us,
            max,
            chosen: Vec::new(),
            tags: TagDictionary::new(),
            first_seen: vec![i64::MAX],
        }
    }

    /// [`Timelines::new`] from the evaluation's cut.
    ///
    /// # Errors
    /// [`Error::Telemetry`] when the evaluation's cut does not parse.
    pub fn for_evaluation(ev: &Evaluation, max: usize) -> Result<Self> {
        let cut = itap_telemetry::parse_timestamp(&ev.split.cut, itap_telemetry::TimeZone::UTC)?;
        Ok(Timelines::new(cut, max))
    }

    /// Offers the rows of some devices (every row of each; other devices in
    /// other calls).
    pub fn offer(&mut self, rows: &ScoredRows<'_>) {
        let codes = self.tags.codes_of(rows.tag_names);
        self.first_seen.resize(self.tags.names.len(), i64::MAX);
        if let Some(tags) = rows.tag_codes {
            for (&t, &ts) in tags.iter().zip(rows.timestamps) {
                let f = &mut self.first_seen[codes[t as usize] as usize];
                *f = (*f).min(ts);
            }
        }
        let mut by_device: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (r, &t) in rows.timestamps.iter().enumerate() {
            if t >= self.cut {
                by_device.entry(rows.device_codes[r]).or_default().push(r);
            }
        }
        for v in by_device.values_mut() {
            v.sort_by_key(|&r| rows.timestamps[r]);
        }
        let evs = events(rows, &by_device);
        // Each device's events, in time order.
        let mut of_device: BTreeMap<u32, Vec<(i64, i64, u32)>> = BTreeMap::new();
        for e in &evs {
            of_device
                .entry(e.device)
                .or_default()
                .push((e.start, e.end, codes[e.tag as usize]));
        }
        for (&d, list) in &by_device {
            let name = &rows.device_names[d as usize];
            let n = of_device.get(&d).map_or(0, Vec::len);
            // Only a device that would be among the chosen is copied.
            if self.chosen.len() >= self.max
                && !self
                    .chosen
                    .last()
                    .is_some_and(|w| Self::before((n, name), w))
            {
                continue;
            }
            self.chosen.push(DeviceTimeline {
                name: name.clone(),
                events: n,
                ts: list.iter().map(|&r| rows.timestamps[r]).collect(),
                scores: list.iter().map(|&r| rows.scores[r]).collect(),
                spans: of_device.remove(&d).unwrap_or_default(),
            });
            self.chosen
                .sort_by(|a, b| b.events.cmp(&a.events).then_with(|| a.name.cmp(&b.name)));
            self.chosen.truncate(self.max);
        }
    }

    /// Whether a device with `n` events and id `name` comes before `w`.
    fn before((n, name): (usize, &String), w: &DeviceTimeline) -> bool {
        n > w.events || (n == w.events && *name < w.name)
    }

    /// A palette index for each tag code: 1 for the fault kind that occurs
    /// first in time, 2 for the next… (ties by name); 0 for "no fault".
    fn colours(&self) -> Vec<usize> {
        let names = &self.tags.names;
        let mut kinds: Vec<usize> = (1..names.len()).collect();
        kinds.sort_by(|&a, &b| {
            self.first_seen[a]
                .cmp(&self.first_seen[b])
                .then_with(|| names[a].cmp(&names[b]))
        });
        let mut colour = vec![0; names.len()];
        for (rank, &k) in kinds.iter().enumerate() {
            colour[k] = rank + 1;
        }
        colour
    }

    /// One SVG per chosen device (those with the most events first) over the
    /// evaluated span.
    fn draw(&self, ev: &Evaluation, als: &[Alert]) -> Result<Vec<String>> {
        let tag_colour = self.colours();
        let tag_colour = |code: u32| tag_colour[code as usize];
        let mut out = Vec::new();
        for dev in &self.chosen {
            let t0 = dev.ts[0];
            let hours = |t: i64| (t - t0) as f64 / 3.6e9;
            let x_max = hours(dev.ts[dev.ts.len() - 1]).max(1e-6);
            let finite: Vec<f64> = dev
                .scores
                .iter()
                .copied()
                .filter(|s| s.is_finite())
                .collect();
            let y_min = finite
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min)
                .min(ev.threshold.value);
            let y_max = finite
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max)
                .max(ev.threshold.value);
            // A few huge scores (a PCA residual of a dropout can be 100× the
            // threshold) would flatten everything else: above the larger of four times
            // the threshold and the 90th percentile, scores are drawn at the top.
            let cap =
                (4.0 * ev.threshold.value).max(crate::quantile(&finite, 0.9).unwrap_or(y_max));
            let y_max = if cap > y_min { y_max.min(cap) } else { y_max };
            let (y_min, y_max) = if y_min.is_finite() && y_max > y_min {
                let pad = (y_max - y_min) * 0.05;
                (y_min - pad, y_max + pad)
            } else {
                (0.0, 1.0)
            };
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, (580, 240)).into_drawing_area();
                root.fill(&WHITE).map_err(plot_err("timeline"))?;
                let name = &dev.name;
                let mut chart = ChartBuilder::on(&root)
                    .caption(
                        format!("{name} (hours after {})", format_timestamp(t0)),
                        ("sans-serif", 14),
                    )
                    .margin(8)
                    .x_label_area_size(24)
                    .y_label_area_size(48)
                    .build_cartesian_2d(0.0..x_max, y_min..y_max)
                    .map_err(plot_err("timeline"))?;
                chart
                    .configure_mesh()
                    .light_line_style(WHITE)
                    .draw()
                    .map_err(plot_err("timeline"))?;
                for &(start, end, tag) in &dev.spans {
                    let color = Palette99::pick(tag_colour(tag)).mix(0.25);
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [
                                (hours(start), y_min),
                                (hours(end).max(hours(start) + x_max / 400.0), y_max),
                            ],
                            color.filled(),
                        )))
                        .map_err(plot_err("timeline"))?;
                }
                chart
                    .draw_series(LineSeries::new(
                        dev.ts
                            .iter()
                            .zip(&dev.scores)
                            .filter(|(_, s)| s.is_finite())
                            .map(|(&t, &s)| (hours(t), s.min(y_max))),
                        BLUE.stroke_width(1),
                    ))
                    .map_err(plot_err("timeline"))?;
                chart
                    .draw_series(DashedLineSeries::new(
                        [(0.0, ev.threshold.value), (x_max, ev.threshold.value)],
                        4,
                        3,
                        BLACK.stroke_width(1),
                    ))
                    .map_err(plot_err("timeline"))?;
                for a in als.iter().filter(|a| a.device == *name) {
                    let colour = severity_colour(a.severity);
                    let (x0, x1) = (
                        hours(a.start_us),
                        hours(a.end_us).max(hours(a.start_us) + x_max / 300.0),
                    );
                    chart
                        .draw_series([
                            Rectangle::new([(x0, y_min), (x1, y_max)], colour.mix(0.12).filled()),
                            Rectangle::new(
                                [(x0, y_max - (y_max - y_min) * 0.05), (x1, y_max)],
                                colour.filled(),
                            ),
                        ])
                        .map_err(plot_err("timeline"))?;
                }
                root.present().map_err(plot_err("timeline"))?;
            }
            out.push(svg);
        }
        Ok(out)
    }
}

fn curve_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[crate::metrics::CurvePoint],
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (380, 340)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err("curve"))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(44)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(plot_err("curve"))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .draw()
            .map_err(plot_err("curve"))?;
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (p.x, p.y)),
                BLUE.stroke_width(2),
            ))
            .map_err(plot_err("curve"))?;
        root.present().map_err(plot_err("curve"))?;
    }
    Ok(svg)
}

fn bars_svg(title: &str, bars: &[(String, f64)], y_max: Option<f64>) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (380, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err("bars"))?;
        let top = y_max.unwrap_or_else(|| bars.iter().map(|b| b.1).fold(1.0, f64::max) * 1.1);
        let n = bars.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(44)
            .build_cartesian_2d(0.0..n as f64, 0.0..top)
            .map_err(plot_err("bars"))?;
        let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - i as f64 - 0.5).abs() < 0.26 {
                    names.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .draw()
            .map_err(plot_err("bars"))?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                Rectangle::new(
                    [(i as f64 + 0.15, 0.0), (i as f64 + 0.85, b.1)],
                    Palette99::pick(i + 1).filled(),
                )
            }))
            .map_err(plot_err("bars"))?;
        root.present().map_err(plot_err("bars"))?;
    }
    Ok(svg)
}

fn sweep_svg(ev: &Evaluation) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (580, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err("sweep"))?;
        let lo = ev.sweep.points.first().map_or(0.0, |p| p.percentile);
        let hi = ev
            .sweep
            .points
            .last()
            .map_or(100.0, |p| p.percentile)
            .max(lo + 1.0);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Precision, recall and F1 by test-score percentile",
                ("sans-serif", 15),
            )
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(44)
            .build_cartesian_2d(lo..hi, 0.0..1.0)
            .map_err(plot_err("sweep"))?;
        chart
            .configure_mesh()
            .x_desc("percentile of test scores used as threshold")
            .draw()
            .map_err(plot_err("sweep"))?;
        type Get = fn(&crate::evaluate::SweepPoint) -> f64;
        let series: [(&str, RGBColor, Get); 3] = [
            ("precision", BLUE, |p| p.precision),
            ("recall", RED, |p| p.recall),
            ("F1", GREEN, |p| p.f1),
        ];
        for (name, color, get) in series {
            chart
                .draw_series(LineSeries::new(
                    ev.sweep.points.iter().map(|p| (p.percentile, get(p))),
                    color.stroke_width(2),
                ))
                .map_err(plot_err("sweep"))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err("sweep"))?;
        root.present().map_err(plot_err("sweep"))?;
    }
    Ok(svg)
}
