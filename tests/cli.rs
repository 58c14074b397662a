use crate::support::{schoolgate, shared_data, stdout};

fn demo() -> String {
    format!("{}/examples/demo.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_prints_a_verdict_per_role_with_the_rule() {
    let _ = shared_data();
    let o = schoolgate(&[
        "check",
        "--config",
        &demo(),
        "--role",
        "pupil",
        "https://www.bet365.com/",
        "http://essex.ac.uk/",
    ]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.contains("BLOCK    pupil        https://www.bet365.com/"),
        "{out}"
    );
    assert!(out.contains("blocked for pupil: gambling (list "), "{out}");
    assert!(
        out.contains("ALLOW    pupil        http://essex.ac.uk/"),
        "{out}"
    );
}

#[test]
fn check_json_from_stdin_for_every_role() {
    use std::io::Write;
    let mut child = std::process::Command::new(crate::support::BIN)
        .args([
            "check",
            "--config",
            &demo(),
            "--json",
            "--stdin",
            "--at",
            "2026-11-24 12:30",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"www.facebook.com\n# a comment\n\nhttps://www.google.co.uk/search?q=how+to+kill+myself\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Two inputs × three roles (guest, pupil, staff).
    assert_eq!(lines.len(), 6, "{lines:?}");
    let find = |input: &str, role: &str| {
        lines
            .iter()
            .find(|l| l["role"] == role && l["input"].as_str().unwrap().contains(input))
            .unwrap()
            .clone()
    };
    assert_eq!(find("facebook", "pupil")["action"], "block");
    // Tuesday 12:30 is lunch on a school day: staff may use social networking.
    assert_eq!(find("facebook", "staff")["action"], "allow");
    // Pupils: the search is blocked (violence: "how to kill") and flagged high
    // (suicide) for the safeguarding lead.
    let search = find("google", "pupil");
    assert_eq!(search["action"], "block");
    assert_eq!(search["severity"], "high");
    let categories = search["categories"].as_array().unwrap();
    assert!(
        categories.contains(&"suicide".into()) && categories.contains(&"violence".into()),
        "{search}"
    );
    // Staff: flagged only.
    let staff = find("google", "staff");
    assert_eq!(staff["action"], "flag");
    assert_eq!(staff["severity"], "high");
    assert_eq!(search["search_terms"], "how to kill myself");
    for key in ["input", "role", "action", "categories", "rule", "reason"] {
        assert!(search.get(key).is_some(), "missing {key}");
    }
}

#[test]
fn usage_and_config_errors_exit_non_zero_with_a_message() {
    let o = schoolgate(&["check", "--config", &demo(), "--role", "pupils", "x.com"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("no role `pupils` in the configuration (roles: guest, pupil, staff)")
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[roles.guest]\nblock = [\"gambling\"]\nflag = { suicide = \"urgent\" }\n",
    )
    .unwrap();
    let o = schoolgate(&["config", "check", "--config", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("bad.toml:3: roles.guest.flag.suicide: unknown variant `urgent`"),
        "{out}"
    );
    assert!(out.contains("configuration NOT OK"), "{out}");
}

#[test]
fn config_check_summarises_roles_networks_and_lists() {
    let o = schoolgate(&["config", "check", "--config", &demo()]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("configuration OK"));
    assert!(out.contains("127.0.0.2/32         -> pupil"), "{out}");
    assert!(out.contains("schoolgate/doh"), "{out}");
    assert!(out.contains("blp-gambling"), "{out}");
    assert!(out.contains("entries per category:"));
}

#[test]
fn config_check_lists_dns_upstreams_and_how_they_are_reached() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dot.toml");
    std::fs::write(
        &path,
        "[dns]\nupstreams = [\"10.30.0.10:53\", \"tls://9.9.9.9#dns.quad9.net\", \"tls://1.1.1.1\"]\n\n\
         [roles.guest]\nblock = [\"gambling\"]\n",
    )
    .unwrap();
    let o = schoolgate(&["config", "check", "--config", path.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    for line in [
        "DNS upstreams (3):",
        "  10.30.0.10:53                    plain DNS (UDP, TCP for long answers)",
        "  tls://9.9.9.9:853#dns.quad9.net  DNS over TLS, certificate for dns.quad9.net",
        "  tls://1.1.1.1:853                DNS over TLS, certificate for 1.1.1.1",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "no line {line:?} in:\n{out}"
        );
    }
}

#[test]
fn config_check_warns_when_no_event_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unrecorded.toml");
    std::fs::write(
        &path,
        "[store]\nrecord = false\n\n[roles.guest]\nblock = [\"gambling\"]\n",
    )
    .unwrap();
    let o = schoolgate(&["config", "check", "--config", path.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("warning: [store] record = false: decisions are counted but no event is kept"),
        "{out}"
    );
    // The demo records: no warning there.
    let o = schoolgate(&["config", "check", "--config", &demo()]);
    assert!(!stdout(&o).contains("record = false"));
}

#[test]
fn config_check_reads_the_proxy_users_file_as_the_proxy_would() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.toml");
    std::fs::write(
        &path,
        "[proxy]\nauth = \"required\"\nusers_file = \"users.toml\"\n\n\
         [roles.pupil]\nblock = [\"gambling\"]\n\n[roles.guest]\nblock = [\"gambling\"]\n",
    )
    .unwrap();
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";
    let user = |name: &str, role: &str, hash: &str| {
        format!("[[user]]\nname = \"{name}\"\nrole = \"{role}\"\nhash = \"{hash}\"\n")
    };
    let users = dir.path().join("users.toml");
    // Relative to the config's folder, not to where the command runs.
    std::fs::write(
        &users,
        [
            user("amy", "pupil", hash),
            user("ben", "pupil", hash),
            user("cy", "teachr", hash),
        ]
        .concat(),
    )
    .unwrap();
    let o = schoolgate(&["config", "check", "--config", path.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "proxy users (authentication required): 3 in {}",
            users.display()
        )),
        "{out}"
    );
    assert!(out.contains("  pupil 2, teachr 1"), "{out}");
    assert!(
        out.contains(
            "warning: 1 with a role this config does not define, who would get the default role (guest): cy (teachr)"
        ),
        "{out}"
    );

    // A plain password in the file: nobody could sign in, so the check fails.
    std::fs::write(&users, user("amy", "pupil", "hunter2")).unwrap();
    let o = schoolgate(&["config", "check", "--config", path.to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("user[0] (amy): hash is not an argon2 PHC string"),
        "{out}"
    );
    assert!(out.contains("nobody able to sign in"), "{out}");
}

#[test]
fn proxy_user_add_says_when_the_proxy_would_not_ask_for_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("off.toml");
    std::fs::write(
        &path,
        "[proxy]\nusers_file = \"users.toml\"\n\n[roles.guest]\nblock = [\"gambling\"]\n",
    )
    .unwrap();
    let out = crate::support::proxy_user(&path, &["add", "amy", "--role", "guest"], "pw\n");
    let said = stdout(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("proxy user amy (guest) added in "), "{said}");
    assert!(said.contains("note: [proxy] auth is off in "), "{said}");
    assert!(dir.path().join("users.toml").exists());
}
