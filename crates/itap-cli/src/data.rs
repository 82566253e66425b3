//! Where `itap train` and `itap score` read telemetry from: a CSV (validated in
//! memory) or a dataset in the database.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use itap::eval::InputDigest;
use itap::telemetry::Batch;
use itap::validate::Policy;

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

    /// With --input: reject (a file with error rows is refused) or quarantine (its
    /// error rows are set aside into the --quarantine file and the command goes on
    /// with the rest) [config: validation.policy, default reject]. Rows from the
    /// database were validated when they were stored.
    #[arg(long, value_name = "POLICY")]
    pub(crate) policy: Option<Policy>,

    /// With --input: where the rows set aside go (CSV, their reasons first);
    /// implies --policy quarantine unless --policy says otherwise [default:
    /// quarantine.csv next to the command's output].
    #[arg(long, value_name = "PATH", requires = "input")]
    pub(crate) quarantine: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) db: DbArgs,
}

/// Telemetry loaded for a command, and how to name it in metrics.json.
pub(crate) struct Loaded {
    pub(crate) batch: Batch,
    pub(crate) input: InputDigest,
    /// Under the quarantine policy: the rows set aside and the file they went to.
    pub(crate) quarantined: Option<(u64, PathBuf)>,
}

impl Loaded {
    /// Says how many rows were set aside, and where, under the quarantine policy.
    pub(crate) fn print_quarantined(&self) {
        if let Some((rows, path)) = &self.quarantined {
            println!(
                "  set aside      {} rows with errors (quarantine policy) → {}",
                crate::fmt::thousands(*rows),
                path.display()
            );
        }
    }
}

/// Prints why validation refused an input (`e` is [`itap::Error::Refused`]) and
/// what to do: see the report, check the columns, or set the error rows aside.
pub(crate) fn print_refusal(e: &itap::Error) {
    let itap::Error::Refused { path, report, .. } = e else {
        eprintln!("refused: {e}");
        return;
    };
    let mut msg = format!(
        "refused: {e}; `itap validate {path}` gives the full report and `itap inspect {path}` shows how its columns were understood"
    );
    if let Some(h) = crate::hint::for_refusal(report) {
        msg.push_str("; ");
        msg.push_str(&h);
    }
    eprintln!("{msg}");
}

/// Loads the telemetry, or says why it was refused (exit status 1). With
/// `--input` under the quarantine policy the rows set aside go to
/// `--quarantine`, else to `default_quarantine`.
pub(crate) fn load(
    args: &DataArgs,
    config: &Config,
    default_quarantine: &Path,
) -> Result<Result<Loaded, ExitCode>> {
    if let Some(path) = &args.input {
        let opts = args.columns.apply(config.read_options()?);
        let policy = args
            .policy
            .or(args.quarantine.as_ref().map(|_| Policy::Quarantine));
        let validation = config.validation_params(policy, &args.signals)?;
        let quarantine = (validation.params().policy == Policy::Quarantine).then(|| {
            args.quarantine
                .clone()
                .unwrap_or_else(|| default_quarantine.to_path_buf())
        });
        return match itap::read_validated(path, &opts, &validation, quarantine.as_deref()) {
            Ok((valid, report)) => Ok(Ok(Loaded {
                batch: valid.into_inner(),
                quarantined: quarantine.map(|q| (report.rows - report.rows_accepted, q)),
                input: InputDigest {
                    path: path.display().to_string(),
                    sha256: report.input.sha256,
                },
            })),
            Err(e @ itap::Error::Refused { .. }) => {
                print_refusal(&e);
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
        quarantined: None,
    }))
}

/// The async runtime the store runs on.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    itap::store_runtime().context("cannot start the async runtime")
}

/// The stored dataset to read a group of devices at a time: when there is no
/// --input, `[model] group_rows` is not 0 and the dataset has more rows. With
/// it, how to name it in metrics.json.
pub(crate) fn in_groups(
    args: &DataArgs,
    config: &Config,
) -> Result<Option<(itap::StoreGroups, String)>> {
    let limit = config.model.group_rows;
    if args.input.is_some() || limit == 0 {
        return Ok(None);
    }
    let settings = config.store_settings(&args.db, None, None)?;
    let groups = itap::StoreGroups::open(&settings).with_context(|| {
        format!(
            "cannot open dataset `{}` in {}",
            settings.dataset, settings.url
        )
    })?;
    let rows: u64 = itap::DeviceGroups::devices(&groups)
        .iter()
        .map(|d| d.1)
        .sum();
    if rows > limit {
        let input = format!("{} (dataset `{}`)", settings.url, settings.dataset);
        Ok(Some((groups, input)))
    } else {
        groups.close();
        Ok(None)
    }
}

/// A progress bar of the devices of `groups` done, "`doing` N rows a group of
/// devices at a time" (drawn only when stderr is a terminal and not --quiet).
pub(crate) fn group_bar(
    groups: &itap::StoreGroups,
    doing: &str,
    out: crate::Output,
) -> indicatif::ProgressBar {
    use itap::DeviceGroups;
    let rows: u64 = groups.devices().iter().map(|d| d.1).sum();
    let devices = groups.devices().len();
    let bar = if out.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        // indicatif draws only when stderr is a terminal.
        indicatif::ProgressBar::new(devices as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {bar:20} {human_pos}/{human_len} devices [{elapsed} < {eta}]",
        )
        .expect("static template is valid"),
    );
    bar.set_message(format!(
        "{doing} {} rows a group of devices at a time",
        crate::fmt::thousands(rows)
    ));
    bar
}
