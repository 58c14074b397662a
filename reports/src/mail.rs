//! Mail out: the SMTP transport (`[reports.smtp]`: STARTTLS, auth; rustls, no
//! OpenSSL), the messages (the weekly summary as multipart/alternative with the
//! HTML in multipart/related beside its PNG charts; alerts as plain text), and a
//! retry policy for when the mail server is down.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rand::Rng;
use schoolgate_classifier::config::SmtpConfig;
use tokio_util::sync::CancellationToken;

use crate::ReportError;
use crate::render::{Rendered, render_email};
use crate::summary::WeeklySummary;

/// Time allowed for one SMTP conversation (connect, TLS, auth, send). Generous:
/// a school's relay on a slow link still answers in seconds.
const SMTP_TIMEOUT: Duration = Duration::from_secs(60);

/// Why mail could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    #[error("[reports.smtp]: {0}")]
    Config(String),
    #[error("`{address}` is not a mail address: {message}")]
    Address { address: String, message: String },
    #[error("could not assemble the message: {0}")]
    Build(String),
    /// Worth retrying: the server is down, busy, or said "try later" (4xx).
    #[error("mail server unavailable: {0}")]
    Transient(String),
    /// The server refused the message (5xx): retrying the same message cannot help.
    #[error("mail server refused the message: {0}")]
    Permanent(String),
    #[error("gave up sending after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: String },
    #[error("shutting down before the mail was sent")]
    Cancelled,
}

impl MailError {
    pub fn is_transient(&self) -> bool {
        matches!(self, MailError::Transient(_))
    }
}

/// How long to keep trying when the mail server (or a webhook) is down.
///
/// Back-off doubles from `initial` up to `max`, with ±20% jitter so that several
/// schools' nodes do not retry in step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// Stop after this long; `None` retries until shutdown.
    pub give_up_after: Option<Duration>,
}

impl RetryPolicy {
    /// The weekly summary: from 30 s up to every 10 minutes, for 12 hours (the
    /// summary is kept in the dashboard meanwhile, so giving up loses nothing).
    pub fn weekly() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(30),
            max: Duration::from_secs(600),
            give_up_after: Some(Duration::from_secs(12 * 3600)),
        }
    }

    /// A person waiting at the command line: a few tries over a minute.
    pub fn command_line() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(15),
            give_up_after: Some(Duration::from_secs(60)),
        }
    }

    /// The wait before retry number `attempt` (1 = after the first failure).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let jitter = rand::rng().random_range(0.8..1.2);
        base.mul_f64(jitter).min(self.max.mul_f64(1.2))
    }
}

/// An SMTP client for `[reports.smtp]`.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    server: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No credentials in logs.
        f.debug_struct("Mailer")
            .field("server", &self.server)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A client for the configured server.
    ///
    /// `starttls = true` requires STARTTLS (the usual port 587 set-up); port 465
    /// without `starttls` uses TLS from the first byte; anything else is plain SMTP,
    /// which only makes sense for a relay on the same host or network.
    pub fn new(cfg: &SmtpConfig) -> Result<Mailer, MailError> {
        let from = mailbox(&cfg.from)?;
        let host = cfg.host.trim();
        if host.is_empty() {
            return Err(MailError::Config("host is empty".to_owned()));
        }
        let tls = || {
            TlsParameters::new(host.to_owned())
                .map_err(|e| MailError::Config(format!("TLS for {host}: {e}")))
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(cfg.port)
            .timeout(Some(SMTP_TIMEOUT));
        builder = if cfg.starttls {
            builder.tls(Tls::Required(tls()?))
        } else if cfg.port == 465 {
            builder.tls(Tls::Wrapper(tls()?))
        } else {
            builder.tls(Tls::None)
        };
        match (&cfg.user, &cfg.password) {
            (Some(user), Some(password)) => {
                builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
            }
            (Some(_), None) => {
                return Err(MailError::Config(
                    "`user` is set but `password` is not".to_owned(),
                ));
            }
            _ => {}
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            server: format!("{host}:{}", cfg.port),
        })
    }

    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    /// One attempt.
    pub async fn send(&self, message: Message) -> Result<(), MailError> {
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(MailError::Permanent(e.to_string())),
            // Connection refused, timeouts, TLS trouble, 4xx: the server may be back.
            Err(e) => Err(MailError::Transient(format!("{}: {e}", self.server))),
        }
    }

    /// Sends, retrying transient failures per `retry` until it succeeds, gives up,
    /// the server refuses the message, or `cancel` fires.
    pub async fn send_with_retry(
        &self,
        message: &Message,
        retry: &RetryPolicy,
        cancel: &CancellationToken,
    ) -> Result<(), MailError> {
        let start = tokio::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let err = match self.send(message.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => e,
            };
            let wait = retry.backoff(attempt);
            if retry
                .give_up_after
                .is_some_and(|limit| start.elapsed() + wait > limit)
            {
                return Err(MailError::GaveUp {
                    attempts: attempt,
                    last: err.to_string(),
                });
            }
            tracing::warn!(attempt, retry_in = ?wait, error = %err, "mail not sent; will retry");
            tokio::select! {
                () = cancel.cancelled() => return Err(MailError::Cancelled),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Parses `Name <a@b>` or `a@b`.
pub fn mailbox(address: &str) -> Result<Mailbox, MailError> {
    address
        .trim()
        .parse()
        .map_err(|e: lettre::address::AddressError| MailError::Address {
            address: address.to_owned(),
            message: e.to_string(),
        })
}

fn envelope(
    from: &Mailbox,
    to: &[String],
    subject: &str,
) -> Result<lettre::message::MessageBuilder, MailError> {
    if to.is_empty() {
        return Err(MailError::Build("no recipients".to_owned()));
    }
    let mut b = Message::builder().from(from.clone()).subject(subject);
    for r in to {
        b = b.to(mailbox(r)?);
    }
    Ok(b)
}

/// The weekly summary: `multipart/alternative` of the plain text and a
/// `multipart/related` holding the HTML and its charts as inline PNG parts
/// (`Content-ID: <trend>` for `cid:trend`).
pub fn summary_message(
    from: &Mailbox,
    to: &[String],
    rendered: &Rendered,
) -> Result<Message, MailError> {
    let mut related = MultiPart::related().singlepart(SinglePart::html(rendered.html.clone()));
    for chart in &rendered.charts {
        let png = chart
            .png()
            .map_err(|e| MailError::Build(format!("chart {}: {e}", chart.cid)))?;
        related = related.singlepart(
            Attachment::new_inline_with_name(chart.cid.to_owned(), format!("{}.png", chart.cid))
                .body(
                    png,
                    ContentType::parse("image/png").map_err(|e| MailError::Build(e.to_string()))?,
                ),
        );
    }
    envelope(from, to, &rendered.subject)?
        .multipart(
            MultiPart::alternative()
                .singlepart(SinglePart::plain(rendered.text.clone()))
                .multipart(related),
        )
        .map_err(|e| MailError::Build(e.to_string()))
}

/// A plain-text message (alerts).
pub fn text_message(
    from: &Mailbox,
    to: &[String],
    subject: &str,
    body: &str,
) -> Result<Message, MailError> {
    envelope(from, to, subject)?
        .singlepart(SinglePart::plain(body.to_owned()))
        .map_err(|e| MailError::Build(e.to_string()))
}

/// Renders and sends a weekly summary to `to`, retrying per `retry`.
pub async fn send_summary(
    mailer: &Mailer,
    summary: &WeeklySummary,
    to: &[String],
    retry: &RetryPolicy,
    cancel: &CancellationToken,
) -> Result<(), ReportError> {
    let rendered = render_email(summary);
    let message = summary_message(mailer.from(), to, &rendered)?;
    mailer.send_with_retry(&message, retry, cancel).await?;
    tracing::info!(week = %summary.week, scope = %summary.scope.key(), recipients = to.len(), "weekly summary sent");
    Ok(())
}
