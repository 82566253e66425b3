//! The command line's words for what a library error asks to change: the
//! libraries name their own fields (`train_until`, the `timestamp_column` read
//! option); the flags and config keys that set them are named here.

use std::error::Error as StdError;

use itap::telemetry::Error as TelemetryError;
use itap::validate::{Policy, Report, Scope, Severity};

/// The flags (or config keys) that fix `e`, when it is an error the libraries
/// word in their own terms; printed after the message as `(in itap: …)`.
pub(crate) fn for_error(e: &anyhow::Error) -> Option<&'static str> {
    e.chain().find_map(for_cause)
}

fn for_cause(cause: &(dyn StdError + 'static)) -> Option<&'static str> {
    if let Some(e) = cause.downcast_ref::<itap::Error>() {
        return match e {
            itap::Error::NoTrainingRows(_) => Some("--train-until, --unsupervised"),
            itap::Error::NoData(_) => Some("`itap ingest`, or --input FILE"),
            itap::Error::Eval(e) => for_eval(e),
            itap::Error::Store(e) => for_store(e),
            other => telemetry_of(other).and_then(for_telemetry),
        };
    }
    if let Some(e) = cause.downcast_ref::<itap::eval::Error>() {
        return for_eval(e);
    }
    if let Some(e) = cause.downcast_ref::<itap::store::Error>() {
        return for_store(e);
    }
    if let Some(e) = cause.downcast_ref::<TelemetryError>() {
        return for_telemetry(e);
    }
    if let Some(itap::validate::Error::Telemetry(e)) = cause.downcast_ref::<itap::validate::Error>()
    {
        return for_telemetry(e);
    }
    if let Some(itap::features::Error::Telemetry(e)) = cause.downcast_ref::<itap::features::Error>()
    {
        return for_telemetry(e);
    }
    None
}

fn for_eval(e: &itap::eval::Error) -> Option<&'static str> {
    match e {
        itap::eval::Error::EmptySplit { .. } => {
            Some("--train-fraction, --train-until, or train_fraction / train_until in [eval]")
        }
        itap::eval::Error::Telemetry(e) => for_telemetry(e),
        _ => None,
    }
}

fn for_store(e: &itap::store::Error) -> Option<&'static str> {
    match e {
        itap::store::Error::SchemaMismatch { .. } => Some("--dataset"),
        itap::store::Error::Telemetry(e) => for_telemetry(e),
        itap::store::Error::Validate(itap::validate::Error::Telemetry(e)) => for_telemetry(e),
        _ => None,
    }
}

fn for_telemetry(e: &TelemetryError) -> Option<&'static str> {
    let TelemetryError::MissingColumn { role, .. } = e else {
        return None;
    };
    if role.starts_with("timestamp") {
        Some("--timestamp-column, or timestamp_column in [telemetry.input]")
    } else if role.starts_with("device") {
        Some("--device-column, or device_column in [telemetry.input]")
    } else {
        Some("signals in [telemetry.input]")
    }
}

/// What to add to a refusal by validation: under the reject policy, when rows
/// (not the file as a whole) carry the errors, the quarantine policy would set
/// them aside and go on with the rest.
pub(crate) fn for_refusal(report: &Report) -> Option<String> {
    let file_error = report
        .findings
        .iter()
        .any(|f| f.severity == Severity::Error && f.scope == Scope::File);
    (report.policy == Policy::Reject && !file_error && report.rows_with_errors > 0).then(|| {
        format!(
            "--policy quarantine (or policy = \"quarantine\" in [validation]) sets its {} rows with errors aside in a quarantine file and goes on with the other {}",
            report.rows_with_errors,
            report.rows - report.rows_with_errors
        )
    })
}

/// The telemetry error a pipeline error holds, through the stages that wrap one.
fn telemetry_of(e: &itap::Error) -> Option<&TelemetryError> {
    match e {
        itap::Error::Telemetry(t)
        | itap::Error::Validate(itap::validate::Error::Telemetry(t))
        | itap::Error::Features(itap::features::Error::Telemetry(t)) => Some(t),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_words_get_the_flags() {
        let e = anyhow::Error::new(itap::Error::NoTrainingRows("RUN only".into()))
            .context("cannot train");
        assert!(for_error(&e).unwrap().contains("--train-until"));
        let missing = TelemetryError::MissingColumn {
            path: "t.csv".into(),
            role: "timestamp".into(),
            header: "a,b".into(),
            hint: "the `timestamp_column` read option",
        };
        let e = anyhow::Error::new(itap::Error::Validate(itap::validate::Error::Telemetry(
            missing,
        )));
        assert!(for_error(&e).unwrap().contains("--timestamp-column"));
        let e = anyhow::anyhow!("something else");
        assert_eq!(for_error(&e), None);
    }
}
