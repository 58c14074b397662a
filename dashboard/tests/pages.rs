use http::StatusCode;
use schoolgate_dashboard::Role;

use crate::support::Harness;

#[tokio::test]
async fn health_shows_service_figures_to_every_role() {
    let h = Harness::start().await;
    for role in Role::ALL {
        let mut c = h.login(role).await;
        let j = c.get("/api/health").await;
        assert_eq!(j.status, StatusCode::OK, "{role}");
        let j = j.json();
        assert_eq!(j["store"]["ok"], true);
        assert_eq!(j["services"]["dns"]["qps"], 412.5);
        assert!(j["uptime_secs"].as_i64().expect("uptime") >= 15 * 24 * 3600);
        let page = c.get("/health").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            page.body.contains("412.5") && page.body.contains("15 d 2 h"),
            "{role}"
        );
    }
}

#[tokio::test]
async fn lists_show_sources_counts_and_errors_and_reload() {
    let h = Harness::start().await;
    let mut nm = h.login(Role::NetworkManager).await;
    let j = nm.get("/api/lists").await.json();
    let sources = j["sources"].as_array().expect("sources");
    let gambling = sources
        .iter()
        .find(|s| s["name"] == "local-gambling")
        .expect("source");
    assert_eq!(gambling["entries"], 2);
    assert_eq!(gambling["categories"][0][0], "gambling");
    std::fs::write(
        h.dir.path().join("lists/games.txt"),
        "coolmathgames.com\nbad..name\nroblox.com\n",
    )
    .expect("write");
    let r = nm.post_form("/lists/reload", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = nm.get("/lists").await;
    assert!(
        page.body.contains("empty label"),
        "the malformed line is shown"
    );
    let j = nm.get("/api/lists").await.json();
    let games = j["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["name"] == "local-games")
        .cloned()
        .expect("games");
    assert_eq!(games["malformed"], 1);
    assert_eq!(games["entries"], 2);
    // Add a source through the page: it is validated, written and loaded.
    std::fs::write(h.dir.path().join("lists/dating.txt"), "tinder.com\n").expect("write");
    let r = nm
        .post_form(
            "/lists",
            &[
                ("reason", "dating sites"),
                ("name", "local-dating"),
                ("format", "domains"),
                ("category", "dating"),
                ("location", "lists/dating.txt"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(
        h.policy
            .load()
            .list_categories("tinder.com")
            .contains(schoolgate_classifier::Category::Dating)
    );
}
