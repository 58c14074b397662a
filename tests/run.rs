use std::net::SocketAddr;
use std::path::Path;

use schoolgate_events::{
    AccessEvent, Batch, EventStore, ExportFilter, Period, Purpose, Source, SqliteStore,
};

use crate::support::{Running, curl_via, dig_short, free_port, proxy_user, wait_for_port};

fn write_config(
    dir: &Path,
    proxy: u16,
    dns: u16,
    dashboard: u16,
    pupil_blocks_gambling: bool,
) -> std::path::PathBuf {
    let block = if pupil_blocks_gambling {
        r#"["gambling", "proxy"]"#
    } else {
        r#"["proxy"]"#
    };
    let text = format!(
        r#"
[[schools]]
id = "test"
name = "Test Academy"
contact = "the IT office"

[listen]
proxy = "127.0.0.1:{proxy}"
dns = ["127.0.0.1:{dns}"]
dashboard = "127.0.0.1:{dashboard}"

[proxy]
workers = 3

[dns]
# Nothing listens here: allowed names fail fast; blocked ones never go upstream.
upstreams = ["127.0.0.1:9"]
upstream_timeout_ms = 300

[store]
path = "{d}/events.sqlite"
spool_dir = "{d}/spool"
dead_letter = "{d}/dead.jsonl"
batch_timeout_ms = 100

[dashboard]
url = "http://127.0.0.1:1"
state = "{d}/dashboard.sqlite"

[roles.pupil]
block = {block}

[roles.staff]
block = ["proxy"]

[roles.guest]
block = ["gambling", "proxy"]

[[networks]]
cidr = "127.0.0.2/32"
role = "pupil"
school = "test"

[[networks]]
cidr = "127.0.0.3/32"
role = "staff"
school = "test"

[[lists]]
name = "local-gambling"
format = "domains"
category = "gambling"
path = "gambling.txt"
"#,
        d = dir.display()
    );
    let path = dir.join("school.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn run_filters_reloads_and_drains_every_event() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gambling.txt"),
        "# our own list\ncasino-test.example\n",
    )
    .unwrap();
    let (pp, dp, wp) = (free_port(), free_port(), free_port());
    let config = write_config(dir.path(), pp, dp, wp, true);
    let running = Running::start(&config, dir.path().join("run.log"));
    let proxy: SocketAddr = format!("127.0.0.1:{pp}").parse().unwrap();
    let dns: SocketAddr = format!("127.0.0.1:{dp}").parse().unwrap();
    wait_for_port(proxy);
    wait_for_port(dns);
    let web: SocketAddr = format!("127.0.0.1:{wp}").parse().unwrap();
    wait_for_port(web);
    // `proxy.workers` is the number of proxy threads (the default is half the CPUs).
    running.wait_for_log("workers=3");
    let log = running.log();
    let line = log.lines().find(|l| l.contains("workers=")).unwrap_or("");
    assert!(line.contains("proxy listening addr=127.0.0.1:"), "{line}");

    // The dashboard serves its login page; an account made with `user add` exists.
    let login = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{web}/login"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&login.stdout), "200");
    let out = add_user(&config, "dsl", "esafety-lead");
    assert!(
        out.starts_with("user dsl (esafety-lead) saved in "),
        "{out}"
    );
    let bad = crate::support::schoolgate(&[
        "user",
        "add",
        "x",
        "--role",
        "head",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());

    // A pupil meets the block page, with a reference; staff are not blocked by it.
    let (status, body) = curl_via(proxy, "127.0.0.2", "http://www.casino-test.example/spin");
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("blocked for pupil: gambling (list local-gambling: casino-test.example)"),
        "{body}"
    );
    let reference = body
        .split("?ref=")
        .nth(1)
        .and_then(|s| s.get(..26))
        .expect("a reference on the block page")
        .to_owned();
    // The DNS filter answers the blocked name with the block page address.
    assert_eq!(
        dig_short(dns, "127.0.0.2", "casino-test.example"),
        "127.0.0.1"
    );

    // A bad configuration is refused on SIGHUP: the old policy keeps running.
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        good.replace("[roles.staff]", "[roles.staff]\nblok = []"),
    )
    .unwrap();
    running.signal("HUP");
    running.wait_for_log("reload refused, the previous policy keeps running");
    assert!(
        running
            .log()
            .contains("roles.staff.blok: unknown field `blok`"),
        "{}",
        running.log()
    );
    let (status, _) = curl_via(proxy, "127.0.0.2", "http://casino-test.example/");
    assert_eq!(status, 403, "still blocked after a refused reload");

    // A good change takes effect on SIGHUP without a restart.
    write_config(dir.path(), pp, dp, wp, false);
    running.signal("HUP");
    running.wait_for_log("reloaded: the new policy is in force");
    let (status, body) = curl_via(proxy, "127.0.0.2", "http://casino-test.example/");
    assert_ne!(status, 403, "pupils may reach it after the reload: {body}");
    assert_ne!(
        dig_short(dns, "127.0.0.2", "casino-test.example"),
        "127.0.0.1"
    );
    assert!(
        !running
            .log()
            .contains("take effect only when schoolgate restarts"),
        "{}",
        running.log()
    );

    // A change only a restart applies (the DNS upstreams) is named, not ignored.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("upstream_timeout_ms = 300", "upstream_timeout_ms = 400"),
    )
    .unwrap();
    running.signal("HUP");
    running.wait_for_log("these changes take effect only when schoolgate restarts");
    let log = running.log();
    let line = log
        .lines()
        .find(|l| l.contains("take effect only when"))
        .unwrap_or("");
    assert!(line.contains("changed=[dns]"), "{line}");

    // SIGTERM: an orderly stop, and every decision is in the store.
    running.signal("TERM");
    let mut running = running;
    let status = running.child.wait().unwrap();
    assert!(status.success(), "exit: {status:?}\n{}", running.log());

    // The weekly summary for this week, from the same store, as a page.
    let iso = jiff::Zoned::now().date().iso_week_date();
    let week = format!("{}-W{:02}", iso.year(), iso.week());
    let page = dir.path().join("summary.html");
    let o = crate::support::schoolgate(&[
        "report",
        "weekly",
        "--week",
        &week,
        "--out",
        page.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{o:?}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("Test Academy"), "{html}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = SqliteStore::open(dir.path().join("events.sqlite"), Default::default()).unwrap();
    let period = Period::new(
        jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
        jiff::Timestamp::now(),
    );
    let mut csv = Vec::new();
    let rows = rt
        .block_on(store.export_csv(
            &period,
            &ExportFilter::default(),
            &mut csv,
            &Purpose::new("test", "end-to-end check"),
        ))
        .unwrap();
    let csv = String::from_utf8(csv).unwrap();
    // Three proxy requests (two blocked, one after the reload) and two DNS queries
    // (one blocked, one after the reload): each exactly once.
    assert_eq!(rows, 5, "{csv}");
    assert_eq!(csv.matches(",proxy,").count(), 3, "{csv}");
    assert_eq!(csv.matches(",dns,").count(), 2, "{csv}");
    assert!(
        csv.contains(&reference),
        "the block page's reference is the stored event's id:\n{csv}"
    );
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.contains(",casino-test.example,") || l.contains(",www.casino-test.example,")),
        "{csv}"
    );
}

/// The weekly job runs inside `schoolgate run`: scheduled for today at 00:00
/// school time, it catches up at start with last week's summary, which the
/// headteacher then finds on the dashboard's summary page as sent.
#[test]
fn run_keeps_last_weeks_summary_for_the_summary_page() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gambling.txt"), "casino-test.example\n").unwrap();
    let (pp, dp, wp) = (free_port(), free_port(), free_port());
    let config = write_config(dir.path(), pp, dp, wp, true);
    let today = jiff::Timestamp::now().in_tz("Europe/London").unwrap();
    let day = format!("{:?}", today.weekday()).to_lowercase();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[dashboard]",
        &format!("[reports]\nweekly_day = \"{day}\"\nweekly_time = \"00:00\"\n\n[dashboard]"),
    );
    std::fs::write(&config, text).unwrap();

    // Last week's traffic, already in the store: one blocked request on Tuesday.
    let monday = today
        .date()
        .checked_sub(jiff::Span::new().days(i64::from(today.weekday().to_monday_zero_offset())))
        .unwrap();
    let last_tuesday = monday
        .checked_sub(jiff::Span::new().days(6))
        .unwrap()
        .at(10, 0, 0, 0)
        .in_tz("Europe/London")
        .unwrap()
        .timestamp();
    let iso = last_tuesday
        .in_tz("Europe/London")
        .unwrap()
        .date()
        .iso_week_date();
    let last_week = format!("{}-W{:02}", iso.year(), iso.week());
    let rt = tokio::runtime::Runtime::new().unwrap();
    {
        let store =
            SqliteStore::open(dir.path().join("events.sqlite"), Default::default()).unwrap();
        let event = AccessEvent::new(
            Source::Proxy,
            "127.0.0.2".parse().unwrap(),
            "casino-test.example",
        )
        .at(last_tuesday)
        .with_school("test")
        .with_role("pupil")
        .with_action(schoolgate_classifier::Action::Block);
        rt.block_on(store.insert(&Batch::new(vec![event]))).unwrap();
    }
    add_user(&config, "head", "headteacher");

    let running = Running::start(&config, dir.path().join("run.log"));
    let web: SocketAddr = format!("127.0.0.1:{wp}").parse().unwrap();
    wait_for_port(web);
    running.wait_for_log("weekly summaries done");
    assert!(
        running
            .log()
            .contains("no [reports.smtp]: summaries kept in the dashboard only"),
        "{}",
        running.log()
    );

    let jar = dir.path().join("cookies");
    let login = curl(&[
        "-c",
        jar.to_str().unwrap(),
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"username":"head","password":"correct horse battery staple"}"#,
        &format!("http://{web}/api/login"),
    ]);
    assert!(login.contains("csrf"), "{login}");
    let get = |path: &str| curl(&["-b", jar.to_str().unwrap(), &format!("http://{web}{path}")]);
    let weeks = get("/api/summary/weeks");
    assert!(
        weeks.contains(&format!(r#""week":"{last_week}""#)),
        "{weeks}"
    );
    let sent = get(&format!("/api/summary?week={last_week}&scope=school-test"));
    let sent: serde_json::Value = serde_json::from_str(&sent).unwrap();
    assert_eq!(sent["totals"]["blocked"], 1, "{sent}");
    assert_eq!(sent["title"], "Test Academy");
    let page = get(&format!("/summary?week={last_week}&scope=school-test"));
    assert!(page.contains("As sent on"), "{page}");
    assert!(
        page.contains("Test Academy") && page.contains("<svg"),
        "{page}"
    );

    running.signal("TERM");
    let mut running = running;
    let status = running.child.wait().unwrap();
    assert!(status.success(), "exit: {status:?}\n{}", running.log());
}

/// `schoolgate user add NAME --role ROLE` with the test password: its output.
fn add_user(config: &Path, name: &str, role: &str) -> String {
    use std::io::Write;
    let mut add = std::process::Command::new(crate::support::BIN)
        .args(["user", "add", name, "--role", role, "--config"])
        .arg(config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(b"correct horse battery staple\n")
        .unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `curl -s ARGS`: the body.
fn curl(args: &[&str]) -> String {
    let out = std::process::Command::new("curl")
        .arg("-s")
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Through the proxy from `client` with `user:password` (or none): the status
/// and the reason header.
fn curl_as(proxy: SocketAddr, client: &str, user: Option<&str>, url: &str) -> (u16, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "-o", "/dev/null", "-D", "-", "-w", "%{http_code}"])
        .args(["--max-time", "20", "--interface", client, "-x"])
        .arg(format!("http://{proxy}"));
    if let Some(u) = user {
        cmd.args(["--proxy-user", u]);
    }
    let out = cmd.arg(url).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .lines()
        .last()
        .unwrap_or("0")
        .trim()
        .parse()
        .unwrap_or(0);
    let reason = text
        .lines()
        .find_map(|l| l.strip_prefix("x-schoolgate-reason: "))
        .unwrap_or("")
        .trim()
        .to_owned();
    (status, reason)
}

#[test]
fn proxy_users_from_an_mis_export_sign_in_and_get_their_role() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gambling.txt"), "casino-test.example\n").unwrap();
    let (pp, dp, wp) = (free_port(), free_port(), free_port());
    let config = write_config(dir.path(), pp, dp, wp, true);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[proxy]\nworkers = 3",
        "[proxy]\nauth = \"required\"\nusers_file = \"proxy-users.toml\"",
    );
    std::fs::write(&config, text).unwrap();
    let users_file = dir.path().join("proxy-users.toml");

    // An export with a bad row changes nothing, and says which lines are wrong.
    let csv = dir.path().join("pupils.csv");
    std::fs::write(
        &csv,
        "UPN,Name,Year,Role,Password\n\
         A1,amy,9,pupil,\"sun, moon\"\n\
         A2,bob,9,pupl,pw2\n\
         A3,amy,9,pupil,pw3\n",
    )
    .unwrap();
    let out = proxy_user(&config, &["import", csv.to_str().unwrap()], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        err.contains("nothing imported; 2 rows have errors"),
        "{err}"
    );
    assert!(
        err.contains("line 3: role `pupl` is not a role of"),
        "{err}"
    );
    assert!(err.contains("line 4: amy is already on line 2"), "{err}");
    assert!(!users_file.exists(), "a failed import writes nothing");

    // The corrected export, then a member of staff added by hand.
    std::fs::write(
        &csv,
        "UPN,Name,Year,Role,Password\n\
         A1,amy,9,pupil,\"sun, moon\"\n\
         A2,bob,9,pupil,pw2\n",
    )
    .unwrap();
    let out = proxy_user(&config, &["import", csv.to_str().unwrap()], "");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(said.starts_with("2 proxy users from "), "{said}");
    assert!(said.contains("2 added, 0 updated"), "{said}");
    let out = proxy_user(&config, &["add", "sam", "--role", "staff"], "staff pass\n");
    assert!(out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("auth is off"),
        "{out:?}"
    );
    let out = proxy_user(&config, &["list"], "");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(
        lines[..3],
        ["amy  pupil", "bob  pupil", "sam  staff"],
        "{listed}"
    );
    assert!(lines[3].starts_with("3 of 3 in "), "{listed}");
    let out = proxy_user(&config, &["list", "--role", "staff"], "");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.starts_with("sam  staff\n1 of 3 in "), "{listed}");
    let stored = std::fs::read_to_string(&users_file).unwrap();
    assert_eq!(stored.matches("$argon2id$").count(), 3, "{stored}");
    assert!(!stored.contains("sun, moon") && !stored.contains("staff pass"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&users_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "hashes are readable by the owner only");
    let out = proxy_user(&config, &["add", "x", "--role", "teacher"], "pw\n");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--role teacher: role `teacher` is not a role"),
        "{out:?}"
    );

    let running = Running::start(&config, dir.path().join("run.log"));
    let proxy: SocketAddr = format!("127.0.0.1:{pp}").parse().unwrap();
    wait_for_port(proxy);
    let url = "http://www.casino-test.example/spin";
    // The user's role wins over the network's: amy on a staff machine is a pupil.
    let (status, reason) = curl_as(proxy, "127.0.0.3", Some("amy:sun, moon"), url);
    assert_eq!(status, 403, "{reason}");
    assert!(
        reason.starts_with("blocked for pupil: gambling"),
        "{reason}"
    );
    // sam on a pupil machine is staff: not blocked (and no origin to reach here).
    let (status, reason) = curl_as(proxy, "127.0.0.2", Some("sam:staff pass"), url);
    assert_ne!(status, 403, "{reason}");
    assert_eq!(reason.find("blocked"), None, "{reason}");
    // No credentials, or the wrong ones: asked to sign in.
    assert_eq!(curl_as(proxy, "127.0.0.2", None, url).0, 407);
    assert_eq!(curl_as(proxy, "127.0.0.2", Some("amy:wrong"), url).0, 407);

    // Removed and reloaded: amy can no longer sign in; bob still can.
    let out = proxy_user(&config, &["remove", "amy"], "");
    assert!(out.status.success(), "{out:?}");
    running.signal("HUP");
    running.wait_for_log("reloaded: the new policy is in force");
    assert_eq!(
        curl_as(proxy, "127.0.0.3", Some("amy:sun, moon"), url).0,
        407
    );
    let (status, reason) = curl_as(proxy, "127.0.0.3", Some("bob:pw2"), url);
    assert_eq!(
        (status, reason.starts_with("blocked for pupil")),
        (403, true),
        "{reason}"
    );
    let out = proxy_user(&config, &["remove", "amy"], "");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}
