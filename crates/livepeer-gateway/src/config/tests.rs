//! Config loading and validation.

use std::path::Path;

use super::*;
use crate::orchestrator::price::Price;

fn load(f: Flags, file: &str) -> Result<Config, ConfigError> {
    Config::validate(f.or(Flags::from_text(file, Path::new("test.toml"))?), None)
}

#[test]
fn defaults_follow_go_livepeer() {
    let c = load(Flags::default(), "").unwrap();
    assert_eq!(c.http_addr.to_string(), "127.0.0.1:9935");
    assert_eq!(c.cli_addr.to_string(), "127.0.0.1:5935");
    assert!(c.requirements.max_price.is_none());
    assert!(matches!(c.orchestrators, OrchSource::Static(ref v) if v.is_empty()));
}

#[test]
fn flags_override_file() {
    let flags = Flags {
        discovery: Discovery { orch_addr: Some("a.example,:9000".into()), ..Default::default() },
        ..Flags::default()
    };
    let c = load(flags, "orch-addr = [\"b.example\"]\ncli-addr = \":6000\"\nmax-price-per-unit = 5\npixels-per-unit = 2").unwrap();
    let OrchSource::Static(urls) = &c.orchestrators else { panic!() };
    assert_eq!(urls[0].as_str(), "https://a.example:8935/");
    assert_eq!(urls[1].as_str(), "https://127.0.0.1:9000/");
    assert_eq!(c.cli_addr.to_string(), "127.0.0.1:6000");
    assert_eq!(c.requirements.max_price, Some(Price::new(5, 2).unwrap()));
}

#[test]
fn errors_name_the_setting() {
    let cases: Vec<(Flags, &str, &str)> = vec![
        (Flags {
                listen: Listen { http_addr: Some("nonsense:port".into()), ..Default::default() },
                ..Flags::default()
            }, "", "--http-addr"),
        (Flags {
                discovery: Discovery { orch_addr: Some("ftp://x".into()), ..Default::default() },
                ..Flags::default()
            }, "", "--orch-addr"),
        (
            Flags {
                discovery: Discovery {
                    discovery_timeout: Some("3 parsecs".into()),
                    ..Default::default()
                },
                ..Flags::default()
            },
            "",
            "--discovery-timeout",
        ),
        (
            Flags {
                listen: Listen { http_header_timeout: Some("0s".into()), ..Default::default() },
                ..Flags::default()
            },
            "",
            "--http-header-timeout",
        ),
        (Flags::default(), "http-header-timeout = \"soon\"", "--http-header-timeout"),
        (Flags {
                prices: Prices { pixels_per_unit: Some(0), ..Default::default() },
                ..Flags::default()
            }, "", "--pixels-per-unit"),
        (
            Flags {
                prices: Prices {
                    max_price_per_capability: Some(
                        r#"{"capabilities_prices":[{"pipeline":"text-to-imag","price_per_unit":1}]}"#
                            .into(),
                    ),
                    ..Default::default()
                },
                ..Flags::default()
            },
            "",
            "--max-price-per-capability",
        ),
        (
            Flags {
                prices: Prices { orch_blocklist: Some("0x1234".into()), ..Default::default() },
                ..Flags::default()
            },
            "",
            "--orch-blocklist",
        ),
        (
            Flags {
                discovery: Discovery {
                    network: Some("arbitrum-one-mainnet".into()),
                    ..Default::default()
                },
                ..Flags::default()
            },
            "",
            "--network",
        ),
        (Flags::default(), "no-such-key = 1", "--config"),
    ];
    for (flags, file, setting) in cases {
        let err = load(flags, file).unwrap_err();
        assert_eq!(err.setting, setting, "{err}");
    }
}

#[test]
fn per_model_prices_and_runner_versions() {
    let flags = Flags {
        prices: Prices {
            max_price_per_capability: Some(r#"{"capabilities_prices":[
            {"pipeline":"text-to-image","model_id":"sd-turbo","price_per_unit":"10","pixels_per_unit":3},
            {"pipeline":"llm","price_per_unit":7}]}"#.into()),
            ai_min_runner_version: Some(r#"[{"pipeline":"llm","model_id":"m","minVersion":"0.14.0"}]"#.into()),
            max_price_per_unit: Some(100),
            ..Default::default()
        },
        ..Flags::default()
    };
    let c = load(flags, "").unwrap();
    let r = &c.requirements;
    let t2i = crate::orchestrator::JobKey::ai("text-to-image", "sd-turbo").unwrap();
    let other = crate::orchestrator::JobKey::ai("text-to-image", "x").unwrap();
    let llm = crate::orchestrator::JobKey::ai("llm", "anything").unwrap();
    assert_eq!(r.max_price(&t2i), Some(Price::new(10, 3).unwrap()));
    assert_eq!(r.max_price(&other), Some(Price::new(100, 1).unwrap()));
    assert_eq!(r.max_price(&llm), Some(Price::new(7, 1).unwrap()));
    assert_eq!(r.min_runner.get(&(33, "m".to_owned())).map(String::as_str), Some("0.14.0"));
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
    assert!(parse_duration("-1s").is_err());
    assert!(parse_duration("1 week").is_err());
}
