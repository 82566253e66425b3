//! `itap validate`: check a telemetry CSV before it is stored, write the report and
//! the quarantine file, and say in the exit status whether it may be stored.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use itap::validate::{Policy, Report, Severity, Verdict, validate_file};

use crate::config::Config;
use crate::fmt::thousands;
use crate::{ConfigArg, Output};

/// Flags of `itap validate`; each overrides the config file.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit status: 0 when there is no error-severity finding, 1 when there is one,
2 for a usage or I/O error.

Example: itap validate data/raw/telemetry.csv --report artifacts/validation.json")]
pub(crate) struct ValidateArgs {
    /// The CSV file to check.
    input: PathBuf,

    #[command(flatten)]
    config: ConfigArg,

    #[command(flatten)]
    signals: crate::config::SignalsFlag,

    /// Write the JSON report here; folders are created.
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,

    /// Write the rows with an error here (CSV, each with its reasons) so they can be
    /// fixed and re-submitted; folders are created.
    #[arg(long, value_name = "PATH")]
    quarantine: Option<PathBuf>,

    /// reject (a file with error rows stores nothing) or quarantine (the good rows
    /// may be stored) [config: validation.policy, default reject].
    #[arg(long, value_name = "POLICY")]
    policy: Option<Policy>,

    /// Print the report as JSON on stdout instead of the summary.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &ValidateArgs, out: Output) -> Result<ExitCode> {
    let config = Config::load(args.config.config.as_deref())?;
    let opts = config.read_options()?;
    let params = config.validation_params(args.policy, &args.signals)?;
    let started = Instant::now();
    tracing::debug!(input = ?args.input, "validating");
    let report = validate_file(&args.input, &opts, &params, args.quarantine.as_deref())
        .with_context(|| format!("cannot validate {}", args.input.display()))?;
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(path) = &args.report {
        write_report(&report, path)?;
    }
    if args.json {
        println!("{}", report.to_json());
    } else if !out.quiet {
        print_summary(&report, elapsed);
        if let Some(p) = &args.report {
            println!("report      {}", p.display());
        }
        if let Some(p) = &args.quarantine {
            println!(
                "quarantine  {} ({} rows)",
                p.display(),
                report.rows_with_errors
            );
        }
    }
    Ok(if report.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn write_report(report: &Report, path: &Path) -> Result<()> {
    let mut text = report.to_json();
    text.push('\n');
    itap::telemetry::write_atomic(path, text.as_bytes())
        .with_context(|| format!("cannot write the report to {}", path.display()))
}

fn print_summary(r: &Report, elapsed: f64) {
    let path = r.input.path.as_deref().unwrap_or("<input>");
    println!(
        "{path}: {} rows, {} device{}{}",
        thousands(r.rows),
        r.devices,
        if r.devices == 1 { "" } else { "s" },
        r.time
            .as_ref()
            .map(|t| format!(", {} … {}", t.first, t.last))
            .unwrap_or_default()
    );
    if let Some(sha) = &r.input.sha256 {
        println!("  sha256 {sha}");
    }
    if !r.columns.is_empty() {
        println!(
            "  {:<16} {:>9} {:>8} {:>12} {:>12} {:>12}",
            "signal", "missing", "rate", "min", "max", "mean"
        );
        let num = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"));
        for c in &r.columns {
            println!(
                "  {:<16} {:>9} {:>7.3}% {:>12} {:>12} {:>12}",
                c.name,
                thousands(c.missing),
                c.missing_rate * 100.0,
                num(c.min),
                num(c.max),
                num(c.mean)
            );
        }
    }
    if r.findings.is_empty() {
        println!("  no findings");
    } else {
        println!(
            "  {:<8} {:<32} {:<14} {:>9}  first",
            "severity", "check", "column", "count"
        );
        for f in &r.findings {
            let first = f
                .examples
                .first()
                .map(|e| {
                    let mut t = e.line.map(|l| format!("line {l} ")).unwrap_or_default();
                    if e.line.is_some() && !e.value.is_empty() {
                        t.push_str(&format!("{:?} ", e.value));
                    }
                    t.push_str(&e.detail);
                    t
                })
                .unwrap_or_default();
            println!(
                "  {:<8} {:<32} {:<14} {:>9}  {}",
                f.severity,
                f.check,
                f.column.as_deref().unwrap_or("-"),
                thousands(f.count),
                truncate(&first, 90)
            );
        }
    }
    let verdict = match r.verdict {
        Verdict::Valid => "VALID",
        Verdict::ValidWithWarnings => "VALID WITH WARNINGS",
        Verdict::Quarantined => "QUARANTINED",
        Verdict::Rejected => "REJECTED",
    };
    let count = |s: Severity| match s {
        Severity::Error => r.totals.errors,
        Severity::Warning => r.totals.warnings,
        Severity::Info => r.totals.infos,
    };
    println!(
        "verdict     {verdict}: {} errors, {} warnings, {} info; {} of {} rows may be stored (policy {}, {:.2} s)",
        thousands(count(Severity::Error)),
        thousands(count(Severity::Warning)),
        thousands(count(Severity::Info)),
        thousands(r.rows_accepted),
        thousands(r.rows),
        r.policy.as_str(),
        elapsed
    );
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_counts_and_truncates() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(54_000), "54,000");
        assert_eq!(thousands(8_640_000), "8,640,000");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
