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
