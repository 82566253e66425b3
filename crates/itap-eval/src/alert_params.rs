//! The `[alerts]` section: how flagged rows become alerts, checked once.

use itap_telemetry::ParamGuard;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How urgent an alert is. Ordered: `Info < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Info,
    /// Act soon.
    Warning,
    /// Act now.
    Critical,
}

impl Severity {
    /// `info`, `warning` or `critical`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One `[[alerts.rules]]` entry, told apart by its `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AlertRule {
    /// An additional opening condition: `rows` rows above the threshold within
    /// `within_minutes` minutes open an alert.
    Burst {
        /// Rows above the threshold needed, ≥ 1.
        rows: u32,
        /// The time window, minutes, > 0.
        within_minutes: f64,
    },
    /// When an alert's dominant family is `family` with at least `share` of the
    /// contributions, add `label` and raise the severity to at least `severity`.
    DominantFamily {
        /// The family (compared ignoring ASCII case).
        family: String,
        /// The least share, 0 < share ≤ 1.
        share: f64,
        /// The label added; default `dominant_<family in lower case>`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
        /// The least severity of such an alert; none = unchanged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        severity: Option<Severity>,
    },
    /// Alerts whose dominant family is `family` (or, in evaluation, that overlap
    /// a labelled fault event of kind `fault`) go to `team`. Exactly one of
    /// `family` and `fault`. The first matching route rule wins.
    Route {
        /// The dominant family that matches (ignoring ASCII case).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        family: Option<String>,
        /// The fault kind that matches (known only in evaluation).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fault: Option<String>,
        /// Where the alert goes.
        team: String,
    },
}

impl AlertRule {
    /// A route rule by family.
    pub fn route_family(family: &str, team: &str) -> Self {
        AlertRule::Route {
            family: Some(family.to_owned()),
            fault: None,
            team: team.to_owned(),
        }
    }

    /// The rules used when `[alerts]` gives no `rules`: Temperature → `thermal`,
    /// Vibration → `maintenance`, Electrical → `electrical`.
    pub fn defaults() -> Vec<AlertRule> {
        vec![
            AlertRule::route_family("Temperature", "thermal"),
            AlertRule::route_family("Vibration", "maintenance"),
            AlertRule::route_family("Electrical", "electrical"),
        ]
    }
}

/// Alert settings: the `[alerts]` config section. See docs/alerts.md.
///
/// | Name | Default | Meaning | Range |
/// |---|---|---|---|
/// | `open_k` | 5 | an alert opens when `open_k` of a device's last `open_m` rows score above the threshold | 1 ≤ k ≤ m |
/// | `open_m` | 30 | the window of that rule, rows (30 = 5 min at 10 s) | 1–1000 |
/// | `min_duration_seconds` | 0 (off) | also opens when rows have stayed above the threshold this long | ≥ 0 |
/// | `single_row_at` | 4 | also opens on one row whose score's −log10 training tail probability reaches this (a spike too extreme to wait for) | 0 or 1–30 |
/// | `quiet_seconds` | 300 | an open alert closes once more than this has passed since its last row above the close level | ≥ 0 |
/// | `close_fraction` | 1.0 | the close level as a fraction of the threshold (hysteresis) | 0–1 |
/// | `merge_gap_seconds` | 600 | a new alert starting at most this long after the device's previous alert ended is merged into it | ≥ 0 |
/// | `cooldown_seconds` | 0 (off) | after an alert closes the device opens no separate alert for this long | ≥ 0 |
/// | `warning_at` | 4.0 | severity warning from this −log10 training tail probability of the peak score | > 0 |
/// | `critical_at` | 6.0 | severity critical from this | ≥ `warning_at` |
/// | `default_route` | `operations` | the team of alerts no route rule matches | not empty |
/// | `rules` | three family routes | `[[alerts.rules]]`: `burst`, `dominant_family`, `route` ([`AlertRule`]); giving `rules` replaces the defaults | — |
///
/// The default rules route Temperature to `thermal`, Vibration to `maintenance`
/// and Electrical to `electrical` ([`AlertRule::defaults`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertParams {
    /// Rows above the threshold among the last `open_m` that open an alert.
    pub open_k: u32,
    /// The window of the k-of-m rule, rows.
    pub open_m: u32,
    /// Rows staying above the threshold this long open an alert, seconds; 0 = off.
    pub min_duration_seconds: f64,
    /// One row whose score's −log10 training tail probability reaches this opens
    /// an alert by itself; 0 = off.
    pub single_row_at: f64,
    /// Quiet time that closes an open alert, seconds.
    pub quiet_seconds: f64,
    /// The close level as a fraction of the threshold.
    pub close_fraction: f64,
    /// A new alert this soon after the previous one ended merges into it, seconds.
    pub merge_gap_seconds: f64,
    /// No separate alert this long after one closed, seconds.
    pub cooldown_seconds: f64,
    /// Peak −log10 tail probability from which an alert is a warning.
    pub warning_at: f64,
    /// Peak −log10 tail probability from which an alert is critical.
    pub critical_at: f64,
    /// The team of alerts no route rule matches.
    pub default_route: String,
    /// Additional rules.
    pub rules: Vec<AlertRule>,
}

impl Default for AlertParams {
    fn default() -> Self {
        AlertParams {
            open_k: 5,
            open_m: 30,
            min_duration_seconds: 0.0,
            single_row_at: 4.0,
            quiet_seconds: 300.0,
            close_fraction: 1.0,
            merge_gap_seconds: 600.0,
            cooldown_seconds: 0.0,
            warning_at: 4.0,
            critical_at: 6.0,
            default_route: "operations".to_owned(),
            rules: AlertRule::defaults(),
        }
    }
}

impl AlertParams {
    /// Sets the k-of-m opening rule.
    pub fn open(mut self, k: u32, m: u32) -> Self {
        self.open_k = k;
        self.open_m = m;
        self
    }

    /// Sets the tail (−log10) at which one row opens an alert (0 = off).
    pub fn single_row_at(mut self, v: f64) -> Self {
        self.single_row_at = v;
        self
    }

    /// Sets the duration that opens an alert, seconds (0 = off).
    pub fn min_duration_seconds(mut self, s: f64) -> Self {
        self.min_duration_seconds = s;
        self
    }

    /// Sets the quiet time that closes an alert.
    pub fn quiet_seconds(mut self, s: f64) -> Self {
        self.quiet_seconds = s;
        self
    }

    /// Sets the close level as a fraction of the threshold.
    pub fn close_fraction(mut self, f: f64) -> Self {
        self.close_fraction = f;
        self
    }

    /// Sets the merge gap.
    pub fn merge_gap_seconds(mut self, s: f64) -> Self {
        self.merge_gap_seconds = s;
        self
    }

    /// Sets the cooldown.
    pub fn cooldown_seconds(mut self, s: f64) -> Self {
        self.cooldown_seconds = s;
        self
    }

    /// Sets the severity levels.
    pub fn severity_levels(mut self, warning_at: f64, critical_at: f64) -> Self {
        self.warning_at = warning_at;
        self.critical_at = critical_at;
        self
    }

    /// Sets the default route.
    pub fn default_route(mut self, team: &str) -> Self {
        team.clone_into(&mut self.default_route);
        self
    }

    /// Sets the rules (replacing the defaults).
    pub fn rules(mut self, rules: Vec<AlertRule>) -> Self {
        self.rules = rules;
        self
    }

    fn resolve(&self) -> Result<()> {
        let p = self;
        if !(1..=1000).contains(&p.open_m) {
            return Err(Error::param(
                "open_m",
                format!("must be between 1 and 1000, got {}", p.open_m),
            ));
        }
        if p.open_k < 1 || p.open_k > p.open_m {
            return Err(Error::param(
                "open_k",
                format!(
                    "must be between 1 and open_m ({}), got {}",
                    p.open_m, p.open_k
                ),
            ));
        }
        if !(p.single_row_at == 0.0 || (1.0..=30.0).contains(&p.single_row_at)) {
            return Err(Error::param(
                "single_row_at",
                format!("must be 0 (off) or from 1 to 30, got {}", p.single_row_at),
            ));
        }
        for (name, v) in [
            ("min_duration_seconds", p.min_duration_seconds),
            ("quiet_seconds", p.quiet_seconds),
            ("merge_gap_seconds", p.merge_gap_seconds),
            ("cooldown_seconds", p.cooldown_seconds),
        ] {
            if !(v.is_finite() && (0.0..=1e9).contains(&v)) {
                return Err(Error::param(
                    name,
                    format!("must be a number of seconds ≥ 0, got {v}"),
                ));
            }
        }
        if !(0.0..=1.0).contains(&p.close_fraction) {
            return Err(Error::param(
                "close_fraction",
                format!("must be between 0 and 1, got {}", p.close_fraction),
            ));
        }
        if !(p.warning_at.is_finite() && p.warning_at > 0.0) {
            return Err(Error::param(
                "warning_at",
                format!("must be a number > 0, got {}", p.warning_at),
            ));
        }
        if !(p.critical_at.is_finite() && p.critical_at >= p.warning_at) {
            return Err(Error::param(
                "critical_at",
                format!(
                    "must be at least warning_at ({}), got {}",
                    p.warning_at, p.critical_at
                ),
            ));
        }
        if p.default_route.trim().is_empty() {
            return Err(Error::param("default_route", "name a team"));
        }
        for (i, rule) in p.rules.iter().enumerate() {
            check_rule(i, rule)?;
        }
        Ok(())
    }
}

fn check_rule(i: usize, rule: &AlertRule) -> Result<()> {
    let key = |field: &str| {
        if field.is_empty() {
            format!("rules[{i}]")
        } else {
            format!("rules[{i}].{field}")
        }
    };
    match rule {
        AlertRule::Burst {
            rows,
            within_minutes,
        } => {
            if !(1..=1_000_000).contains(rows) {
                return Err(Error::param(
                    key("rows"),
                    format!("must be between 1 and 1000000, got {rows}"),
                ));
            }
            if !(within_minutes.is_finite() && *within_minutes > 0.0 && *within_minutes <= 1e6) {
                return Err(Error::param(
                    key("within_minutes"),
                    format!("must be a number of minutes > 0, got {within_minutes}"),
                ));
            }
        }
        AlertRule::DominantFamily {
            family,
            share,
            label,
            ..
        } => {
            if family.trim().is_empty() {
                return Err(Error::param(key("family"), "name a signal family"));
            }
            if !(*share > 0.0 && *share <= 1.0) {
                return Err(Error::param(
                    key("share"),
                    format!("must be > 0 and ≤ 1, got {share}"),
                ));
            }
            if label.as_ref().is_some_and(|l| l.trim().is_empty()) {
                return Err(Error::param(key("label"), "must not be empty"));
            }
        }
        AlertRule::Route {
            family,
            fault,
            team,
        } => {
            match (family, fault) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(Error::param(
                        key(""),
                        "a route rule names exactly one of `family` and `fault`",
                    ));
                }
                (Some(f), None) | (None, Some(f)) if f.trim().is_empty() => {
                    let which = if family.is_some() { "family" } else { "fault" };
                    return Err(Error::param(key(which), "must not be empty"));
                }
                _ => {}
            }
            if team.trim().is_empty() {
                return Err(Error::param(key("team"), "name a team"));
            }
        }
    }
    Ok(())
}

impl ParamGuard for AlertParams {
    type Checked = CheckedAlerts;
    type Error = Error;

    fn check_ref(&self) -> Result<()> {
        self.resolve()
    }

    /// Checks every parameter and rule.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] naming the first key out of range, rules as
    /// `rules[i].field` (counted from 0); callers prefix the section with
    /// [`Error::in_section`]`("alerts")`.
    fn check(self) -> Result<CheckedAlerts> {
        self.resolve()?;
        Ok(CheckedAlerts { params: self })
    }
}

/// Alert parameters that passed [`AlertParams`]' [`check`](ParamGuard::check).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedAlerts {
    params: AlertParams,
}

impl CheckedAlerts {
    /// The parameters as given.
    pub fn params(&self) -> &AlertParams {
        &self.params
    }

    /// The severity of a peak −log10 tail probability, before any rule raises it.
    pub fn severity_of(&self, tail_log10: f64) -> Severity {
        let p = &self.params;
        if tail_log10 >= p.critical_at {
            Severity::Critical
        } else if tail_log10 >= p.warning_at {
            Severity::Warning
        } else {
            Severity::Info
        }
    }

    /// The team of an alert with this dominant family and (in evaluation) fault
    /// kind: the first matching route rule, else `default_route`.
    pub fn route(&self, family: Option<&str>, fault: Option<&str>) -> String {
        let eq = |a: Option<&str>, b: &Option<String>| matches!((a, b.as_deref()), (Some(x), Some(y)) if x.eq_ignore_ascii_case(y));
        self.params
            .rules
            .iter()
            .find_map(|r| match r {
                AlertRule::Route {
                    family: rf,
                    fault: rk,
                    team,
                } if eq(family, rf) || eq(fault, rk) => Some(team.clone()),
                _ => None,
            })
            .unwrap_or_else(|| self.params.default_route.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(p: AlertParams) -> String {
        assert!(p.check_ref().is_err());
        match p.check().unwrap_err().in_section("alerts") {
            Error::InvalidParam(e) => e.name,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn bad_params_name_the_key() {
        let d = AlertParams::default;
        assert!(d().check().is_ok());
        assert_eq!(name(d().open(7, 6)), "alerts.open_k");
        assert_eq!(name(d().open(0, 6)), "alerts.open_k");
        assert_eq!(name(d().open(1, 0)), "alerts.open_m");
        assert_eq!(name(d().quiet_seconds(-1.0)), "alerts.quiet_seconds");
        assert_eq!(name(d().close_fraction(1.5)), "alerts.close_fraction");
        assert_eq!(name(d().severity_levels(4.0, 3.0)), "alerts.critical_at");
        assert_eq!(name(d().default_route(" ")), "alerts.default_route");
        let rules = |r: AlertRule| {
            d().rules(vec![
                AlertRule::Burst {
                    rows: 5,
                    within_minutes: 2.0,
                },
                r,
            ])
        };
        assert_eq!(
            name(rules(AlertRule::DominantFamily {
                family: "Temperature".into(),
                share: 1.2,
                label: None,
                severity: None,
            })),
            "alerts.rules[1].share"
        );
        assert_eq!(
            name(rules(AlertRule::Route {
                family: Some("Temperature".into()),
                fault: Some("overheat".into()),
                team: "thermal".into(),
            })),
            "alerts.rules[1]"
        );
        assert_eq!(
            name(rules(AlertRule::Burst {
                rows: 0,
                within_minutes: 2.0
            })),
            "alerts.rules[1].rows"
        );
        assert_eq!(
            name(rules(AlertRule::Route {
                family: None,
                fault: Some("overheat".into()),
                team: String::new(),
            })),
            "alerts.rules[1].team"
        );
    }

    #[test]
    fn config_shape_and_unknown_kind() {
        let p: AlertParams = serde_json::from_str(
            r#"{"open_k": 2, "rules": [
                {"kind": "burst", "rows": 5, "within_minutes": 2},
                {"kind": "dominant_family", "family": "Vibration", "share": 0.6, "severity": "critical"},
                {"kind": "route", "fault": "overheat", "team": "thermal"}]}"#,
        )
        .unwrap();
        assert_eq!(p.open_k, 2);
        assert_eq!(p.open_m, 30, "defaults fill the rest");
        assert_eq!(p.rules.len(), 3, "given rules replace the defaults");
        let d: AlertParams = serde_json::from_str("{}").unwrap();
        assert_eq!(d.rules, AlertRule::defaults());
        let e = serde_json::from_str::<AlertParams>(
            r#"{"rules": [{"kind": "page_everyone", "team": "all"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("page_everyone") && e.contains("burst"), "{e}");
        let e = serde_json::from_str::<AlertParams>(r#"{"open_kk": 2}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("open_kk"), "{e}");
        let e = serde_json::from_str::<AlertParams>(
            r#"{"rules": [{"kind": "burst", "rows": 5, "within_minutes": 2, "x": 1}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains('x'), "{e}");
    }

    #[test]
    fn routes_first_match_then_default() {
        let p = AlertParams::default()
            .rules(vec![
                AlertRule::Route {
                    family: None,
                    fault: Some("overheat".into()),
                    team: "thermal-oncall".into(),
                },
                AlertRule::route_family("temperature", "thermal"),
                AlertRule::route_family("Temperature", "never"),
            ])
            .check()
            .unwrap();
        assert_eq!(p.route(Some("Temperature"), None), "thermal");
        assert_eq!(
            p.route(Some("Temperature"), Some("overheat")),
            "thermal-oncall"
        );
        assert_eq!(p.route(Some("Vibration"), None), "operations");
        assert_eq!(p.route(None, None), "operations");
        let d = AlertParams::default().check().unwrap();
        assert_eq!(d.route(Some("Vibration"), None), "maintenance");
        assert_eq!(d.route(Some("Electrical"), None), "electrical");
    }

    #[test]
    fn severity_levels() {
        let d = AlertParams::default().check().unwrap();
        assert_eq!(d.severity_of(3.99), Severity::Info);
        assert_eq!(d.severity_of(4.0), Severity::Warning);
        assert_eq!(d.severity_of(6.0), Severity::Critical);
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
    }
}
