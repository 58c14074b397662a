use mail_parser::{MessageParser, MimeHeaders};
use schoolgate_reports::{Scope, weekly_report};

use crate::support::{self, Oracle, SmtpServer};

/// `weekly_report --send` through aiosmtpd: the message that arrives has the right
/// envelope and headers, a plain-text and an HTML part with the figures the test
/// generated, and the charts as inline PNG parts the HTML refers to by `cid:`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weekly_summary_arrives_as_html_with_inline_charts_and_plain_text() {
    let smtp = tokio::task::spawn_blocking(SmtpServer::start)
        .await
        .expect("smtp");
    let mut config = support::example("school.toml");
    config.reports.smtp = Some(SmtpServer::smtp_config(smtp.port));
    let policy = support::policy(&config);
    let w = support::week("2026-W47");
    let mut events = support::traffic(&policy, w, "hillside", 3_000, 11);
    events.extend(support::episodes(&policy, w, "hillside"));
    let s = support::store();
    support::insert(&s.store, &events).await;
    let o = Oracle::new(&events, w.period(policy.time_zone()).expect("period"), None);

    let sum = weekly_report(&s.store, &config, &policy, w, None, None, true)
        .await
        .expect("sent");
    assert_eq!(sum.scope, Scope::school("hillside"));

    let raw = smtp.wait_for(1).await;
    assert_eq!(raw.len(), 1, "one message for one school");
    let msg = MessageParser::default().parse(&raw[0]).expect("parse");

    assert_eq!(
        support::envelope_to(&msg),
        ["chair.lgb@hillside.sch.uk", "head@hillside.sch.uk"],
        "school recipients plus [reports] recipients, once each"
    );
    let mut to: Vec<String> = msg
        .to()
        .map(|a| {
            a.iter()
                .filter_map(|a| a.address())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    to.sort();
    assert_eq!(to, ["chair.lgb@hillside.sch.uk", "head@hillside.sch.uk"]);
    assert_eq!(
        msg.subject(),
        Some("Weekly filtering summary: Hillside Academy, 16-22 Nov 2026 (2026-W47)")
    );
    assert!(
        msg.from().and_then(|f| f.first()).and_then(|a| a.address())
            == Some("filter@hillside.sch.uk")
    );

    let text = msg.body_text(0).expect("plain-text part").into_owned();
    let html = msg.body_html(0).expect("HTML part").into_owned();
    let headline = format!(
        "{} requests; {} blocked",
        thousands(o.requests()),
        thousands(o.blocked())
    );
    assert!(text.contains(&headline), "text lacks `{headline}`:\n{text}");
    assert!(html.contains(&headline), "HTML lacks `{headline}`");
    assert!(text.contains(&format!("{:<28}{:>12}", "Blocked", thousands(o.blocked()))));
    assert!(text.contains(&format!("{:<28}{:>12}", "Flagged", thousands(o.flagged()))));
    let top = &o.top_blocked(1)[0];
    assert!(
        html.contains(&top.0) && text.contains(&top.0),
        "top blocked site {}",
        top.0
    );
    assert!(text.contains("3 episodes at high severity or above, involving 3 people."));
    assert!(!text.contains(support::SECRET_USER) && !html.contains(support::SECRET_USER));

    // Every cid: the HTML uses is an inline PNG part of the message.
    let cids: Vec<String> = html
        .split("src=\"cid:")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_owned)
        .collect();
    assert_eq!(cids, ["trend", "daily", "categories"]);
    for cid in &cids {
        let part = msg
            .parts
            .iter()
            .find(|p| p.content_id().map(|c| c.trim_matches(['<', '>'])) == Some(cid.as_str()))
            .unwrap_or_else(|| panic!("no part with Content-ID {cid}"));
        assert!(
            part.is_content_type("image", "png"),
            "{cid} is not image/png"
        );
        assert!(
            part.contents().starts_with(b"\x89PNG\r\n\x1a\n"),
            "{cid} is not a PNG"
        );
        assert!(part.contents().len() > 2_000, "{cid} looks empty");
    }
    // multipart/alternative with the HTML inside multipart/related.
    let raw_text = String::from_utf8_lossy(&raw[0]);
    assert!(raw_text.contains("multipart/alternative"));
    assert!(raw_text.contains("multipart/related"));
}

fn thousands(n: u64) -> String {
    schoolgate_reports::chart::thousands(n)
}
