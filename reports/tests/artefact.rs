use std::path::Path;
use std::process::Command;

use jiff::Timestamp;
use schoolgate_reports::{
    FilterHealth, IncidentFigures, PolicyChange, Scope, WeekExtras, build_summary, render_email,
    render_page,
};

use crate::support;

/// The example school's week 47 with several thousand requests, kept as
/// `target/test-artifacts/weekly-summary.html` (+ `.txt`, the email's chart PNGs)
/// and a screenshot from headless Chromium, `weekly-summary.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_schools_week_is_rendered_and_photographed() {
    let config = support::example("school.toml");
    let policy = support::policy(&config);
    let w = support::week("2026-W47");
    let mut events = support::traffic(&policy, w, "hillside", 6_500, 2026);
    events.extend(support::episodes(&policy, w, "hillside"));
    // W46, W45, W44 (half term, quiet) and W43, going back.
    let mut wk = w;
    for (i, n) in [6_100usize, 6_200, 900, 5_900].into_iter().enumerate() {
        wk = wk.previous();
        events.extend(support::traffic(&policy, wk, "hillside", n, 100 + i as u64));
    }
    let s = support::store();
    support::insert(&s.store, &events).await;

    let ts = |s: &str| s.parse::<Timestamp>().expect("ts");
    let extras = WeekExtras {
        incidents: Some(IncidentFigures {
            opened: 2,
            in_progress: 3,
            closed: 1,
        }),
        health: Some(FilterHealth {
            uptime: 0.9996,
            list_updated: Some(ts("2026-11-22T03:10:00Z")),
            spool_bytes: 0,
            backlog: 12,
            errors: 0,
        }),
        policy_changes: vec![
            PolicyChange {
                when: ts("2026-11-17T08:12:00Z"),
                who: "Network manager (r.patel)".to_owned(),
                what: "Allowed kahoot.it for pupils".to_owned(),
                why: "Used in Year 9 science lessons".to_owned(),
            },
            PolicyChange {
                when: ts("2026-11-19T16:40:00Z"),
                who: "DSL (m.evans)".to_owned(),
                what: "Flag chat at medium for sixth-form".to_owned(),
                why: "Follow-up to incident 2026-031".to_owned(),
            },
        ],
    };
    let sum = build_summary(
        &s.store,
        &policy,
        w,
        &Scope::school("hillside"),
        extras,
        ts("2026-11-23T07:00:00Z"),
    )
    .await
    .expect("summary");
    assert!(sum.totals.requests > 6_000);

    let dir = support::artefacts_dir();
    let html_path = dir.join("weekly-summary.html");
    std::fs::write(&html_path, render_page(&sum)).expect("write html");
    let rendered = render_email(&sum);
    std::fs::write(dir.join("weekly-summary.txt"), &rendered.text).expect("write text");
    std::fs::write(
        dir.join("weekly-summary.json"),
        serde_json::to_vec_pretty(&sum).expect("json"),
    )
    .expect("write json");
    for c in &rendered.charts {
        std::fs::write(
            dir.join(format!("weekly-summary-{}.png", c.cid)),
            c.png().expect("png"),
        )
        .expect("write png");
    }

    let png = dir.join("weekly-summary.png");
    let _ = std::fs::remove_file(&png);
    screenshot(&html_path, &png, "1200,2400");
    // The whole page too, for reading the end of it.
    screenshot(
        &html_path,
        &dir.join("weekly-summary-full.png"),
        "1200,3600",
    );
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
    assert!(
        bytes.len() > 50_000,
        "screenshot looks blank ({} bytes)",
        bytes.len()
    );
}

/// Headless Chromium (Debian's `chromium`, installed here when missing).
fn screenshot(page: &Path, png: &Path, size: &str) {
    let have = |c: &str| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("chromium") {
        let ok = Command::new("apt-get")
            .args(["install", "-y", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
            || (Command::new("apt-get")
                .arg("update")
                .status()
                .is_ok_and(|s| s.success())
                && Command::new("apt-get")
                    .args(["install", "-y", "chromium"])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .status()
                    .is_ok_and(|s| s.success()));
        assert!(
            ok,
            "chromium is needed for the screenshot: apt-get install -y chromium"
        );
    }
    let profile = tempfile::tempdir().expect("profile dir");
    let status = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("--window-size={size}"))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        png.exists(),
        "chromium wrote no screenshot: {}",
        String::from_utf8_lossy(&status.stderr)
    );
}
