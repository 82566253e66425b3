//! The time split: which rows are trained on and which are evaluated. One
//! definition, shared by training and scoring.

use std::path::Path;

use itap_eval::{CheckedEval, Split};
use itap_telemetry::{Batch, TimeZone, parse_timestamp};

use crate::error::{Error, Result};
use crate::model::ModelFile;

/// Splits a batch's time span by the evaluation's rule (a training fraction or an
/// explicit cut): training is every row before the cut.
///
/// # Errors
/// [`Error::NoData`] when the batch is empty; [`Error::Eval`] when the cut leaves a
/// side empty.
pub fn split_by_time(batch: &Batch, eval: &CheckedEval) -> Result<Split> {
    let (first, last) = batch
        .time_bounds()
        .ok_or_else(|| Error::NoData("the data set has no rows".to_owned()))?;
    Ok(eval.split(first, last)?)
}

/// The split a model was trained with, applied to `batch`: rows before the model's
/// cut are its training span, the rest are evaluated (all of them for data that
/// starts after the cut). `model_path` names the model in errors.
///
/// # Errors
/// [`Error::ModelFile`] when the model's training span cannot be read;
/// [`Error::NoData`] when the batch is empty.
pub fn split_at_model_cut(batch: &Batch, model: &ModelFile, model_path: &Path) -> Result<Split> {
    let (first, last) = batch
        .time_bounds()
        .ok_or_else(|| Error::NoData("the data set has no rows".to_owned()))?;
    split_for_bounds(first, last, model, model_path)
}

/// [`split_at_model_cut`] for data from `first` to `last` (UTC microseconds).
///
/// # Errors
/// [`Error::ModelFile`] when the model's training span cannot be read.
pub(crate) fn split_for_bounds(
    first: i64,
    last: i64,
    model: &ModelFile,
    model_path: &Path,
) -> Result<Split> {
    let parse = |t: &str| {
        parse_timestamp(t, TimeZone::default()).map_err(|e| Error::ModelFile {
            path: model_path.to_path_buf(),
            reason: format!("training span `{t}`: {e}"),
        })
    };
    let cut_us = parse(&model.training.until)?;
    let model_first = parse(&model.training.first)?;
    Ok(Split {
        first_us: first.min(model_first),
        last_us: last.max(cut_us),
        cut_us,
        fraction: None,
    })
}
