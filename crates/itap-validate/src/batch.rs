//! Validating a batch in memory.

use itap_telemetry::Batch;

use crate::checks::Check;
use crate::columns::required_columns;
use crate::engine::{ColumnMap, Engine, Outcome, RowRefs};
use crate::findings::At;
use crate::params::CheckedValidation;
use crate::report::{InputInfo, Report, Verdict, assemble};
use crate::validated::Validated;

/// Validates a batch held in memory.
///
/// Returns the report and, when the verdict lets rows be stored, the batch as
/// [`Validated`]: whole when valid (with or without warnings), only the rows
/// without an error finding when [`Verdict::Quarantined`]. A rejected batch comes
/// back unchanged in `Err`. Rows are checked in their order in the batch, as a file's
/// rows are; `line` is `None` in the examples and `row` is the batch row.
///
/// ```
/// use itap_validate::{validate_batch, ParamGuard, ValidationParams, Verdict};
/// use itap_telemetry::{simulate, SimParams};
/// let batch = simulate(&SimParams::default().devices(3).hours(1.0).check()?);
/// let params = ValidationParams::default().check()?;
/// let (report, validated) = validate_batch(batch, &params);
/// assert!(report.verdict.is_storable());
/// assert_eq!(validated.expect("storable").len(), 3 * 360);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn validate_batch(
    batch: Batch,
    params: &CheckedValidation,
) -> (Report, Result<Validated<Batch>, Batch>) {
    let now_us = params.reference_time();
    let cols = ColumnMap::for_batch(batch.schema());
    let mut names: Vec<&str> = vec!["timestamp", "device_id"];
    if batch.states().is_some() {
        names.push("state");
    }
    if batch.error_codes().is_some() {
        names.push("error_code");
    }
    if batch.tag_codes().is_some() {
        names.push("anomaly_tag");
    }
    names.extend(batch.schema().names());
    let mut engine = Engine::new(params, batch.schema(), cols, now_us);
    required_columns(
        &mut engine.findings,
        &params.params().required_columns,
        &names,
        |name| format!("required column `{name}` is not in the batch"),
    );
    engine.check_declared_signals(params.params().declared_signals.as_deref());
    if batch.is_empty() {
        engine
            .findings
            .hit(Check::NoRows, None, At::FILE, false, || {
                (String::new(), "the batch has no row".to_owned())
            });
    }
    let mut out = Outcome::new(false);
    let refs = RowRefs {
        lines: None,
        ordinals: None,
        base: 0,
    };
    engine.check_batch(&batch, refs, &mut out);
    let schema = batch.schema().clone();
    let report = assemble(
        engine.finish(),
        InputInfo {
            path: None,
            sha256: None,
            bytes: None,
        },
        params,
        now_us,
        None,
        None,
        Some(schema),
    );
    let result = match report.verdict {
        Verdict::Rejected => Err(batch),
        Verdict::Quarantined => {
            let keep: Vec<usize> = (0..batch.len()).filter(|&r| !out.bad[r]).collect();
            Ok(Validated::new(batch.take(&keep)))
        }
        Verdict::Valid | Verdict::ValidWithWarnings => Ok(Validated::new(batch)),
    };
    (report, result)
}
