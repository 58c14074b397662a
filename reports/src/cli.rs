//! `schoolgate report weekly --week 2026-W47 [--school S] [--send|--out FILE.html]`.

use std::path::Path;

use jiff::Timestamp;
use schoolgate_classifier::{Config, Policy};
use schoolgate_events::EventStore;
use tokio_util::sync::CancellationToken;

use crate::ReportError;
use crate::mail::{Mailer, RetryPolicy, send_summary};
use crate::render::render_page;
use crate::summary::{Scope, WeekExtras, WeeklySummary, build_summary, recipients, scopes};
use crate::week::IsoWeek;

/// Builds one weekly summary on demand.
///
/// `school`: one school's summary; without it, the trust's (several schools) or
/// the only school's. `out`: writes the HTML page there. `send`: emails it to the
/// scope's recipients through `[reports.smtp]`, retrying for about a minute if the
/// server is down. Incidents, filter health and policy changes come from the
/// dashboard and are left out here. Returns the summary (the binary can print
/// [`crate::render_text`] of it).
pub async fn weekly_report(
    store: &dyn EventStore,
    config: &Config,
    policy: &Policy,
    week: IsoWeek,
    school: Option<&str>,
    out: Option<&Path>,
    send: bool,
) -> Result<WeeklySummary, ReportError> {
    let scope = match school {
        Some(id) => Scope::school(id),
        None if config.schools.len() > 1 => Scope::Trust,
        None => scopes(config)
            .into_iter()
            .next()
            .unwrap_or(Scope::school("")),
    };
    let summary = build_summary(
        store,
        policy,
        week,
        &scope,
        WeekExtras::default(),
        Timestamp::now(),
    )
    .await?;
    if let Some(path) = out {
        std::fs::write(path, render_page(&summary)).map_err(|source| ReportError::Write {
            path: path.to_owned(),
            source,
        })?;
    }
    if send {
        let smtp = config.reports.smtp.as_ref().ok_or(ReportError::NoSmtp)?;
        let to = recipients(config, &scope);
        if to.is_empty() {
            return Err(ReportError::NoRecipients(scope.key()));
        }
        let mailer = Mailer::new(smtp)?;
        send_summary(
            &mailer,
            &summary,
            &to,
            &RetryPolicy::command_line(),
            &CancellationToken::new(),
        )
        .await?;
    }
    Ok(summary)
}
