//! Where `itap train` and `itap score` read telemetry from: a CSV (validated in
//! memory) or a dataset in the database.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use itap::eval::InputDigest;
use itap::telemetry::Batch;

use crate::DbArgs;
use crate::config::{ColumnFlags, Config};

/// `--input CSV` or the database flags.
#[derive(Debug, Args)]
pub(crate) struct DataArgs {
    /// Read this telemetry CSV (validated first; a file validation rejects is
    /// refused) instead of a dataset in the database.
    #[arg(long, value_name = "CSV", conflicts_with_all = ["db", "dataset", "pg_schema"])]
    pub(crate) input: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) columns: ColumnFlags,

    #[command(flatten)]
    pub(crate) signals: crate::config::SignalsFlag,

    #[command(flatten)]
    pub(crate) db: DbArgs,
}

/// Telemetry loaded for a command, and how to name it in metrics.json.
pub(crate) struct Loaded {
    pub(crate) batch: Batch,
    pub(crate) input: InputDigest,
}

/// Loads the telemetry, or says why it was refused (exit status 1).
pub(crate) fn load(args: &DataArgs, config: &Config) -> Result<Result<Loaded, ExitCode>> {
    if let Some(path) = &args.input {
        let opts = args.columns.apply(config.read_options()?);
        let validation = config.validation_params(None, &args.signals)?;
        return match itap::read_validated(path, &opts, &validation) {
            Ok((valid, report)) => Ok(Ok(Loaded {
                batch: valid.into_inner(),
                input: InputDigest {
                    path: path.display().to_string(),
                    sha256: report.input.sha256,
                },
            })),
            Err(e @ itap::Error::Refused { .. }) => {
                eprintln!(
                    "refused: {e}; `itap validate {p}` gives the full report and `itap inspect {p}` shows how its columns were understood",
                    p = path.display()
                );
                Ok(Err(ExitCode::from(1)))
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
    }
    let settings = config.store_settings(&args.db, None, None)?;
    let runtime = runtime()?;
    let batch = runtime
        .block_on(itap::load_dataset(&settings))
        .with_context(|| {
            format!(
                "cannot load dataset `{}` from {}",
                settings.dataset, settings.url
            )
        })?;
    Ok(Ok(Loaded {
        batch,
        input: InputDigest {
            path: format!("{} (dataset `{}`)", settings.url, settings.dataset),
            sha256: None,
        },
    }))
}

/// The async runtime the store runs on.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    itap::store_runtime().context("cannot start the async runtime")
}
