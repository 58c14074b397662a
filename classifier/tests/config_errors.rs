use schoolgate_classifier::Config;

fn errors(toml: &str) -> Vec<String> {
    match Config::parse("school.toml", toml) {
        Ok(_) => panic!("accepted:\n{toml}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const BASE: &str = "[roles.guest]\nblock = [\"gambling\"]\n";

#[test]
fn a_minimal_config_is_accepted() {
    let c = Config::parse("school.toml", BASE).unwrap();
    assert_eq!(c.policy.default_role, "guest");
    assert_eq!(c.policy.timezone, "Europe/London");
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let e = errors(&format!("{BASE}\n[roles.pupil]\nblok = [\"gambling\"]\n"));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("school.toml:5: roles.pupil.blok: unknown field `blok`, expected one of"),
        "{}",
        e[0]
    );
}

#[test]
fn unknown_top_level_section() {
    let e = errors(&format!("{BASE}[filtering]\nlevel = 3\n"));
    assert!(
        e[0].starts_with("school.toml:3: filtering: unknown field `filtering`"),
        "{}",
        e[0]
    );
}

#[test]
fn unknown_category_names_the_element() {
    let e = errors("[roles.guest]\nblock = [\"gambling\", \"gamblin\"]\n");
    assert!(
        e[0].starts_with(
            "school.toml:2: roles.guest.block[1]: unknown category `gamblin` (known: illegal,"
        ),
        "{}",
        e[0]
    );
}

#[test]
fn unknown_severity() {
    let e = errors("[roles.guest]\nflag = { suicide = \"urgent\" }\n");
    assert!(
        e[0].starts_with("school.toml:2: roles.guest.flag.suicide: unknown variant `urgent`"),
        "{}",
        e[0]
    );
}

#[test]
fn missing_default_role() {
    let e = errors("[roles.pupil]\n");
    assert_eq!(
        e,
        [
            "school.toml: policy.default_role: role `guest` is not defined in [roles] (unknown clients need a role; define it, e.g. [roles.guest])"
        ]
    );
}

#[test]
fn unknown_role_in_network() {
    let e = errors(&format!(
        "{BASE}\n[[networks]]\ncidr = \"10.0.0.0/8\"\nrole = \"pupils\"\n"
    ));
    assert_eq!(
        e,
        ["school.toml:6: networks[0].role: role `pupils` is not defined in [roles]"]
    );
}

#[test]
fn overlapping_networks_with_different_roles() {
    let toml = format!(
        "{BASE}[roles.pupil]\n\n[[networks]]\ncidr = \"10.20.0.0/16\"\nrole = \"pupil\"\n\n\
         [[networks]]\ncidr = \"10.20.5.0/24\"\nrole = \"guest\"\n"
    );
    let e = errors(&toml);
    assert_eq!(
        e,
        [
            "school.toml:10: networks[1].cidr: 10.20.5.0/24 overlaps networks[0] (10.20.0.0/16, role `pupil`) with a different role or school; make them disjoint or map single devices in [[devices]]"
        ]
    );
}

#[test]
fn overlapping_networks_with_the_same_role_are_fine() {
    let toml = format!(
        "{BASE}\n[[networks]]\ncidr = \"10.20.0.0/16\"\nrole = \"guest\"\n\n\
         [[networks]]\ncidr = \"10.20.5.0/24\"\nrole = \"guest\"\n"
    );
    Config::parse("school.toml", &toml).unwrap();
}

#[test]
fn unparseable_schedule_window() {
    let e = errors(&format!(
        "{BASE}\n[schedules.lunch]\ntimes = [\"12:15 to 13:05\"]\n"
    ));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with(
            "school.toml:5: schedules.lunch.times[0]: `12:15 to 13:05` is not a time window"
        ),
        "{}",
        e[0]
    );
}

#[test]
fn unknown_schedule_in_timed_rule() {
    let toml =
        format!("{BASE}\n[[roles.guest.timed]]\nschedule = \"lunchtime\"\nallow = [\"games\"]\n");
    let e = errors(&toml);
    assert_eq!(
        e,
        [
            "school.toml:5: roles.guest.timed[0].schedule: schedule `lunchtime` is not defined in [schedules]"
        ]
    );
}

#[test]
fn illegal_can_never_be_allowed() {
    let toml = format!(
        "{BASE}\n[schedules.lunch]\ntimes = [\"12:00-13:00\"]\n\n[[roles.guest.timed]]\n\
         schedule = \"lunch\"\nallow = [\"games\", \"illegal\"]\n"
    );
    let e = errors(&toml);
    assert_eq!(
        e,
        [
            "school.toml:9: roles.guest.timed[0].allow[1]: `illegal` can never be allowed, by any role or schedule"
        ]
    );
}

#[test]
fn bad_day_name_and_bad_date() {
    let e = errors(&format!(
        "{BASE}\n[calendar]\nschool_days = [\"mon\", \"funday\"]\n"
    ));
    assert!(
        e[0].contains("calendar.school_days[1]: `funday` is not a day of the week"),
        "{}",
        e[0]
    );
    let e = errors(&format!(
        "{BASE}\n[calendar]\nclosures = [\"31/10/2026\"]\n"
    ));
    assert!(
        e[0].starts_with("school.toml:5: calendar.closures[0]: `31/10/2026` is not a date"),
        "{}",
        e[0]
    );
}

#[test]
fn bad_cidr() {
    let e = errors(&format!(
        "{BASE}\n[[networks]]\ncidr = \"10.20.0.0/33\"\nrole = \"guest\"\n"
    ));
    assert!(
        e[0].starts_with("school.toml:5: networks[0].cidr: "),
        "{}",
        e[0]
    );
}

#[test]
fn list_source_needs_a_category_and_a_location() {
    let e = errors(&format!(
        "{BASE}\n[[lists]]\nname = \"mine\"\nformat = \"domains\"\n"
    ));
    assert_eq!(
        e,
        [
            "school.toml:4: lists[0]: give a `path` or a `url`",
            "school.toml:4: lists[0]: a list in this format needs `category` (e.g. category = \"gambling\")",
        ]
    );
}

#[test]
fn bad_local_allow_entry() {
    let e = errors("[roles.guest]\nallow = [\"https://bbc.co.uk\"]\n");
    assert_eq!(
        e,
        [
            "school.toml:2: roles.guest.allow[0]: `https://bbc.co.uk`: write the entry without a scheme, e.g. \"example.com/path\""
        ]
    );
}

#[test]
fn unknown_time_zone_and_extends_cycle() {
    let e = errors(
        "[policy]\ntimezone = \"Europe/Londn\"\n\n[roles.guest]\nextends = \"pupil\"\n\n[roles.pupil]\nextends = \"guest\"\n",
    );
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(
        e[0],
        "school.toml:2: policy.timezone: `Europe/Londn` is not a known IANA time zone (e.g. \"Europe/London\")"
    );
    assert!(
        e[1].contains("roles.guest.extends: role `guest` extends itself"),
        "{}",
        e[1]
    );
}

#[test]
fn dns_listener_needs_upstreams() {
    let e = errors(&format!("[listen]\ndns = [\"127.0.0.1:5353\"]\n\n{BASE}"));
    assert_eq!(
        e,
        [
            "school.toml: dns.upstreams: the DNS filter is listening (listen.dns) but has no upstream resolvers"
        ]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let toml = "[roles.guest]\n\n[[networks]]\ncidr = \"10.0.0.0/8\"\nrole = \"a\"\n\n[[networks]]\ncidr = \"10.1.0.0/16\"\nrole = \"b\"\n";
    let e = errors(toml);
    assert_eq!(e.len(), 3, "{e:?}");
}

#[test]
fn batch_size_follows_the_backend_unless_set() {
    let c = Config::parse("school.toml", BASE).unwrap();
    assert_eq!(c.store.batch_size, None);
    assert_eq!(c.store.batch_size(), 2_000);
    let clickhouse = format!(
        "{BASE}\n[store]\nbackend = \"clickhouse\"\n[store.clickhouse]\nurl = \"http://127.0.0.1:8123\"\n"
    );
    let c = Config::parse("school.toml", &clickhouse).unwrap();
    assert_eq!(c.store.batch_size(), 10_000);
    let set = format!("{BASE}\n[store]\nbatch_size = 500\n");
    assert_eq!(
        Config::parse("school.toml", &set)
            .unwrap()
            .store
            .batch_size(),
        500
    );
    let e = errors(&format!("{BASE}\n[store]\nbatch_size = 0\n"));
    assert!(e.iter().any(|m| m.contains("batch_size")), "{e:?}");
}

#[test]
fn proxy_workers_must_be_at_least_one() {
    let e = errors(&format!("{BASE}[proxy]\nworkers = 0\n"));
    assert!(
        e[0].starts_with("school.toml:4: proxy.workers: invalid value: integer `0`"),
        "{}",
        e[0]
    );
    let e = errors(&format!("{BASE}[proxy]\nworkers = 65\n"));
    assert_eq!(
        e,
        ["school.toml:4: proxy.workers: at most 64 proxy threads"]
    );
    let c = Config::parse("school.toml", &format!("{BASE}[proxy]\nworkers = 3\n")).unwrap();
    assert_eq!(c.proxy.workers.map(|n| n.get()), Some(3));
    let c = Config::parse("school.toml", BASE).unwrap();
    assert_eq!(c.proxy.workers, None, "unset: the proxy's default");
}

#[test]
fn dns_upstreams_plain_and_over_tls() {
    use schoolgate_classifier::config::{Upstream, UpstreamTls};
    let toml = format!(
        "{BASE}[dns]\nupstreams = [\"192.0.2.53:53\", \"tls://9.9.9.9#dns.quad9.net\", \
         \"tls://[2606:4700:4700::1111]:8853\", \"tls://1.1.1.1\"]\n"
    );
    let c = Config::parse("school.toml", &toml).unwrap();
    assert_eq!(
        c.dns.upstreams,
        [
            Upstream::plain("192.0.2.53:53".parse().unwrap()),
            Upstream {
                addr: "9.9.9.9:853".parse().unwrap(),
                tls: Some(UpstreamTls::Name("dns.quad9.net".into())),
            },
            Upstream {
                addr: "[2606:4700:4700::1111]:8853".parse().unwrap(),
                tls: Some(UpstreamTls::Address),
            },
            Upstream {
                addr: "1.1.1.1:853".parse().unwrap(),
                tls: Some(UpstreamTls::Address),
            },
        ]
    );
    // Written back as read (the dashboard saves configs).
    let names: Vec<String> = c.dns.upstreams.iter().map(|u| u.to_string()).collect();
    assert_eq!(
        names,
        [
            "192.0.2.53:53",
            "tls://9.9.9.9:853#dns.quad9.net",
            "tls://[2606:4700:4700::1111]:8853",
            "tls://1.1.1.1:853"
        ]
    );
}

#[test]
fn a_bad_dns_upstream_names_key_and_line() {
    let e = errors(&format!(
        "{BASE}[dns]\nupstreams = [\"tls://dns.quad9.net\"]\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(
            "school.toml:4: dns.upstreams[0]: `tls://dns.quad9.net`: `dns.quad9.net` is not an IP address"
        ),
        "{}",
        e[0]
    );
    let e = errors(&format!(
        "{BASE}[dns]\nupstreams = [\"tls://9.9.9.9#not a name\"]\n"
    ));
    assert!(
        e[0].starts_with("school.toml:4: dns.upstreams[0]: `tls://9.9.9.9#not a name`: `not a name` is not a host name"),
        "{}",
        e[0]
    );
    let e = errors(&format!("{BASE}[dns]\nupstreams = [\"9.9.9.9\"]\n"));
    assert!(
        e[0].starts_with(
            "school.toml:4: dns.upstreams[0]: `9.9.9.9` is not an upstream: write IP:PORT"
        ),
        "{}",
        e[0]
    );
}

#[test]
fn dns_upstream_ca_must_be_a_pem_file() {
    let e = errors(&format!(
        "{BASE}[dns]\nupstreams = [\"tls://9.9.9.9\"]\nupstream_ca = \"/nonexistent/ca.pem\"\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("school.toml:5: dns.upstream_ca: /nonexistent/ca.pem: No such file"),
        "{}",
        e[0]
    );
    let not_pem =
        std::env::temp_dir().join(format!("schoolgate-not-pem-{}.pem", std::process::id()));
    std::fs::write(&not_pem, "just text\n").unwrap();
    let e = errors(&format!(
        "{BASE}[dns]\nupstreams = [\"tls://9.9.9.9\"]\nupstream_ca = \"{}\"\n",
        not_pem.display()
    ));
    assert_eq!(
        e,
        [format!(
            "school.toml:5: dns.upstream_ca: {}: no PEM certificate in it",
            not_pem.display()
        )]
    );
    let _ = std::fs::remove_file(&not_pem);
}
