//! The checks of the input's columns, file scope: required columns present,
//! columns mapped to nothing, signals against the declared ones.

use itap_telemetry::InputLayout;

use crate::checks::Check;
use crate::engine::ColumnMap;
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

/// Against the declared signals: `schema.missing_signal` for each declared signal
/// that is not a signal column of the input, and `schema.undeclared_column` for
/// each signal column that is not declared. `cols` names the input's columns and
/// says which are signals.
pub(crate) fn declared_signals(findings: &mut Findings, declared: &[String], cols: &ColumnMap) {
    let name = |c: &u32| cols.names.get(*c as usize).map_or("?", String::as_str);
    let signals: Vec<&str> = cols.signals.iter().map(name).collect();
    for wanted in declared {
        if signals.contains(&wanted.as_str()) || findings.severity(Check::MissingSignal).is_none() {
            continue;
        }
        let col = findings.column_index(wanted);
        findings.hit(Check::MissingSignal, Some(col), At::FILE, false, || {
            (
                wanted.clone(),
                missing_signal_detail(wanted, &signals, cols),
            )
        });
    }
    for (c, signal) in cols.signals.iter().zip(&signals) {
        if !declared.iter().any(|d| d == signal) {
            findings.hit(Check::UndeclaredColumn, Some(*c), At::FILE, false, || {
                (
                    (*signal).to_owned(),
                    "a signal column that is not declared; it is checked and stored like \
                     the declared ones"
                        .to_owned(),
                )
            });
        }
    }
}

/// Why a declared signal was not found, as precisely as the columns tell.
fn missing_signal_detail(wanted: &str, signals: &[&str], cols: &ColumnMap) -> String {
    if let Some(other) = signals.iter().find(|s| s.eq_ignore_ascii_case(wanted)) {
        format!("the input has a signal `{other}`; signal names are case-sensitive")
    } else if cols.names.iter().any(|n| n == wanted) {
        format!(
            "`{wanted}` is a column of the input but is not read as a signal (its values \
             are not numbers, or it is a key or label column)"
        )
    } else if signals.is_empty() {
        format!("no column `{wanted}`, and no signal column at all")
    } else {
        format!(
            "no column `{wanted}`; the input's signals are {}",
            signals.join(", ")
        )
    }
}
