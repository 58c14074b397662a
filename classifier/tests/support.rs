use jiff::Timestamp;
use schoolgate_classifier::{Category, Config, Policy, PolicyBuilder, Request, Verdict};

/// A small school: pupil, staff, guest; lunch and after-school schedules.
pub const SMALL_SCHOOL: &str = r#"
[policy]
default_role = "guest"

[calendar]
terms = [{ name = "Autumn", start = "2026-09-03", end = "2026-12-18" }]
closures = ["2026-10-26..2026-10-30"]

[schedules.lunch]
times = ["12:15-13:05"]

[schedules.after-school]
times = ["16:00-24:00"]

[roles.pupil]
block = ["pornography", "gambling", "proxy", "social-networking", "games"]
flag = { self-harm = "high", suicide = "high", pornography = "medium", gambling = "low" }
allow = ["bbc.co.uk", "games.example.org/maths"]
deny = ["tricky.bbc.co.uk"]
safesearch = "strict"
youtube = "moderate"

[roles.staff]
block = ["pornography", "gambling", "social-networking"]
flag = { suicide = "high" }

[[roles.staff.timed]]
schedule = ["lunch", "after-school"]
allow = ["social-networking"]

[roles.guest]
extends = "pupil"
block = ["streaming"]

[[networks]]
cidr = "10.20.0.0/16"
role = "pupil"
school = "hillside"

[[networks]]
cidr = "10.30.0.0/16"
role = "staff"
school = "hillside"

[[devices]]
ip = "10.20.9.10"
role = "staff"
name = "library-desk"

[[users]]
name = "j.okafor"
role = "staff"

[[schools]]
id = "hillside"
name = "Hillside"
"#;

/// Builds a policy from TOML text plus `(list, category, entry)` triples; an entry
/// with a `/` is a URL entry.
pub fn policy(toml: &str, entries: &[(&str, Category, &str)]) -> Policy {
    let config = Config::parse("test.toml", toml).unwrap_or_else(|e| panic!("{e}"));
    let mut b = PolicyBuilder::new(config);
    for (list, category, entry) in entries {
        let id = b.list(list).unwrap();
        match entry.split_once('/') {
            Some((host, path)) => b.add_url(id, *category, host, &format!("/{path}")),
            None => b.add_domain(id, *category, entry),
        }
    }
    b.build().unwrap()
}

/// The standard small school with a handful of list entries, compiled once for
/// all the tests: compiling it takes half a second in a debug build, which the
/// property tests paid for each of their 256 cases (two minutes each).
pub fn school() -> &'static Policy {
    static SCHOOL: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();
    SCHOOL.get_or_init(|| {
        policy(
            SMALL_SCHOOL,
            &[
                ("ut1/gambling", Category::Gambling, "bet365.com"),
                ("ut1/adult", Category::Pornography, "pornsite.example"),
                (
                    "ut1/social_networks",
                    Category::SocialNetworking,
                    "facebook.com",
                ),
                ("ut1/games", Category::Games, "games.example.org"),
                ("ut1/games", Category::Games, "bbc.co.uk/cbbc/games"),
                ("iwf", Category::Illegal, "bad.example/abuse"),
                ("iwf", Category::Illegal, "illegal.example"),
                ("ut1/redirector", Category::Proxy, "bbc.co.uk/proxied"),
            ],
        )
    })
}

/// A Tuesday in term, 10:00 London time (in a lesson).
pub fn tuesday_lesson() -> Timestamp {
    "2026-11-24T10:00:00+00:00[Europe/London]"
        .parse::<jiff::Zoned>()
        .unwrap()
        .timestamp()
}

pub fn at(s: &str) -> Timestamp {
    format!("{s}[Europe/London]")
        .parse::<jiff::Zoned>()
        .unwrap()
        .timestamp()
}

pub fn decide(p: &Policy, role: &str, url: &str, t: Timestamp) -> Verdict {
    let role = p.role_id(role).unwrap_or_else(|| panic!("no role {role}"));
    p.decide(&Request::url(role, url, t))
}
