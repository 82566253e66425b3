//! The checks of the input's columns, file scope: required columns present,
//! columns mapped to nothing.

use itap_telemetry::InputLayout;

use crate::checks::Check;
use crate::findings::{At, Findings};

/// `schema.missing_column` for each of `required` that is not in `present`
/// (compared ignoring ASCII case and the required name's surrounding spaces);
/// `detail` says, for a missing name, where it was looked for.
pub(crate) fn required_columns<S: AsRef<str>>(
    findings: &mut Findings,
    required: &[String],
    present: &[S],
    detail: impl Fn(&str) -> String,
) {
    for name in required {
        if !present
            .iter()
            .any(|p| p.as_ref().eq_ignore_ascii_case(name.trim()))
        {
            findings.hit(Check::MissingColumn, None, At::FILE, false, || {
                (name.clone(), detail(name))
            });
        }
    }
}

/// `schema.unknown_column` for each column of the file mapped to nothing.
pub(crate) fn unknown_columns(findings: &mut Findings, layout: &InputLayout) {
    for &i in &layout.ignored {
        findings.hit(
            Check::UnknownColumn,
            Some(i as u32),
            At::FILE,
            false,
            || {
                (
                    layout.column_name(i).to_owned(),
                    "not a key, signal or label column; ignored".to_owned(),
                )
            },
        );
    }
}
