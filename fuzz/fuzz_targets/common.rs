//! A school's policy for the targets that need one: the shipped curated lists,
//! keywords on, three roles by network, SafeSearch and YouTube restriction.

use std::path::Path;

use schoolgate_classifier::{Config, Policy};

pub const CONFIG: &str = r#"
[policy]
default_role = "guest"
node = "fuzz"
keywords = true
curated_lists = true

[[schools]]
id = "hillside"
name = "Hillside Primary"

[roles.pupil]
block = ["pornography", "gambling", "proxy", "vpn", "doh", "social-networking", "malware"]
flag = { self-harm = "high" }
safesearch = "strict"
youtube = "strict"

[roles.staff]
block = ["pornography", "malware"]

[roles.guest]
extends = "pupil"
youtube = "moderate"

[[networks]]
cidr = "127.0.0.2/32"
role = "pupil"
school = "hillside"

[[networks]]
cidr = "127.0.0.3/32"
role = "staff"
school = "hillside"

[[networks]]
cidr = "127.0.0.4/32"
role = "guest"
school = "hillside"

[dns]
upstreams = ["127.0.0.1:9"]

[store]
record = false
"#;

/// The compiled policy, with `[store]` paths under `dir`.
pub fn policy(dir: &Path) -> Policy {
    let text = format!(
        "{CONFIG}path = \"{d}/events.sqlite\"\nspool_dir = \"{d}/spool\"\n\
         dead_letter = \"{d}/dead-letter.jsonl\"\n",
        d = dir.display()
    );
    let config = Config::parse("fuzz.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let (policy, _) = schoolgate_lists::load::compile(config, dir, dir).expect("policy compiles");
    policy
}
