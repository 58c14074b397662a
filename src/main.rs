//! The `schoolgate` binary: command line, configuration loading, wiring, shutdown.
//! Everything it runs lives in the library crates; this file only assembles them.

mod check;
mod config_cmd;
mod load;

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
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
