//! `loadtest` command line: drive a loopback URL (`run`) or measure it against the hello-world baseline (`compare`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};

use loadtest::baseline::{default_hello_path, BaselineServer};
use loadtest::load::{run_load, LoadOutcome, LoadPlan};
use loadtest::report::{CompareSummary, RunSummary};
use loadtest::target::{RequestSpec, Target};

/// Long enough for any benchmark, short enough that a typo cannot tie up the machine for a day.
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Exit status for failures of the tool itself, kept apart from 1 ("ratio below --min-ratio").
const EXIT_TOOL_ERROR: u8 = 2;

#[derive(Parser)]
#[command(
    name = "loadtest",
    version,
    about = "HTTP/1.1 keep-alive load generator for loopback servers, with a hello-world baseline comparison"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drive one URL and report throughput, latency percentiles and status classes.
    Run(RunArgs),
    /// Drive the hello baseline, the target, then the baseline again, and report target/baseline throughput.
    Compare(CompareArgs),
    /// Palisade's mixed traffic at a fraction of its measured capacity for a long run;
    /// exits 1 on any 5xx, transport error or lost write.
    Soak(SoakArgs),
}

#[derive(Args)]
struct SoakArgs {
    /// The server's base URL (http://127.0.0.1:PORT).
    #[arg(long)]
    url: String,
    /// Concurrent keep-alive connections.
    #[arg(short = 'c', long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// Seconds of the closed-loop capacity run before the soak.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_measured_secs)]
    capacity_secs: Duration,
    /// The fraction of the measured capacity to hold.
    #[arg(long, default_value_t = 0.7)]
    load: f64,
    /// A fixed rate (requests per second) instead of a fraction of the capacity.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of soak.
    #[arg(short = 'd', long = "duration", value_name = "SECS", default_value = "600", value_parser = parse_measured_secs)]
    duration: Duration,
    /// Seconds per reported window (throughput, p50/p99, 5xx, server RSS).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_measured_secs)]
    window: Duration,
    /// The server's process id, to sample its resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server's mail outbox (`<data_dir>/outbox`), where the verification links of
    /// the soak's accounts arrive.
    #[arg(long)]
    outbox: std::path::PathBuf,
    /// The app's service credential (`palisade services create`): adds the app's calls to
    /// the mix (the server needs the work-order manifest for the app's events).
    #[arg(long)]
    service_credential: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RunArgs {
    /// Loopback URL to load (http://127.0.0.1:PORT/PATH, [::1] or localhost).
    #[arg(long)]
    url: String,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args)]
struct CompareArgs {
    /// Loopback URL of the server under test.
    #[arg(long)]
    target_url: String,
    /// Baseline server binary [default: `hello` next to this executable].
    #[arg(long, env = "LOADTEST_HELLO_BIN")]
    hello_bin: Option<PathBuf>,
    /// Exit with status 1 if target req/s is below this percentage of baseline req/s.
    #[arg(long, value_name = "PCT")]
    min_ratio: Option<f64>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args)]
struct LoadArgs {
    /// Concurrent keep-alive connections, each sending requests back to back.
    #[arg(short = 'c', long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// Measured seconds per run (fractions allowed).
    #[arg(short = 'd', long = "duration", value_name = "SECS", default_value = "10", value_parser = parse_measured_secs)]
    duration: Duration,
    /// Seconds of load before measuring, whose results are discarded.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_warmup_secs)]
    warmup: Duration,
    /// Extra request header, repeatable.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    #[arg(long, default_value = "GET")]
    method: String,
    /// Request body, sent with a Content-Length.
    #[arg(long)]
    body: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

impl LoadArgs {
    fn plan(&self) -> LoadPlan {
        LoadPlan {
            connections: self.connections as usize,
            warmup: self.warmup,
            duration: self.duration,
        }
    }

    fn request_spec(&self) -> Result<RequestSpec> {
        RequestSpec::parse(&self.method, &self.headers, self.body.as_deref())
    }
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|duration| *duration <= MAX_DURATION)
        .ok_or_else(|| format!("{text} s is outside 0..={} s", MAX_DURATION.as_secs()))
}

fn parse_measured_secs(text: &str) -> Result<Duration, String> {
    let duration = parse_secs(text)?;
    if duration.is_zero() {
        return Err("the measured duration must be positive".to_owned());
    }
    Ok(duration)
}

fn parse_warmup_secs(text: &str) -> Result<Duration, String> {
    parse_secs(text)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(dispatch(cli)));
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("loadtest: error: {error:#}");
            ExitCode::from(EXIT_TOOL_ERROR)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run(args).await,
        Command::Compare(args) => compare(args).await,
        Command::Soak(args) => soak(args).await,
    }
}

async fn soak(args: SoakArgs) -> Result<ExitCode> {
    if !(args.load > 0.0 && args.load <= 1.0) {
        bail!("--load must be in (0, 1], got {}", args.load);
    }
    let plan = loadtest::soak::SoakPlan {
        connections: args.connections as usize,
        capacity_secs: args.capacity_secs,
        load: args.load,
        rate: args.rate,
        duration: args.duration,
        window: args.window,
        server_pid: args.server_pid,
        outbox: args.outbox,
        service: args.service_credential,
    };
    let report = loadtest::soak::run_soak(&args.url, &plan).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run(args: RunArgs) -> Result<ExitCode> {
    let spec = args.load.request_spec()?;
    let target = Arc::new(Target::resolve(&args.url, &spec).await?);
    let plan = args.load.plan();
    let outcome = run_load(target.clone(), &plan).await?;
    let summary = RunSummary::new(&target.url, spec.method.as_str(), &plan, &outcome);
    if args.load.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print!("{}", summary.to_text());
    }
    if summary.requests == 0 {
        bail!("no request completed; nothing was measured");
    }
    Ok(ExitCode::SUCCESS)
}

async fn compare(args: CompareArgs) -> Result<ExitCode> {
    if let Some(minimum) = args.min_ratio {
        if !minimum.is_finite() || minimum < 0.0 {
            bail!("--min-ratio must be a non-negative percentage, got {minimum}");
        }
    }
    let spec = args.load.request_spec()?;
    // Validated before the baseline starts, so a bad URL fails fast.
    let target = Arc::new(Target::resolve(&args.target_url, &spec).await?);
    let hello_bin = match args.hello_bin {
        Some(path) => path,
        None => default_hello_path()?,
    };
    let baseline_server = BaselineServer::spawn(&hello_bin)?;
    let baseline = Arc::new(Target::resolve(&baseline_server.url(), &spec).await?);
    let plan = args.load.plan();

    // Baseline on both sides of the target, so slow drift of the machine (thermal,
    // other tenants) affects baseline and target alike.
    let phases = [
        ("baseline 1/2", &baseline),
        ("target", &target),
        ("baseline 2/2", &baseline),
    ];
    let mut outcomes = Vec::with_capacity(phases.len());
    for (label, phase_target) in phases {
        eprintln!(
            "loadtest: {label}: {} for {:.1}+{:.1} s",
            phase_target.url,
            plan.warmup.as_secs_f64(),
            plan.duration.as_secs_f64()
        );
        outcomes.push(run_load(Arc::clone(phase_target), &plan).await?);
    }
    drop(baseline_server);

    let [first_baseline, target_outcome, second_baseline]: [LoadOutcome; 3] =
        outcomes
            .try_into()
            .map_err(|_| anyhow::anyhow!("expected three runs"))?;
    let method = spec.method.as_str();
    let first_summary = RunSummary::new(&baseline.url, method, &plan, &first_baseline);
    let second_summary = RunSummary::new(&baseline.url, method, &plan, &second_baseline);
    let mut pooled_baseline = first_baseline;
    pooled_baseline.merge(&second_baseline);
    let summary = CompareSummary::new(
        &plan,
        [&first_summary, &second_summary],
        RunSummary::new(&baseline.url, method, &plan, &pooled_baseline),
        RunSummary::new(&target.url, method, &plan, &target_outcome),
        args.min_ratio,
    );
    if args.load.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print!("{}", summary.to_text());
    }
    // A ratio against zero requests would be meaningless, so neither pass nor fail it.
    for side in [&summary.baseline, &summary.target] {
        if side.requests == 0 {
            bail!("no request to {} completed; nothing was measured", side.url);
        }
    }
    Ok(if summary.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
