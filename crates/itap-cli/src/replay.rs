//! `itap replay`: play a telemetry CSV into an MQTT broker, one message per row.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use itap::ParamGuard;
use itap::validate::Policy;
use itap_live::{CheckedReplay, Pace, ReplayParams, ReplayProgress};

use crate::config::{ColumnFlags, Config, SignalsFlag};
use crate::fmt::thousands;
use crate::{ConfigArg, Output};

/// Flags of `itap replay`.
#[derive(Debug, Args)]
#[command(after_help = "\
Reads the CSV and validates it as `itap validate` does (a file with error rows
is refused unless --policy quarantine sets them aside), then publishes every row
as one JSON message on {topic-prefix}/{device}, QoS 1, in time order (rows with
the same timestamp in file order):

  {\"ts\":\"2026-01-01T00:00:10Z\",\"device\":\"DEV-0001\",\"state\":\"RUN\",
   \"signals\":{\"temp_c\":55.1,\"vibration_g\":null,...},\"error_code\":0}

(`label` is added on rows with a fault tag when the file has a tag column; a
missing value is null). The wire format and the checks a receiver applies are
in docs/live.md.

Pace: --speed X plays the data's own timing X times faster (--speed 60 plays an
hour in a minute, --speed 1 in real time); --rate N publishes N messages per
second; --rate 0 (the default) as fast as the broker acknowledges them. The
command ends once the broker has acknowledged every message, and prints how many,
in how long, at what rate.

Exit status: 0 every message acknowledged, 1 the input was refused by
validation (nothing published), 2 usage, I/O or broker error (the message says
how many messages the broker had acknowledged).

Examples:
  itap replay data/raw/telemetry.csv --mqtt mqtt://127.0.0.1:1883
  itap replay data/raw/telemetry.csv --mqtt mqtt://127.0.0.1:1883 --speed 60
  itap replay export.csv --mqtt mqtt://broker.plant:1883 --topic-prefix plant/north --rate 500")]
pub(crate) struct ReplayArgs {
    /// The telemetry CSV to play.
    input: PathBuf,

    /// The broker: `mqtt://[USER[:PASSWORD]@]HOST[:PORT]` (plain TCP; port 1883 by
    /// default).
    #[arg(long, value_name = "URL")]
    mqtt: String,

    /// Messages go to PREFIX/DEVICE.
    #[arg(long, value_name = "PREFIX", default_value = itap_live::DEFAULT_TOPIC_PREFIX)]
    topic_prefix: String,

    /// Play the data's own timing X times faster (60 = an hour a minute).
    #[arg(long, value_name = "X", conflicts_with = "rate")]
    speed: Option<f64>,

    /// Publish N messages per second; 0 = as fast as the broker takes them
    /// [default: 0].
    #[arg(long, value_name = "N")]
    rate: Option<f64>,

    /// The MQTT client id [default: itap-replay-PID-N, unique to this run].
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,

    #[command(flatten)]
    config: ConfigArg,

    #[command(flatten)]
    columns: ColumnFlags,

    #[command(flatten)]
    signals: SignalsFlag,

    /// reject (a file with error rows is refused, nothing published) or
    /// quarantine (its error rows are set aside into --quarantine and the rest is
    /// played) [config: validation.policy, default reject].
    #[arg(long, value_name = "POLICY")]
    policy: Option<Policy>,

    /// Where rows set aside go (CSV, their reasons first); implies --policy
    /// quarantine unless --policy says otherwise [default: quarantine.csv in
    /// output.dir].
    #[arg(long, value_name = "PATH")]
    quarantine: Option<PathBuf>,
}

impl ReplayArgs {
    /// The checked replay parameters from the flags.
    fn params(&self) -> Result<CheckedReplay> {
        let pace = match (self.speed, self.rate) {
            (Some(s), _) => Pace::Speed(s),
            (None, Some(r)) => Pace::Rate(r),
            (None, None) => Pace::default(),
        };
        let params = ReplayParams::default()
            .url(self.mqtt.clone())
            .topic_prefix(self.topic_prefix.clone())
            .pace(pace)
            .client_id(self.client_id.clone());
        // Parameters are named as the flags that set them.
        params.check().map_err(|e| match e {
            itap_live::Error::InvalidParam(p) => {
                let flag = match p.name.as_str() {
                    "pace.speed" => "--speed",
                    "pace.rate" => "--rate",
                    "topic_prefix" => "--topic-prefix",
                    "client_id" => "--client-id",
                    _ => "",
                };
                if flag.is_empty() {
                    anyhow::Error::new(itap_live::Error::InvalidParam(p))
                } else {
                    anyhow::anyhow!("invalid {flag}: {}", p.reason)
                }
            }
            other => anyhow::Error::new(other),
        })
    }
}

pub(crate) fn run(args: &ReplayArgs, out: Output) -> Result<ExitCode> {
    let params = args.params()?;
    let config = Config::load(args.config.config.as_deref())?;
    let opts = args.columns.apply(config.read_options()?);
    let policy = args
        .policy
        .or(args.quarantine.as_ref().map(|_| Policy::Quarantine));
    let validation = config.validation_params(policy, &args.signals)?;
    let quarantine = (validation.params().policy == Policy::Quarantine).then(|| {
        args.quarantine
            .clone()
            .unwrap_or_else(|| config.output.dir.join(itap::QUARANTINE_FILE))
    });

    let progress = if out.quiet {
        ProgressBar::hidden()
    } else {
        // indicatif draws only when stderr is a terminal.
        ProgressBar::new_spinner()
    };
    progress.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .expect("static template is valid"),
    );
    progress.enable_steady_tick(Duration::from_millis(120));
    progress.set_message(format!("reading and validating {}", args.input.display()));
    let read = itap::read_validated(&args.input, &opts, &validation, quarantine.as_deref());
    let (valid, report) = match read {
        Ok(r) => r,
        Err(e @ itap::Error::Refused { .. }) => {
            progress.finish_and_clear();
            crate::data::print_refusal(&e);
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            progress.finish_and_clear();
            return Err(e).with_context(|| format!("cannot read {}", args.input.display()));
        }
    };
    let batch = valid.into_inner();
    let set_aside = report.rows - report.rows_accepted;

    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{elapsed}] {wide_bar} {pos}/{len} acknowledged ({per_sec})",
        )
        .expect("static template is valid"),
    );
    progress.set_length(batch.len() as u64);
    progress.set_message(format!(
        "publishing to {} as {}",
        params.broker(),
        params.client_id()
    ));
    let on_progress = |p: ReplayProgress| progress.set_position(p.acknowledged);
    let summary = crate::data::runtime()?
        .block_on(itap_live::replay(&batch, &params, on_progress))
        .with_context(|| format!("cannot replay {}", args.input.display()))?;
    progress.finish_and_clear();

    if !out.quiet {
        if let (Some(q), true) = (&quarantine, set_aside > 0) {
            println!(
                "set aside {} rows with errors (quarantine policy) → {}",
                thousands(set_aside),
                q.display()
            );
        }
        println!(
            "replayed {} messages from {} devices to {}/… on {} in {:.2} s ({} messages/s)",
            thousands(summary.messages),
            summary.devices,
            params.params().topic_prefix,
            params.broker(),
            summary.seconds,
            thousands(summary.rate().round() as u64),
        );
    }
    Ok(ExitCode::SUCCESS)
}
