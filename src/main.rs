//! The `schoolgate` binary: command line, configuration loading, wiring, shutdown.
//! Everything it runs lives in the library crates; this file only assembles them.

mod alerts;
mod check;
mod config_cmd;
mod load;
mod memory;
mod proxy_user;
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
    /// Dashboard accounts.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Proxy authentication: the users file (`[proxy] users_file`).
    ProxyUser {
        #[command(subcommand)]
        action: ProxyUserAction,
    },
    /// Reports for the headteacher and governors.
    Report {
        #[command(subcommand)]
        action: ReportAction,
    },
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
enum UserAction {
    /// Create a dashboard account (or reset its password). The password is read
    /// from standard input (prompted for on a terminal).
    Add {
        name: String,
        /// network-manager, esafety-lead, headteacher or viewer.
        #[arg(long)]
        role: String,
        #[arg(long, short, env = "SCHOOLGATE_CONFIG", default_value = load::DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ProxyUserAction {
    /// Add a person who may sign in to the proxy (or set a new password or
    /// role). The password is read from standard input (prompted for on a
    /// terminal) and stored only as an argon2 hash.
    Add {
        name: String,
        /// A role of the configuration, e.g. pupil or staff.
        #[arg(long)]
        role: String,
        #[arg(long, short, env = "SCHOOLGATE_CONFIG", default_value = load::DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Add or update many people from a CSV export (e.g. from the MIS) with a
    /// header row naming the columns `name`, `role` and `password`; other
    /// columns are ignored. Nothing is written unless every row is valid.
    Import {
        csv: PathBuf,
        #[arg(long, short, env = "SCHOOLGATE_CONFIG", default_value = load::DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Everyone in the users file with their role, by name (`--role` for one).
    List {
        #[arg(long)]
        role: Option<String>,
        #[arg(long, short, env = "SCHOOLGATE_CONFIG", default_value = load::DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Remove a person from the users file.
    Remove {
        name: String,
        #[arg(long, short, env = "SCHOOLGATE_CONFIG", default_value = load::DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ReportAction {
    /// Build the weekly summary for an ISO week (e.g. 2026-W47).
    Weekly {
        #[arg(long)]
        week: String,
        /// One school of a trust (its id); default: the school, or the whole trust.
        #[arg(long)]
        school: Option<String>,
        /// Email it to the configured recipients.
        #[arg(long, conflicts_with = "out")]
        send: bool,
        /// Write the HTML page to this file.
        #[arg(long)]
        out: Option<PathBuf>,
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
        // Colour for a person at a terminal; plain text for the journal or a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => {
            init_logging();
            memory::fix_mmap_threshold();
            runtime().and_then(|rt| rt.block_on(run::run(&config)).map(|()| ExitCode::SUCCESS))
        }
        Command::Db {
            action: DbAction::Migrate { config },
        } => runtime().and_then(|rt| rt.block_on(db_migrate(&config))),
        Command::Config {
            action: ConfigAction::Check { config },
        } => config_cmd::check(&config),
        Command::Check(args) => check::run(&args),
        Command::User {
            action: UserAction::Add { name, role, config },
        } => user_add(&config, &name, &role),
        Command::ProxyUser { action } => {
            // argon2 takes 19 MiB a hash: mapped and returned each time, not
            // left as holes in the heap (200 MB a thread over an import).
            memory::fix_mmap_threshold();
            match action {
                ProxyUserAction::Add { name, role, config } => {
                    proxy_user::add(&config, &name, &role)
                }
                ProxyUserAction::Import { csv, config } => proxy_user::import(&config, &csv),
                ProxyUserAction::List { role, config } => {
                    proxy_user::list(&config, role.as_deref())
                }
                ProxyUserAction::Remove { name, config } => proxy_user::remove(&config, &name),
            }
        }
        Command::Report {
            action:
                ReportAction::Weekly {
                    week,
                    school,
                    send,
                    out,
                    config,
                },
        } => runtime().and_then(|rt| {
            rt.block_on(report_weekly(
                &config,
                &week,
                school.as_deref(),
                send,
                out.as_deref(),
            ))
        }),
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

/// The first `n` of `items` joined by `sep`, then how many more there are.
fn first_few(items: &[String], n: usize, sep: &str) -> String {
    let mut text = items.iter().take(n).cloned().collect::<Vec<_>>().join(sep);
    if items.len() > n {
        text.push_str(&format!("{sep}and {} more", items.len() - n));
    }
    text
}

/// A password from standard input: prompted for (not echoed) on a terminal,
/// else the first line.
fn read_password(name: &str) -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        Ok(rpassword::prompt_password(format!(
            "password for {name}: "
        ))?)
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\n', '\r']).to_owned())
    }
}

fn user_add(config: &std::path::Path, name: &str, role: &str) -> anyhow::Result<ExitCode> {
    let cfg = load::read_config(config)?;
    let role: schoolgate_dashboard::Role = role
        .parse()
        .map_err(|e| anyhow::anyhow!("--role {role}: {e}"))?;
    let password = read_password(name)?;
    if let Some(dir) = cfg.dashboard.state.parent() {
        std::fs::create_dir_all(dir)?;
    }
    schoolgate_dashboard::add_user(&cfg.dashboard.state, name, role, &password)?;
    println!(
        "user {name} ({role}) saved in {}",
        cfg.dashboard.state.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn report_weekly(
    config_path: &std::path::Path,
    week: &str,
    school: Option<&str>,
    send: bool,
    out: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let week: schoolgate_reports::IsoWeek = week
        .parse()
        .map_err(|e| anyhow::anyhow!("--week {week}: {e}"))?;
    let config = load::read_config(config_path)?;
    let (policy, _) = load::compile_config(config.clone(), config_path)?;
    let store = schoolgate_events::open_store(&config.store)?;
    let summary = schoolgate_reports::weekly_report(
        store.as_ref(),
        &config,
        &policy,
        week,
        school,
        out,
        send,
    )
    .await?;
    if out.is_none() && !send {
        println!("{}", schoolgate_reports::render_text(&summary));
    }
    Ok(ExitCode::SUCCESS)
}
