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
fn the_per_address_cap_is_off_by_default_and_may_reach_the_port_cap() {
    assert_eq!(load(Flags::default(), "").unwrap().max_connections_per_address, 0);
    let c = load(Flags::default(), "max-connections = 4\nmax-connections-per-address = 4");
    let c = c.unwrap();
    assert_eq!((c.max_connections, c.max_connections_per_address), (4, 4));
    let err = load(Flags::default(), "max-connections = 4\nmax-connections-per-address = 5")
        .unwrap_err()
        .to_string();
    assert!(err.contains("--max-connections-per-address") && err.contains("(4)"), "{err}");
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
        (Flags::default(), "http-idle-timeout = \"0s\"", "--http-idle-timeout"),
        (Flags::default(), "max-connections = 0", "--max-connections"),
        (
            Flags::default(),
            "max-connections = 4\nmax-connections-per-address = 5",
            "--max-connections-per-address",
        ),
        // Above the default --max-connections (384).
        (Flags::default(), "max-connections-per-address = 385", "--max-connections-per-address"),
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
        (Flags::default(), "config = \"other.toml\"", "--config"),
        (Flags::default(), "help = true", "--config"),
        (
            Flags::default(),
            "remote-signer-url = \"s.example\"\nremote-signer-headers = \"nocolon\"",
            "--remote-signer-headers",
        ),
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

/// The top-level parser, as `main` builds it.
#[derive(Debug, clap::Parser)]
struct Cli {
    #[command(flatten)]
    flags: Flags,
}

/// `args` parsed as the binary parses them. With `with_env` false the `LP_*` variables are
/// switched off, so that the test does not depend on the environment it runs in.
fn parse(args: &[&str], with_env: bool) -> Flags {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Cli::command();
    if !with_env {
        command = command.mut_args(|a| a.env(None));
    }
    let argv = std::iter::once("livepeer-gateway").chain(args.iter().copied());
    let matches = command.try_get_matches_from(argv).unwrap();
    Cli::from_arg_matches(&matches).unwrap().flags
}

/// One setting of each kind, as a config shows it: a duration (`--eject-base`), a list
/// (`--orch-addr`), a secret (`--live-ai-auth-api-key`) and a bool (`--ai-result-data-urls`).
fn observed(c: &Config) -> (Duration, Vec<String>, Option<String>, bool) {
    use secrecy::ExposeSecret;
    let OrchSource::Static(urls) = &c.orchestrators else { panic!("a static list") };
    let key = c.live.auth_webhook.as_ref().and_then(|w| w.api_key.as_ref());
    (
        c.eject.base,
        urls.iter().map(ToString::to_string).collect(),
        key.map(|k| k.expose_secret().to_owned()),
        c.ai.data_urls,
    )
}

/// The file layer of the precedence tests (the webhook URL only lets the key be used).
const LAYER_FILE: &str = r#"
eject-base = "3s"
orch-addr = ["file.example"]
live-ai-auth-webhook-url = "http://auth.example/"
live-ai-auth-api-key = "file-secret"
ai-result-data-urls = true
"#;

/// The flag layer of the precedence tests.
const LAYER_FLAGS: [&str; 4] = [
    "--eject-base=5s",
    "--orch-addr=flag.example,:9000",
    "--live-ai-auth-api-key=flag-secret",
    "--ai-result-data-urls",
];

/// The variable layer, set by [`precedence_of_variables`] on a child process.
const LAYER_ENV: [(&str, &str); 4] = [
    ("LP_EJECTBASE", "4s"),
    ("LP_ORCHADDR", "env.example"),
    ("LP_LIVEAIAUTHAPIKEY", "env-secret"),
    ("LP_AIRESULTDATAURLS", "false"),
];

fn file_layer() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, LAYER_FILE).unwrap();
    let arg = format!("--config={}", path.display());
    (dir, arg)
}

fn expect(eject: u64, orch: &[&str], key: Option<&str>, data_urls: bool) -> impl std::fmt::Debug {
    let orch = orch.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    (Duration::from_secs(eject), orch, key.map(str::to_owned), data_urls)
}

fn check(observed: (Duration, Vec<String>, Option<String>, bool), expected: impl std::fmt::Debug) {
    assert_eq!(format!("{observed:?}"), format!("{expected:?}"));
}

#[test]
fn file_beats_defaults_and_flags_beat_the_file() {
    let defaults = Config::load(parse(&[], false)).unwrap();
    check(observed(&defaults), expect(2, &[], None, false));

    let (_dir, config) = file_layer();
    let from_file = Config::load(parse(&[&config], false)).unwrap();
    check(
        observed(&from_file),
        expect(3, &["https://file.example:8935/"], Some("file-secret"), true),
    );

    let mut args = vec![config.as_str()];
    args.extend(&LAYER_FLAGS[..3]);
    args.push("--ai-result-data-urls=false");
    let from_flags = Config::load(parse(&args, false)).unwrap();
    let flag_orchs = ["https://flag.example:8935/", "https://127.0.0.1:9000/"];
    check(observed(&from_flags), expect(5, &flag_orchs, Some("flag-secret"), false));
}

/// Runs [`precedence_child`] in a child process with [`LAYER_ENV`] set (and every other `LP_*`
/// variable removed): setting variables in this process would race other tests.
#[test]
fn precedence_of_variables() {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child.args(["config::tests::precedence_child", "--exact", "--ignored", "--nocapture"]);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LP_") {
            child.env_remove(name);
        }
    }
    let out = child.envs(LAYER_ENV).env("CONFIG_PRECEDENCE_CHILD", "1").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the child ran the test: {stdout}");
}

/// Variables beat the file; flags beat variables. Run by [`precedence_of_variables`].
#[test]
#[ignore = "run in a child process by precedence_of_variables"]
fn precedence_child() {
    if std::env::var_os("CONFIG_PRECEDENCE_CHILD").is_none() {
        return;
    }
    let (_dir, config) = file_layer();
    let from_env = Config::load(parse(&[&config], true)).unwrap();
    check(
        observed(&from_env),
        expect(4, &["https://env.example:8935/"], Some("env-secret"), false),
    );

    let mut args = vec![config.as_str()];
    args.extend(LAYER_FLAGS);
    let from_flags = Config::load(parse(&args, true)).unwrap();
    let flag_orchs = ["https://flag.example:8935/", "https://127.0.0.1:9000/"];
    check(observed(&from_flags), expect(5, &flag_orchs, Some("flag-secret"), true));
}

/// Every `[default: X]` in a help text is the default the config really applies: giving `X`
/// explicitly changes nothing.
#[test]
fn help_text_defaults_are_the_applied_defaults() {
    use clap::CommandFactory;
    let defaults = format!("{:?}", Config::load(parse(&[], false)).unwrap());
    let mut checked = 0;
    for arg in Cli::command().get_arguments() {
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        let Some(value) = help.split("[default: ").nth(1).and_then(|t| t.split(']').next()) else {
            continue;
        };
        let long = arg.get_long().unwrap();
        if long == "public-url" {
            continue; // "http:// + the listener's address": not a value
        }
        let given = format!("--{long}={value}");
        let config = Config::load(parse(&[&given], false)).unwrap();
        assert_eq!(format!("{config:?}"), defaults, "{given}");
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} defaults found");
}

/// Every flag (but `--config`) is a file key, read into its section.
#[test]
fn every_flag_is_a_file_key() {
    use clap::CommandFactory;
    for arg in Cli::command().get_arguments() {
        let long = arg.get_long().unwrap();
        if long == "config" || long == "help" || long == "version" {
            continue;
        }
        let err = load(Flags::default(), &format!("{long} = {{}}")).unwrap_err();
        assert_eq!(err.setting, "--config", "{long}: {err}");
        assert!(!err.message.contains("unknown key"), "{long}: {err}");
    }
}

#[test]
fn the_remote_signer_is_validated_once() {
    let flags = parse(
        &["--remote-signer-url=signer.example/base", "--remote-signer-headers=x-a:1, x-b : two"],
        false,
    );
    let c = Config::validate(flags, None).unwrap();
    let signer = c.remote_signer.unwrap();
    assert_eq!(signer.url.as_str(), "https://signer.example/base/");
    assert_eq!(signer.headers["x-a"], "1");
    assert_eq!(signer.headers["x-b"], "two");
    assert!(signer.headers["x-b"].is_sensitive());
    let flags = parse(&["--remote-signer-url=s.example", "--remote-signer-headers=nocolon"], false);
    assert_eq!(Config::validate(flags, None).unwrap_err().setting, "--remote-signer-headers");
}

#[test]
fn networks_have_go_livepeers_controllers_and_chain_ids() {
    let key = "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d";
    let chain = |network: &str, controller: Option<&str>, registry: Option<&str>| {
        let flags = Flags {
            discovery: Discovery { network: Some(network.into()), ..Default::default() },
            payment: Payment {
                eth_url: Some("http://127.0.0.1:8545".into()),
                eth_controller: controller.map(Into::into),
                ai_service_registry: registry.map(Into::into),
                ..Default::default()
            },
            ..Flags::default()
        };
        Config::validate(flags, Some(SecretString::from(key))).map(|c| c.chain.unwrap())
    };
    let arb = chain("arbitrum-one-mainnet", None, None).unwrap();
    assert_eq!(arb.network.chain_id(), Some(42161));
    assert_eq!(arb.controller.to_checksum(None), "0xD8E8328501E9645d16Cf49539efC04f734606ee4");
    assert_eq!(arb.ai_service_registry, None);
    let l1 = chain("mainnet", None, Some("true")).unwrap();
    assert_eq!(l1.network.chain_id(), Some(1));
    assert_eq!(
        l1.controller,
        "0xf96d54e490317c557a967abfa5d6e33006be69b3".parse::<livepeer_pm::Address>().unwrap()
    );
    assert_eq!(
        l1.ai_service_registry.unwrap().to_checksum(None),
        "0x04C0b249740175999E5BF5c9ac1dA92431EF34C5"
    );
    // --eth-controller overrides the preset; the chain id is still checked.
    let mine = "0x00000000000000000000000000000000000000c0";
    let over = chain("arbitrum-one-mainnet", Some(mine), None).unwrap();
    assert_eq!(over.controller, mine.parse::<livepeer_pm::Address>().unwrap());
    assert_eq!(over.network.chain_id(), Some(42161));
    // A custom network needs its Controller and has no chain id to check.
    let dev = chain("devnet", Some(mine), None).unwrap();
    assert!(dev.network.is_onchain() && dev.network.chain_id().is_none());
    assert_eq!(chain("devnet", None, None).unwrap_err().setting, "--network");
    assert_eq!(chain("mainnet", None, Some("0x12")).unwrap_err().setting, "--ai-service-registry");
    // Off-chain with --eth-url reads the funds only: the Controller is required.
    assert_eq!(chain("offchain", None, None).unwrap_err().setting, "--eth-controller");
    assert!(!chain("offchain", Some(mine), None).unwrap().network.is_onchain());
}

#[test]
fn cors_is_on_for_any_non_empty_value_as_go_livepeer_reads_it() {
    let allow = |args: &[&str]| {
        let flags = parse(args, false);
        Config::validate(flags, None).unwrap().live.allow_cors
    };
    assert!(!allow(&[]));
    assert!(!allow(&["--live-ai-allow-cors", ""]));
    assert!(allow(&["--live-ai-allow-cors", "1"]));
    assert!(allow(&["--live-ai-allow-cors", "true"]));
}

/// `--help` shows no secret's value: clap prints `[env: NAME=value]` for a flag whose variable
/// is set unless told not to, and a URL may carry an API key (`--eth-url`), a password
/// (`--database-url`) or a token in its path or query. Every flag named as one of these hides it.
#[test]
fn help_hides_the_values_of_secret_variables() {
    use clap::CommandFactory;
    let secret = ["-url", "-token", "-key", "-password", "-headers", "-secret"];
    let mut hidden = 0;
    for arg in Cli::command().get_arguments() {
        let long = arg.get_long().unwrap();
        if arg.get_env().is_none() || !secret.iter().any(|s| long.ends_with(s)) {
            continue;
        }
        // `--public-url` is the gateway's own address, printed in every answer anyway.
        if long == "public-url" {
            continue;
        }
        assert!(arg.is_hide_env_values_set(), "--{long} would show its variable's value");
        hidden += 1;
    }
    assert!(hidden >= 14, "only {hidden} secret flags found");
}

/// A file's syntax or type error says where and what, never the line or the value: a
/// password or token written without quotes must not reach stderr.
#[test]
fn file_errors_name_the_place_not_the_value() {
    let cases = [
        ("orch-addr = \"a\"\neth-password = 19283746\n", "line 2", "eth-password"),
        ("admin-token = s3cr3tT0ken\n", "line 1", "admin-token"),
        ("database-url = [1, \"postgres://u:pw@h/db\"]\n", "line 1", "database-url"),
    ];
    for (text, line, key) in cases {
        let err = load(Flags::default(), text).unwrap_err().to_string();
        assert!(err.contains(line) && err.contains(key), "{err}");
        for secret in ["19283746", "s3cr3tT0ken", "pw@h"] {
            assert!(!err.contains(secret), "{err}");
        }
    }
}
