use http::StatusCode;
use schoolgate_classifier::{Action, Category};
use schoolgate_dashboard::Role;

use crate::support::Harness;

fn change(role: &str, category: &str, state: &str) -> serde_json::Value {
    serde_json::json!({ "op": "set-category", "role": role, "category": category, "state": state })
}

#[tokio::test]
async fn blocking_a_category_changes_the_running_verdict_keeps_comments_and_records_a_version() {
    let h = Harness::start().await;
    let mut nm = h.login(Role::NetworkManager).await;
    assert_eq!(
        h.verdict("pupil", "https://minecraft.net/").action,
        Action::Allow
    );
    let base = nm.get("/api/policy").await.json()["base"]
        .as_str()
        .expect("base")
        .to_owned();
    let r = nm
        .post_json("/api/policy", &serde_json::json!({ "base": base, "reason": "Games in lessons (ticket 41)", "changes": [change("pupil", "games", "block")] }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.json()["changes"][0],
        "roles.pupil: games block (was allow)"
    );
    let v = h.verdict("pupil", "https://minecraft.net/");
    assert_eq!(v.action, Action::Block);
    assert_eq!(v.category, Some(Category::Games));
    // Guests extend pupil, so they inherit the block; staff are unaffected.
    assert!(h.verdict("guest", "minecraft.net").is_blocked());
    assert!(!h.verdict("staff", "minecraft.net").is_blocked());
    // Test a URL agrees with the policy.
    let t = nm
        .get("/api/policy/test?url=https://minecraft.net/")
        .await
        .json();
    let pupil = t
        .as_array()
        .expect("list")
        .iter()
        .find(|v| v["role"] == "pupil")
        .expect("pupil");
    assert_eq!(pupil["action"], "block");
    assert_eq!(pupil["category"], "games");
    // The file kept its comments.
    let text = h.config_text();
    assert!(
        text.contains("# the usual")
            && text.contains("# unknown devices get the most restricted level"),
        "{text}"
    );
    // The history has who, why and what.
    let hist = nm.get("/api/policy/history").await.json();
    let latest = &hist[0];
    assert_eq!(latest["actor"], "nm.jones");
    assert_eq!(latest["reason"], "Games in lessons (ticket 41)");
    assert_eq!(latest["summary"][0], "roles.pupil: games block (was allow)");
    let id = latest["id"].as_i64().expect("id");
    let v = nm.get(&format!("/api/policy/history/{id}")).await.json();
    let diff = v["diff"].to_string();
    assert!(diff.contains("games"), "{diff}");
}

#[tokio::test]
async fn a_refused_reload_shows_the_exact_error_and_changes_nothing() {
    let h = Harness::start().await;
    let mut nm = h.login(Role::NetworkManager).await;
    let before = h.config_text();
    // A network for a role that does not exist: the config validation refuses it.
    let r = nm
        .post_json("/api/policy", &serde_json::json!({ "reason": "new VLAN", "changes": [{ "op": "add-network", "cidr": "10.50.0.0/16", "role": "sixth-form", "school": "", "name": "VLAN 50" }] }))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let err = r.error();
    assert!(err.contains("the running policy is unchanged"), "{err}");
    assert!(
        err.contains("networks[1].role: role `sixth-form` is not defined in [roles]"),
        "{err}"
    );
    assert_eq!(h.config_text(), before);
    // A list that cannot be read refuses the reload too (a missing file must never
    // quietly unblock its categories).
    std::fs::remove_file(h.dir.path().join("lists/games.txt")).expect("rm");
    let r = nm
        .post_json(
            "/api/policy",
            &serde_json::json!({ "reason": "x", "changes": [change("pupil", "dating", "block")] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.error().contains("local-games"), "{}", r.body);
    assert_eq!(h.config_text(), before);
    assert!(!h.verdict("pupil", "tinder.com").is_blocked());
}

#[tokio::test]
async fn the_matrix_form_saves_only_changed_cells_and_shows_refusals_on_the_page() {
    let h = Harness::start().await;
    let mut nm = h.login(Role::NetworkManager).await;
    let page = nm.get("/policy").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("Always blocked"),
        "illegal is shown locked"
    );
    let base = nm.get("/api/policy").await.json()["base"]
        .as_str()
        .expect("base")
        .to_owned();
    let r = nm
        .post_form(
            "/policy/matrix",
            &[
                ("base", &base),
                ("reason", "lunchtime games"),
                ("c.staff.games", "flag:low"),
                ("c.pupil.drugs", "block"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let v = h.verdict("staff", "coolmathgames.com");
    assert_eq!(v.action, Action::Flag);
    // Unlocking illegal is refused on the page, with the reason.
    let base = nm.get("/api/policy").await.json()["base"]
        .as_str()
        .expect("base")
        .to_owned();
    let r = nm
        .post_form(
            "/policy/matrix",
            &[
                ("base", &base),
                ("reason", "x"),
                ("c.staff.illegal", "allow"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body.contains("always blocked for every role"),
        "{}",
        r.body
    );
    // A stale form (the file changed since) is refused as a conflict.
    let r = nm
        .post_form(
            "/policy/matrix",
            &[
                ("base", "0000"),
                ("reason", "x"),
                ("c.staff.dating", "block"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("changed since you opened this page"));
}

#[tokio::test]
async fn local_lists_safesearch_schedules_and_networks_are_editable() {
    let h = Harness::start().await;
    let mut nm = h.login(Role::NetworkManager).await;
    let r = nm
        .post_form(
            "/policy/role/pupil",
            &[
                ("reason", "science dept"),
                ("allow", "bbc.co.uk\nphet.colorado.edu"),
                ("deny", "coolmathgames.com"),
                ("safesearch", "strict"),
                ("youtube", "moderate"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(h.verdict("pupil", "coolmathgames.com").is_blocked());
    let text = h.config_text();
    assert!(
        text.contains("phet.colorado.edu") && text.contains("youtube = \"moderate\""),
        "{text}"
    );
    let r = nm
        .post_form(
            "/policy/schedules",
            &[
                ("reason", "after school club"),
                ("op", "set"),
                ("name", "club"),
                ("days", "mon, wed"),
                ("times", "15:30-17:00"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(h.policy.load().config().schedules.contains_key("club"));
    let r = nm
        .post_form(
            "/policy/networks",
            &[
                ("reason", "library"),
                ("op", "add-device"),
                ("key", "10.20.9.10"),
                ("role", "staff"),
                ("name", "library-desk"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let p = h.policy.load();
    let client = p.client("10.20.9.10".parse().expect("ip"), None);
    assert_eq!(&*p.role(client.role).name, "staff");
    let r = nm
        .post_form(
            "/policy/networks",
            &[
                ("reason", "gone"),
                ("op", "remove-device"),
                ("key", "10.20.9.10"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = nm
        .post_form(
            "/policy/networks",
            &[
                ("reason", "x"),
                ("op", "add-network"),
                ("key", "not-a-cidr"),
                ("role", "pupil"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    for page in [
        "/policy/role/pupil",
        "/policy/schedules",
        "/policy/networks",
        "/policy/history",
        "/policy/test?url=bet365.com",
    ] {
        let r = nm.get(page).await;
        assert_eq!(r.status, StatusCode::OK, "{page}");
    }
}

#[tokio::test]
async fn a_save_without_a_reason_is_refused() {
    let h = Harness::start().await;
    let mut nm = h.login(Role::NetworkManager).await;
    let r = nm
        .post_json(
            "/api/policy",
            &serde_json::json!({ "reason": " ", "changes": [change("pupil", "games", "block")] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().contains("say why"));
}

#[tokio::test]
async fn test_a_url_decides_for_every_role_with_reasons() {
    let h = Harness::start().await;
    let mut nm = h.login(Role::NetworkManager).await;
    let t = nm
        .get("/api/policy/test?url=https://www.bet365.com/")
        .await
        .json();
    let roles: Vec<&str> = t
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v["role"].as_str())
        .collect();
    assert_eq!(roles, ["guest", "pupil", "staff"]);
    for v in t.as_array().expect("list") {
        assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()));
    }
    let page = nm.get("/policy/test?url=bet365.com").await;
    assert!(page.body.contains("gambling"), "{}", page.body);
    let r = nm.get("/api/policy/test?url=").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// Staff's verdict for `url` at a school-time (Europe/London) moment.
fn staff_at(h: &Harness, url: &str, at: &str) -> Action {
    let p = h.policy.load();
    let id = p.role_id("staff").expect("role");
    let at = at
        .parse::<jiff::civil::DateTime>()
        .expect("time")
        .to_zoned(jiff::tz::TimeZone::get("Europe/London").expect("tz"))
        .expect("zoned")
        .timestamp();
    p.decide(&schoolgate_classifier::Request::url(id, url, at))
        .action
}

#[tokio::test]
async fn timed_rules_and_term_dates_change_verdicts_by_time_and_day() {
    let h = Harness::start().await;
    let mut nm = h.login(Role::NetworkManager).await;
    let base = nm.get("/api/policy").await.json()["base"]
        .as_str()
        .expect("base")
        .to_owned();
    // Games blocked for staff, except at lunch and after 16:00 on school days;
    // the autumn term with an INSET day. The schedule and the rule that uses it
    // go in one save.
    let r = nm
        .post_json(
            "/api/policy",
            &serde_json::json!({ "base": base, "reason": "SLT: games at lunch and after school", "changes": [
                change("staff", "games", "block"),
                { "op": "set-schedule", "name": "staff-free", "days": "school-days", "times": ["12:15-13:05", "16:00-24:00"] },
                { "op": "add-timed-rule", "role": "staff", "schedule": ["staff-free"], "allow": ["games"] },
                { "op": "set-calendar", "terms": [{ "name": "Autumn 2026", "start": "2026-09-03", "end": "2026-12-18" }], "closures": ["2026-11-27"] },
            ] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let changes = r.json()["changes"].clone();
    assert_eq!(
        changes[2], "roles.staff.timed: added during staff-free: allow games",
        "{changes}"
    );
    assert_eq!(
        changes[3],
        "calendar.terms: added Autumn 2026 2026-09-03..2026-12-18; calendar.closures: added 2026-11-27"
    );
    let url = "https://minecraft.net/";
    // Tuesday 24 November 2026, in term.
    assert_eq!(staff_at(&h, url, "2026-11-24T10:00"), Action::Block);
    assert_eq!(staff_at(&h, url, "2026-11-24T12:30"), Action::Allow);
    assert_eq!(staff_at(&h, url, "2026-11-24T16:30"), Action::Allow);
    // The INSET day, a Saturday, and a day after the term are not school days.
    assert_eq!(staff_at(&h, url, "2026-11-27T12:30"), Action::Block);
    assert_eq!(staff_at(&h, url, "2026-11-28T12:30"), Action::Block);
    assert_eq!(staff_at(&h, url, "2027-01-05T12:30"), Action::Block);
    // Test a URL at a time agrees.
    let t = nm
        .get("/api/policy/test?url=minecraft.net&at=2026-11-24T12:30")
        .await
        .json();
    let staff = t
        .as_array()
        .expect("list")
        .iter()
        .find(|v| v["role"] == "staff")
        .expect("staff")
        .clone();
    assert_eq!(staff["action"], "allow", "{staff}");
    // The file keeps its comments and reads as a school would write it.
    let text = h.config_text();
    assert!(
        text.contains("[[roles.staff.timed]]")
            && text.contains("schedule = \"staff-free\"")
            && text.contains("# the usual"),
        "{text}"
    );
    // The API shows the rule and the calendar; the page lists both.
    let p = nm.get("/api/policy").await.json();
    let staff = p["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .find(|r| r["name"] == "staff")
        .expect("staff")
        .clone();
    assert_eq!(staff["timed"][0]["allow"][0], "games", "{staff}");
    assert_eq!(p["calendar"]["terms"][0]["start"], "2026-09-03");
    assert_eq!(p["calendar"]["closures"][0], "2026-11-27");
    let page = nm.get("/policy/schedules").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("Timed rules")
            && page.body.contains("Autumn 2026: 2026-09-03..2026-12-18")
            && page.body.contains("School calendar"),
        "{}",
        page.body
    );
    // The forms: remove the rule, then change the calendar.
    let r = nm
        .post_form(
            "/policy/timed",
            &[
                ("reason", "games policy withdrawn"),
                ("op", "remove"),
                ("role", "staff"),
                ("index", "0"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(
        r.location().starts_with("/policy/schedules?ok="),
        "{}",
        r.location()
    );
    assert_eq!(staff_at(&h, url, "2026-11-24T12:30"), Action::Block);
    let r = nm
        .post_form(
            "/policy/calendar",
            &[
                ("reason", "term dates 2026-27"),
                ("school_day", "mon"),
                ("school_day", "tue"),
                ("school_day", "wed"),
                ("school_day", "thu"),
                (
                    "terms",
                    "Autumn 2026: 2026-09-03..2026-12-18\nSpring 2027: 2027-01-05..2027-03-26",
                ),
                ("closures", "2026-10-26..2026-10-30"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let c = h.policy.load().config().calendar.clone();
    assert_eq!(c.terms.len(), 2);
    assert_eq!(c.school_days.len(), 4);
    assert_eq!(c.closures.len(), 1);
    let hist = nm.get("/api/policy/history").await.json();
    assert_eq!(hist[0]["reason"], "term dates 2026-27");
    assert!(
        hist[0]["summary"][0]
            .as_str()
            .unwrap_or("")
            .starts_with("calendar.school_days: mon, tue, wed, thu (was mon, tue, wed, thu, fri)"),
        "{}",
        hist[0]
    );
    assert!(
        hist[1]["summary"][0]
            .as_str()
            .unwrap_or("")
            .starts_with("roles.staff.timed: removed during staff-free: allow games"),
        "{}",
        hist[1]
    );
}

#[tokio::test]
async fn bad_timed_rules_and_calendars_are_refused_with_the_reason() {
    let h = Harness::start().await;
    let before = h.config_text();
    let mut nm = h.login(Role::NetworkManager).await;
    for (change, want) in [
        (
            serde_json::json!({ "op": "add-timed-rule", "role": "staff", "schedule": ["nap-time"], "allow": ["games"] }),
            "schedule `nap-time` is not defined",
        ),
        (
            serde_json::json!({ "op": "add-timed-rule", "role": "staff", "schedule": ["lunch"], "allow": ["illegal"] }),
            "`illegal` can never be allowed",
        ),
        (
            serde_json::json!({ "op": "add-timed-rule", "role": "staff", "schedule": ["lunch"] }),
            "must allow, block or flag at least one category",
        ),
        (
            serde_json::json!({ "op": "add-timed-rule", "role": "nobody", "schedule": ["lunch"], "allow": ["games"] }),
            "role `nobody` is not defined",
        ),
        (
            serde_json::json!({ "op": "remove-timed-rule", "role": "staff", "index": 3 }),
            "timed rule 3 of role `staff`",
        ),
        (
            serde_json::json!({ "op": "set-calendar", "terms": [{ "name": "Autumn", "start": "2026-12-18", "end": "2026-09-03" }] }),
            "term 1: it ends (2026-09-03) before it starts (2026-12-18)",
        ),
        (
            serde_json::json!({ "op": "set-calendar", "closures": ["26/10/2026"] }),
            "`26/10/2026` is not a date or a date range",
        ),
        (
            serde_json::json!({ "op": "set-calendar", "school_days": ["funday"] }),
            "`funday` is not a day of the week",
        ),
    ] {
        let r = nm
            .post_json(
                "/api/policy",
                &serde_json::json!({ "reason": "try", "changes": [change] }),
            )
            .await;
        assert!(
            r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::NOT_FOUND,
            "{change}: {} {}",
            r.status,
            r.body
        );
        assert!(r.error().contains(want), "{change}: {}", r.error());
    }
    // Other roles may not change timed rules or the calendar, by form or API.
    for role in [Role::EsafetyLead, Role::Headteacher, Role::Viewer] {
        let mut c = h.login(role).await;
        let r = c
            .post_form(
                "/policy/timed",
                &[
                    ("reason", "x"),
                    ("op", "remove"),
                    ("role", "staff"),
                    ("index", "0"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role}");
        assert!(
            r.body.contains("the filtering policy"),
            "{role}: {}",
            r.body
        );
        let r = c
            .post_form(
                "/policy/calendar",
                &[("reason", "x"), ("school_day", "mon")],
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role}");
        let r = c
            .post_json(
                "/api/policy",
                &serde_json::json!({ "reason": "x", "changes": [{ "op": "set-calendar", "school_days": ["mon"] }] }),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role}");
        assert!(
            r.error()
                .contains("the filtering policy is for the Network manager role")
        );
    }
    assert_eq!(h.config_text(), before, "nothing refused was written");
}
