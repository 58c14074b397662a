//! The `schoolgate` binary: command line, configuration loading, wiring, shutdown.
//! Everything it runs lives in the library crates; this file only assembles them.

mod check;
mod config_cmd;
mod load;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// schoolgate: the network filter and monitor for schools and trusts.
#[derive(Debug, Parser)]
#[command(name = "schoolgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the filter: DNS, proxy, dashboard and the event pipeline.
    Run {
        #[arg(long, short, env = "SCHOOLGATE_CONFIG", default_value = load::DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// The event store.
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
    /// Check a configuration file and summarise it.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Show the verdict for URLs or hosts, as the filter would decide them.
    Check(check::CheckArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Validate the file, load every list, and print a summary.
    Check {
        #[arg(long, short, env = "SCHOOLGATE_CONFIG", default_value = load::DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum DbAction {
    /// Create or upgrade the ClickHouse schema (the embedded store migrates itself).
    Migrate {
        #[arg(long, short, env = "SCHOOLGATE_CONFIG", default_value = load::DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => {
            init_logging();
            runtime().and_then(|rt| rt.block_on(run::run(&config)).map(|()| ExitCode::SUCCESS))
        }
        Command::Db {
            action: DbAction::Migrate { config },
        } => runtime().and_then(|rt| rt.block_on(db_migrate(&config))),
        Command::Config {
            action: ConfigAction::Check { config },
        } => config_cmd::check(&config),
        Command::Check(args) => check::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("schoolgate: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn db_migrate(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = load::read_config(path)?;
    let Some(ch) = &config.store.clickhouse else {
        println!("[store] has no ClickHouse section: the embedded store migrates itself on start");
        return Ok(ExitCode::SUCCESS);
    };
    let store = schoolgate_events::ClickhouseStore::new(ch, config.store.retention.clone());
    let report = store.migrate().await?;
    println!("{report:#?}");
    Ok(ExitCode::SUCCESS)
}
