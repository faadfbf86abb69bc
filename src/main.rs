//! The `faultline` command line (SPEC 5). Parsing and exit codes only; the
//! work is in the library. Exit codes: 0 ok, 2 usage or configuration
//! error, 1 other failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use faultline::baseline::tuned;
use faultline::config::Config;
use faultline::sources::file::{CsvOptions, DeviceFrom};

#[derive(Parser)]
#[command(
    name = "faultline",
    version,
    about = "Predictive maintenance for factory hosts: event-time windows over sensor streams, ONNX fault models, alerts."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run a self-contained demo: bundled model and sample data, dashboard on 127.0.0.1:8080.
    Demo {
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// Parse and validate a configuration file; list every problem with its key (exit 2).
    CheckConfig {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Compute window features offline from a CSV, with the daemon's own code.
    Features(Box<FeaturesArgs>),
    /// Check or use a model package.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Publish a data set as sensor readings over MQTT or Kafka.
    Replay(Box<ReplayArgs>),
    /// Evaluate the per-device baseline on a labelled data set (SKAB's leaderboard protocol).
    Evaluate(Box<EvaluateArgs>),
    /// Make entries for [http.auth]: password hashes and API tokens.
    #[command(subcommand)]
    Auth(AuthCommand),
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Read a password from standard input (first line) and print its argon2id hash for `password_hash`.
    HashPassword,
    /// Print a new random API token, and the [[http.auth.token]] entry (its SHA-256) for the configuration.
    NewToken {
        /// Who will use the token.
        #[arg(long, default_value = "api")]
        name: String,
        /// viewer (read only) or operator.
        #[arg(long, default_value = "viewer")]
        role: String,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Load a package with tract; print its inputs, outputs and a test inference.
    Check {
        /// Package directory (model.toml + model.onnx).
        dir: PathBuf,
    },
    /// Score a features CSV (as `faultline features` writes it) exactly as the daemon would.
    Score {
        /// Package directory (model.toml + model.onnx).
        dir: PathBuf,
        #[arg(long, value_name = "FEATURES.csv")]
        input: PathBuf,
        /// Output CSV (`-` for standard output): device_id,window_start,window_end,probability.
        #[arg(long, value_name = "CSV")]
        output: PathBuf,
    },
}

#[derive(clap::Args)]
struct EvaluateArgs {
    /// The data set's folder (for SKAB, the one holding valve1/, valve2/ and other/).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// The evaluation protocol: only "skab" so far.
    #[arg(long, default_value = "skab")]
    protocol: String,
    /// Window size.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    window: std::time::Duration,
    /// Statistics of every signal the baseline learns, comma-separated (see "Windows").
    #[arg(long, value_name = "STATS", default_value = "mean", value_delimiter = ',')]
    stats: Vec<String>,
    /// Warm-up windows before the baseline is fitted (40 of 10 s: SKAB's 400 training rows).
    #[arg(long, value_name = "N", default_value_t = tuned::WARMUP_WINDOWS)]
    warmup: usize,
    /// Principal components for T².
    #[arg(long, value_name = "K", default_value_t = tuned::COMPONENTS)]
    components: usize,
    /// The warm-up scores' quantile the limits start from.
    #[arg(long, value_name = "Q", default_value_t = tuned::QUANTILE)]
    quantile: f64,
    /// T²'s limit is its quantile times this.
    #[arg(long, value_name = "M", default_value_t = tuned::T2_MARGIN)]
    t2_margin: f64,
    /// Q's limit is its quantile times this.
    #[arg(long, value_name = "M", default_value_t = tuned::Q_MARGIN)]
    q_margin: f64,
    /// Slow adaptation: after a window judged normal, the baseline's mean moves this share towards it (0: off).
    #[arg(long, value_name = "RATE", default_value_t = tuned::ADAPT_RATE)]
    adapt_rate: f64,
    /// A window is judged normal, for adaptation, below this share of its limits.
    #[arg(long, value_name = "RATIO", default_value_t = tuned::ADAPT_BELOW)]
    adapt_below: f64,
    /// Also print one line per file.
    #[arg(long)]
    per_file: bool,
}

#[derive(clap::Args)]
struct FeaturesArgs {
    /// Input CSV file.
    #[arg(long, value_name = "CSV")]
    input: PathBuf,
    /// Output CSV file (`-` for standard output).
    #[arg(long, value_name = "CSV")]
    output: PathBuf,
    /// Window size, like "1m" or "5m" (default: window.size of --config).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    window: Option<std::time::Duration>,
    #[command(flatten)]
    csv: CsvArgs,
    /// Label column; the output gets its maximum over each window.
    #[arg(long, value_name = "C")]
    label_column: Option<String>,
    /// Take [window] and [cleaning] from this daemon configuration, so features match what it computes.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Out-of-orderness bound (default: 0s, or window.max_out_of_orderness of --config).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    max_out_of_orderness: Option<std::time::Duration>,
    /// Allowed lateness (default: 0s, or window.allowed_lateness of --config).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    allowed_lateness: Option<std::time::Duration>,
}

/// How to read an input CSV: shared by `features` and `replay`.
#[derive(clap::Args)]
struct CsvArgs {
    /// Time column: RFC 3339 (no offset = UTC) or epoch milliseconds [default: the first column].
    #[arg(long, value_name = "C")]
    time_column: Option<String>,
    /// Device id for every row [default: the input file's stem].
    #[arg(long, value_name = "ID", conflicts_with = "device_column")]
    device: Option<String>,
    /// Column holding each row's device id.
    #[arg(long, value_name = "C")]
    device_column: Option<String>,
    /// Field delimiter, one character.
    #[arg(long, default_value = ",", value_parser = parse_delimiter)]
    delimiter: u8,
    /// Signal columns, comma separated, in output order [default: every numeric column but time, device and label].
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    signals: Option<Vec<String>>,
}

impl CsvArgs {
    fn options(self, input: &Path, label_column: Option<String>) -> CsvOptions {
        let device = match (self.device, self.device_column) {
            (_, Some(c)) => DeviceFrom::Column(c),
            (Some(d), None) => DeviceFrom::Fixed(d),
            (None, None) => DeviceFrom::Fixed(
                input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "device".into()),
            ),
        };
        CsvOptions {
            time_column: self.time_column,
            device,
            delimiter: self.delimiter,
            signals: self.signals,
            label_column,
        }
    }
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Input: CSV (read with the options below) or JSON lines (`.jsonl`, one reading or batch per line).
    /// With --devices: the CSV whose rows the synthetic devices replay (default: the bundled SKAB run).
    #[arg(long, value_name = "CSV|JSONL", required_unless_present = "devices")]
    input: Option<PathBuf>,
    /// Synthetic load: this many devices, each replaying the input's rows from its own starting row,
    /// one reading per device per --interval of event time (ids dev-00000, dev-00001, ...).
    #[arg(long, value_name = "N", help_heading = "Synthetic load")]
    devices: Option<u64>,
    /// With --devices: readings to send in all (default: 60 per device).
    #[arg(long, value_name = "N", requires = "devices", help_heading = "Synthetic load")]
    readings: Option<u64>,
    /// With --devices: readings per second in all (default: as fast as the broker confirms).
    #[arg(long, value_name = "R", requires = "devices", help_heading = "Synthetic load")]
    rate: Option<f64>,
    /// With --devices: event time between a device's readings. Longer than --devices / --rate
    /// seconds, event time runs faster than the clock (windows close sooner), ending about now.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration,
          requires = "devices", help_heading = "Synthetic load")]
    interval: std::time::Duration,
    /// With --devices: event time of the first round, in ms since the epoch (default: chosen so that
    /// the last round ends about now). A load resumed after a restart starts where the last one
    /// ended; ahead of the clock, the daemon's ingest.max_future must allow it.
    #[arg(long, value_name = "MS", requires = "devices", help_heading = "Synthetic load")]
    start: Option<i64>,
    #[command(flatten)]
    csv: CsvArgs,
    /// MQTT broker, mqtt://host:port (QoS 1).
    #[arg(long, value_name = "URL", conflicts_with = "kafka", required_unless_present = "kafka")]
    mqtt: Option<String>,
    /// Kafka bootstrap brokers, host:port[,host:port].
    #[arg(long, value_name = "BROKERS")]
    kafka: Option<String>,
    /// Topic; may contain {device_id}.
    #[arg(long, value_name = "T")]
    topic: String,
    /// Pace: X times real time by the file's event times, or max.
    #[arg(long, value_name = "X|max", default_value = "max", value_parser = parse_speed)]
    speed: faultline::replay::Speed,
    /// Readings per message (a JSON array when above 1).
    #[arg(long, value_name = "N", default_value_t = 1)]
    batch: usize,
    /// Leave device_id out of the payloads: the topic ({device_id}) or the Kafka key carries it.
    #[arg(long)]
    omit_device_id: bool,
    /// MQTT client id.
    #[arg(long, value_name = "ID", default_value = "faultline-replay")]
    client_id: String,
    /// MQTT username (password from FAULTLINE_MQTT_PASSWORD).
    #[arg(long, value_name = "NAME")]
    username: Option<String>,
}

fn parse_speed(s: &str) -> Result<faultline::replay::Speed, String> {
    s.parse()
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e}; write it like \"30s\" or \"5m\""))
}

fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ if s == "\\t" || s == "tab" => Ok(b'\t'),
        _ => Err("must be one ASCII character".to_owned()),
    }
}

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure { code: 1, error }
    }
}

fn usage(msg: impl Into<String>) -> Failure {
    Failure { code: 2, error: anyhow::anyhow!(msg.into()) }
}

fn hash_password() -> Result<(), Failure> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| usage(format!("cannot read standard input: {e}")))?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(usage(
            "no password on standard input (e.g. `read -rs P; echo \"$P\" | faultline auth hash-password`)",
        ));
    }
    let hash = faultline::http::auth::hash_password(password).map_err(|e| Failure::from(anyhow::anyhow!(e)))?;
    println!("{hash}");
    Ok(())
}

fn new_token(name: &str, role: &str) -> Result<(), Failure> {
    use faultline::http::auth;
    if !matches!(role, "viewer" | "operator") {
        return Err(usage(format!("--role {role:?}: use viewer or operator")));
    }
    let token = auth::random_token();
    println!("token (give it to the client; it is not stored): {token}");
    println!();
    println!("[[http.auth.token]]");
    println!("name = {name:?}");
    println!("role = {role:?}");
    println!("sha256 = \"{}\"", auth::hex(&auth::sha256(&token)));
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("faultline: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FAULTLINE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let json = std::env::var("FAULTLINE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // systemd sets JOURNAL_STREAM when stderr goes to the journal, which stamps lines itself.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi && !json);
    if json {
        fmt.json().init();
    } else if journal {
        fmt.without_time().init();
    } else {
        fmt.init();
    }
}

fn dispatch(cmd: Command) -> Result<(), Failure> {
    match cmd {
        Command::CheckConfig { config } => check_config(&config),
        Command::Features(args) => features(*args),
        Command::Model(ModelCommand::Check { dir }) => model_check(&dir),
        Command::Model(ModelCommand::Score { dir, input, output }) => model_score(&dir, &input, &output),
        Command::Run { config } => {
            let path = config;
            let config = load_config(&path)?;
            faultline::daemon::run(config, &path).map_err(Failure::from)
        }
        Command::Demo { listen } => faultline::demo::run(&listen).map_err(Failure::from),
        Command::Replay(args) => replay(*args),
        Command::Evaluate(args) => evaluate(*args),
        Command::Auth(AuthCommand::HashPassword) => hash_password(),
        Command::Auth(AuthCommand::NewToken { name, role }) => new_token(&name, &role),
    }
}

fn evaluate(a: EvaluateArgs) -> Result<(), Failure> {
    use faultline::baseline::{BaselineConfig, FitConfig};
    if a.protocol != "skab" {
        return Err(usage(format!("--protocol {:?}: only \"skab\" is known", a.protocol)));
    }
    for s in &a.stats {
        if !faultline::window::STAT_NAMES.contains(&s.as_str()) {
            return Err(usage(format!("--stats: {s:?} is not one of {}", faultline::window::STAT_NAMES.join(", "))));
        }
    }
    let margin_ok = |m: f64| m > 0.0 && m.is_finite();
    if !(a.quantile > 0.0 && a.quantile <= 1.0 && margin_ok(a.t2_margin) && margin_ok(a.q_margin)) {
        return Err(usage("--quantile must be in (0, 1], and the margins above 0".to_owned()));
    }
    let size_ms = i64::try_from(a.window.as_millis()).unwrap_or(i64::MAX);
    if size_ms < 1 {
        return Err(usage("--window must be at least 1ms".to_owned()));
    }
    let features: Vec<String> = faultline::evaluate::SKAB_SIGNALS
        .iter()
        .flat_map(|sig| a.stats.iter().map(move |st| format!("{sig}.{st}")))
        .collect();
    if a.components == 0 || a.components > features.len() {
        return Err(usage(format!("--components must be between 1 and the {} features", features.len())));
    }
    let baseline = BaselineConfig {
        features,
        warmup_windows: a.warmup,
        fit: FitConfig { components: a.components, quantile: a.quantile, t2_margin: a.t2_margin, q_margin: a.q_margin },
        adapt_rate: a.adapt_rate,
        adapt_below: a.adapt_below,
    };
    if !((0.0..=1.0).contains(&a.adapt_rate) && a.adapt_below >= 0.0 && a.adapt_below.is_finite()) {
        return Err(usage("--adapt-rate must be in [0, 1] and --adapt-below at least 0".to_owned()));
    }
    if a.warmup < baseline.min_warmup() {
        return Err(usage(format!("--warmup must be at least {} windows", baseline.min_warmup())));
    }
    let window = faultline::window::WindowSpec {
        size_ms,
        max_out_of_orderness_ms: 0,
        allowed_lateness_ms: 0,
        idle_timeout_ms: i64::MAX,
    };
    let results = faultline::evaluate::evaluate_skab(&a.data, window, &baseline)
        .map_err(|e| Failure { code: 1, error: anyhow::Error::new(e).context("evaluate") })?;
    let adapt = if a.adapt_rate > 0.0 {
        format!("; the mean adapts at {} per window below {} of the limits", a.adapt_rate, a.adapt_below)
    } else {
        String::new()
    };
    println!(
        "SKAB, per-device baseline: {} windows, {} of every signal, warm-up {} windows, {} component(s), limits: warm-up {} quantile x {} (T²), x {} (Q){adapt}",
        humantime::format_duration(a.window),
        a.stats.join("+"),
        a.warmup,
        a.components,
        a.quantile,
        a.t2_margin,
        a.q_margin
    );
    if a.per_file {
        for r in &results {
            let c = &r.counts;
            println!(
                "{:<18} F1 {:.3} FAR {:5.1} % MAR {:5.1} % delay {}",
                r.device,
                c.f1(),
                100.0 * c.far(),
                100.0 * c.mar(),
                r.delay_ms.map_or("-".to_owned(), |d| format!("{} s", d / 1000))
            );
        }
    }
    print!("{}", faultline::evaluate::report(&results));
    Ok(())
}

fn load_config(path: &Path) -> Result<Config, Failure> {
    Config::from_file(path).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
        usage(format!("{}: {} problem(s)\n{}", path.display(), problems.len(), list.join("\n")))
    })
}

fn check_config(path: &Path) -> Result<(), Failure> {
    load_config(path)?;
    println!("{}: ok", path.display());
    Ok(())
}

fn model_check(dir: &Path) -> Result<(), Failure> {
    let m = faultline::model::Model::load(dir).map_err(|e| Failure { code: 1, error: e.into() })?;
    let p = &m.package;
    let (columns, column) = m.output_columns();
    let features: Vec<&str> = p.features.iter().map(|f| f.name.as_str()).collect();
    println!("package    {} version {} ({})", p.name, p.version, dir.display());
    println!("input      {:?} float32 [batch, {}]", p.input, m.width());
    println!("features   {}", features.join(", "));
    println!("output     {:?} [batch, {columns}], column {column}, {:?}", p.output, p.kind);
    match p.threshold {
        Some(t) => println!("threshold  {t}"),
        None => println!("threshold  (none; set alerts.threshold in the config)"),
    }
    if let Some(t) = &p.training {
        let keys: Vec<&str> = t.keys().map(String::as_str).collect();
        println!("training   {}", keys.join(", "));
    }
    let score = m.test_score().map_err(|e| Failure { code: 1, error: e.into() })?;
    println!("test       {score} (from {})", m.test_row_source());
    Ok(())
}

fn model_score(dir: &Path, input: &Path, output: &Path) -> Result<(), Failure> {
    let m = faultline::model::Model::load(dir).map_err(|e| Failure { code: 1, error: e.into() })?;
    let n = if output.as_os_str() == "-" {
        let stdout = std::io::stdout();
        faultline::model::score::score_csv(&m, input, &mut stdout.lock())
    } else {
        let file = std::fs::File::create(output).with_context(|| format!("cannot create {}", output.display()))?;
        let mut buf = std::io::BufWriter::new(file);
        faultline::model::score::score_csv(&m, input, &mut buf).and_then(|n| Ok(buf.flush().map(|()| n)?))
    }
    .context("model score")?;
    eprintln!("faultline model score: {n} rows scored by {} version {}", m.package.name, m.package.version);
    Ok(())
}

fn features(a: FeaturesArgs) -> Result<(), Failure> {
    let config = a.config.as_deref().map(load_config).transpose()?;
    let size = a
        .window
        .or(config.as_ref().map(|c| c.window.size))
        .ok_or_else(|| usage("--window is required (or --config with a [window] size)"))?;
    if size.as_millis() == 0 {
        return Err(usage("--window must be at least 1ms"));
    }
    let ms = faultline::config::millis;
    let spec = faultline::window::WindowSpec {
        size_ms: ms(size),
        max_out_of_orderness_ms: ms(a
            .max_out_of_orderness
            .or(config.as_ref().map(|c| c.window.max_out_of_orderness))
            .unwrap_or_default()),
        allowed_lateness_ms: ms(a
            .allowed_lateness
            .or(config.as_ref().map(|c| c.window.allowed_lateness))
            .unwrap_or_default()),
        idle_timeout_ms: i64::MAX,
    };
    let cleaning = config.as_ref().map(|c| c.cleaning.cleaning()).unwrap_or_default();
    let csv = a.csv.options(&a.input, a.label_column);
    let summary = if a.output.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        faultline::features::run(&a.input, &csv, spec, cleaning, &mut lock, "standard output")
    } else {
        // Write beside the target and rename, so a failed run leaves no half file.
        let tmp = a.output.with_extension("partial");
        let file = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut buf = std::io::BufWriter::new(file);
        let name = a.output.display().to_string();
        let r = faultline::features::run(&a.input, &csv, spec, cleaning, &mut buf, &name);
        let r = r.and_then(|s| {
            buf.flush().map_err(|source| faultline::features::FeaturesError::Output { name, source })?;
            Ok(s)
        });
        match r {
            Ok(s) => {
                std::fs::rename(&tmp, &a.output).with_context(|| format!("cannot write {}", a.output.display()))?;
                Ok(s)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
    .context("features")?;
    eprintln!(
        "faultline features: {} rows, {} windows, {} late rows left out, {} non-finite cells, {} values outside cleaning rules",
        summary.rows, summary.windows, summary.late_rows, summary.non_finite_cells, summary.cleaned_values
    );
    Ok(())
}

fn replay(a: ReplayArgs) -> Result<(), Failure> {
    use faultline::replay::{Options, Target};
    if a.batch == 0 {
        return Err(usage("--batch must be at least 1"));
    }
    let target = match (a.mqtt, a.kafka) {
        (Some(url), _) => {
            if faultline::daemon::mqtt::host_port(&url).is_none() {
                return Err(usage(format!("--mqtt {url:?}: write it like mqtt://127.0.0.1:1883")));
            }
            Target::Mqtt {
                url,
                client_id: a.client_id,
                username: a.username,
                password: std::env::var("FAULTLINE_MQTT_PASSWORD").ok(),
            }
        }
        (None, Some(brokers)) => Target::Kafka { brokers },
        (None, None) => return Err(usage("say where to publish: --mqtt URL or --kafka BROKERS")),
    };
    let opts = Options { target, topic: a.topic, speed: a.speed, batch: a.batch, omit_device: a.omit_device_id };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("tokio")?;
    let started = std::time::Instant::now();
    let s = match (a.devices, &a.input) {
        (None, None) => return Err(usage("say what to send: --input FILE or --devices N")),
        (None, Some(input)) => {
            let csv = a.csv.options(input, None);
            rt.block_on(faultline::replay::run(input, &csv, &opts)).context("replay")?
        }
        (Some(devices), input) => {
            if devices == 0 {
                return Err(usage("--devices must be at least 1"));
            }
            if a.omit_device_id {
                return Err(usage("--omit-device-id: synthetic readings always carry their device id"));
            }
            if a.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
                return Err(usage("--rate must be a positive number of readings per second"));
            }
            let interval = i64::try_from(a.interval.as_millis()).unwrap_or(i64::MAX).max(1);
            let plant = match input {
                Some(input) => faultline::synth::Plant::from_csv(input, &a.csv.options(input, None), devices, interval)
                    .context("replay")?,
                None => faultline::synth::Plant::bundled(devices, interval)
                    .map_err(|e| Failure::from(anyhow::anyhow!(e)))?,
            };
            let readings = a.readings.unwrap_or(devices.saturating_mul(60));
            // Event times end about now when sent at full speed; when paced
            // they start now, or earlier when they run ahead of the pacing
            // (an --interval longer than --devices / --rate seconds) so that
            // they end about now: none is refused as too far in the future.
            let rounds = readings.div_ceil(devices) as i64;
            let now = faultline::time::now_ms();
            let span = rounds.saturating_mul(interval);
            let t0 = match (a.start, a.rate) {
                (Some(t0), _) => t0,
                (None, Some(rate)) => now - span.saturating_sub((readings as f64 / rate * 1000.0) as i64).max(0),
                (None, None) => now - span,
            };
            let plant = plant.starting_at(t0);
            rt.block_on(faultline::replay::run_synthetic(&plant, readings, a.rate, &opts)).context("replay")?
        }
    };
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "faultline replay: {} readings in {} messages, all confirmed, in {secs:.2} s ({:.0} readings/s)",
        s.readings,
        s.messages,
        s.readings as f64 / secs.max(1e-9)
    );
    Ok(())
}
