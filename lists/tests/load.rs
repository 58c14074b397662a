use std::path::Path;

use jiff::Timestamp;
use schoolgate_classifier::{Action, Category, Config, Request, shared};
use schoolgate_lists::load::{ReloadError, Reloader, compile};

use crate::support::shared_data;

fn config(lists: &str) -> Config {
    let text = format!("[roles.guest]\nblock = [\"gambling\", \"proxy\", \"doh\"]\n{lists}");
    Config::parse("t.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_real_ut1_folder_and_curated_lists_feed_the_policy() {
    let data = shared_data();
    let lists = format!(
        "[[lists]]\nname = \"ut1\"\nformat = \"ut1\"\npath = \"{}\"\nonly = [\"gambling\", \"redirector\"]\n",
        data.join("lists/ut1").display()
    );
    let (policy, report) =
        compile(config(&lists), Path::new("."), Path::new("/nonexistent")).unwrap();
    assert!(report.is_complete(), "{:?}", report.failures());
    let ut1 = report.sources.iter().find(|s| s.name == "ut1").unwrap();
    // 25688 gambling + 5 gambling urls + 105621 redirector + 232 redirector urls.
    assert_eq!(ut1.entries, 25_688 + 5 + 105_621 + 232);
    assert!(
        report
            .sources
            .iter()
            .any(|s| s.name == "schoolgate/doh" && s.entries > 40)
    );
    let guest = policy.role_id("guest").unwrap();
    let at = Timestamp::now();
    // A UT1 gambling entry, cited by its UT1 list name.
    let first = schoolgate_lists::read_file(
        &data.join("lists/ut1/gambling.txt.gz"),
        schoolgate_lists::Format::Domains,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(first.entries, 25_688);
    let v = policy.decide(&Request::host(guest, "dns.google", at));
    assert_eq!(v.action, Action::Block);
    assert_eq!(v.category, Some(Category::Doh));
    assert_eq!(
        v.reason(),
        "blocked for guest: doh (list schoolgate/doh: dns.google)"
    );
}

#[test]
fn a_missing_list_is_reported_and_refuses_a_reload() {
    let good = config("");
    let (policy, _) = compile(good.clone(), Path::new("."), Path::new("/nonexistent")).unwrap();
    let handle = shared(policy);
    let reloader = Reloader {
        shared: handle.clone(),
        base_dir: ".".into(),
        cache_dir: "/nonexistent".into(),
    };
    let before = std::sync::Arc::as_ptr(&handle.load_full());
    let bad = config(
        "[[lists]]\nname = \"gone\"\nformat = \"domains\"\ncategory = \"gambling\"\npath = \"/nonexistent/list.txt\"\n",
    );
    let err = reloader.reload(bad).unwrap_err();
    assert!(matches!(err, ReloadError::Lists(_)), "{err}");
    assert!(err.to_string().contains("gone: "), "{err}");
    assert!(err.to_string().contains("/nonexistent/list.txt"), "{err}");
    assert_eq!(
        std::sync::Arc::as_ptr(&handle.load_full()),
        before,
        "the old policy must stay"
    );

    let err = reloader
        .reload_text("t.toml", "[roles.guest]\nblock = [\"gamblin\"]\n")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("t.toml:2: roles.guest.block[0]: unknown category `gamblin`"),
        "{err}"
    );
    assert_eq!(std::sync::Arc::as_ptr(&handle.load_full()), before);

    // A good reload swaps.
    reloader.reload(good).unwrap();
    assert_ne!(std::sync::Arc::as_ptr(&handle.load_full()), before);
}

#[test]
fn a_reload_reads_relative_paths_from_the_config_folder_as_the_start_did() {
    let good = config("");
    let (policy, _) = compile(good, Path::new("."), Path::new("/nonexistent")).unwrap();
    let handle = shared(policy);
    let reloader = Reloader {
        shared: handle.clone(),
        base_dir: "/etc/schoolgate".into(),
        cache_dir: "/nonexistent".into(),
    };
    reloader
        .reload_text(
            "t.toml",
            "[proxy]\nauth = \"required\"\nusers_file = \"proxy-users.toml\"\n\
             [store]\npath = \"/var/lib/schoolgate/events.sqlite\"\n\
             [roles.guest]\nblock = [\"gambling\"]\n",
        )
        .unwrap();
    let after = handle.load_full();
    let config = after.config();
    assert_eq!(
        config.proxy.users_file.as_deref(),
        Some(Path::new("/etc/schoolgate/proxy-users.toml")),
        "not the working directory's"
    );
    assert_eq!(
        config.store.path,
        Path::new("/var/lib/schoolgate/events.sqlite")
    );
}

#[test]
fn a_reload_names_the_changes_only_a_restart_applies() {
    let start = "[listen]\nproxy = \"127.0.0.1:3128\"\n[dns]\nupstreams = [\"192.0.2.53:53\"]\n\
                 [roles.guest]\nblock = [\"gambling\"]\n";
    let mut config = Config::parse("t.toml", start).unwrap();
    // As `schoolgate run` does before it compiles, and every reload does.
    config.resolve_paths(Path::new("."));
    let (policy, _) = compile(config, Path::new("."), Path::new("/nonexistent")).unwrap();
    let reloader = Reloader {
        shared: shared(policy),
        base_dir: ".".into(),
        cache_dir: "/nonexistent".into(),
    };
    // Roles apply at once: nothing waits.
    let roles = start.replace("[\"gambling\"]", "[\"gambling\", \"proxy\"]");
    let report = reloader.reload_text("t.toml", &roles).unwrap();
    assert!(
        report.restart_needed.is_empty(),
        "{:?}",
        report.restart_needed
    );
    // The listening address and the DNS upstreams wait for a restart.
    let moved = roles
        .replace("127.0.0.1:3128", "127.0.0.1:8080")
        .replace("192.0.2.53:53", "192.0.2.54:53");
    let report = reloader.reload_text("t.toml", &moved).unwrap();
    assert_eq!(report.restart_needed, ["[listen]", "[dns]"]);
}
