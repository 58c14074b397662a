use schoolgate_classifier::{Config, PolicyBuilder};

fn example(name: &str) -> Config {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    Config::parse(name, &text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_example_parses_validates_and_compiles() {
    for name in ["demo.toml", "school.toml", "primary.toml", "trust.toml"] {
        let config = example(name);
        assert!(config.roles.len() >= 3, "{name}");
        let policy = PolicyBuilder::new(config).build().unwrap();
        assert!(policy.role_id("guest").is_some(), "{name}");
    }
}

#[test]
fn the_demo_maps_loopback_addresses_to_roles() {
    let p = PolicyBuilder::new(example("demo.toml")).build().unwrap();
    let role = |ip: &str| {
        p.role(p.client(ip.parse().unwrap(), None).role)
            .name
            .to_string()
    };
    assert_eq!(role("127.0.0.2"), "pupil");
    assert_eq!(role("127.0.0.3"), "staff");
    assert_eq!(role("127.0.0.4"), "guest");
    // Unknown clients fall back to the default role and are marked unknown.
    let c = p.client("127.0.0.9".parse().unwrap(), None);
    assert_eq!(p.role(c.role).name.as_ref(), "guest");
    assert!(!c.known);
}

#[test]
fn a_config_round_trips_through_toml() {
    let config = example("school.toml");
    let text = config.to_toml().unwrap();
    let again = Config::parse("rendered.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config, again);
}
