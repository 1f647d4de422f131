//! The families' label bounds, over the text exposition.

use super::*;

/// The exposition without the node's labels, which every sample ends with.
fn text(m: &Metrics) -> String {
    let node = m.node.load();
    let all = node.all();
    let alone = format!("{{{}}}", &all[1..]);
    m.encode().replace(&alone, "").replace(all, "")
}

fn series(m: &Metrics, family: &str) -> Vec<String> {
    text(m).lines().filter(|l| l.starts_with(family)).map(str::to_owned).collect()
}

#[test]
fn labels_are_bounded_by_the_pool() {
    let m = Metrics::new();
    let sd = JobKey::ai("text-to-image", "sd").unwrap();
    m.available([(&sd, 1)]);
    m.pool_members(["http://o:1/", "https://t:2"]);
    let made_up = JobKey::ai("text-to-image", "made/up").unwrap();
    m.ai_answered(&sd, "https://elsewhere:3", None, Some(0.5));
    m.ai_answered(&made_up, "https://t:2", None, Some(0.25));
    m.ai_error(&made_up, "https://t:2", "x");
    m.ai_error(&sd, "https://elsewhere:3", "x");
    m.ai_error(&sd, "", "no_orchestrator");
    let requested = series(&m, "livepeer_ai_models_requested{");
    assert!(requested.iter().any(|l| l.contains("model_name=\"sd\"} 1")), "{requested:?}");
    assert!(requested.iter().any(|l| l.contains("model_name=\"other\"} 1")), "{requested:?}");
    let errors = series(&m, "livepeer_ai_request_errors{").join("\n");
    assert!(errors.contains("model_name=\"other\",orchestrator_uri=\"https://t:2\""));
    assert!(errors.contains("model_name=\"sd\",orchestrator_uri=\"other\""));
    assert!(errors.contains("model_name=\"sd\",orchestrator_uri=\"\""));
    assert!(!errors.contains("made/up") && !errors.contains("elsewhere"), "{errors}");
    let scores = series(&m, "livepeer_ai_request_latency_score{").join("\n");
    assert!(scores.contains("model_name=\"sd\",orchestrator_uri=\"other\"} 0.5"), "{scores}");
    assert!(scores.contains("model_name=\"other\",orchestrator_uri=\"https://t:2\"} 0.25"));
    // No longer offered: from now on, `other`.
    m.available([]);
    m.ai_answered(&sd, "", None, None);
    let requested = series(&m, "livepeer_ai_models_requested{").join("\n");
    assert!(requested.contains("model_name=\"other\"} 2"), "{requested}");
}

#[test]
fn a_live_stream_ends_on_the_series_it_started_on() {
    let m = Metrics::new();
    let comfy = JobKey::ai("live-video-to-video", "comfy").unwrap();
    m.available([(&comfy, 1)]);
    m.live_stream_started("comfy");
    m.live_stream_started("made-up");
    // The offer goes away while the stream runs: it still ends where it started.
    m.available([]);
    m.live_stream_ended("comfy");
    m.live_stream_ended("made-up");
    let streams = series(&m, "livepeer_gateway_live_streams").join("\n");
    assert!(streams.contains("pipeline=\"comfy\"} 0"), "{streams}");
    assert!(streams.contains("pipeline=\"other\"} 0"), "{streams}");
    assert!(!streams.contains("made-up"), "{streams}");
}

#[test]
fn labels_hashed_as_one_value_keep_their_series_apart() {
    let m = Metrics::new();
    let (ab, a) = (JobKey::ai("llm", "ab").unwrap(), JobKey::ai("llm", "a").unwrap());
    m.available([(&ab, 1), (&a, 1)]);
    m.pool_members(["http://o:1", "http://bo:1"]);
    let ms = Duration::from_millis(1);
    // Equal labels made apart land on one series; the values' boundaries count.
    m.ai_latency(&ab, "http://o:1", "ok", ms);
    m.ai_latency(&ab.clone(), "http://o:1", "ok", ms);
    m.ai_latency(&a, "http://bo:1", "ok", ms);
    m.ai_latency(&ab, "http://o:1", "stream", ms);
    let counts = series(&m, "livepeer_gateway_ai_request_duration_seconds_count").join("\n");
    let count = |model: &str, orch: &str, outcome: &str| {
        let label =
            format!("model_name=\"{model}\",orchestrator_uri=\"{orch}\",outcome=\"{outcome}\"");
        counts
            .lines()
            .filter(|l| l.contains(&label))
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(count("ab", "http://o:1", "ok"), ["2"], "{counts}");
    assert_eq!(count("a", "http://bo:1", "ok"), ["1"], "{counts}");
    assert_eq!(count("ab", "http://o:1", "stream"), ["1"], "{counts}");
    m.ai_answered(&ab, "", None, None);
    m.ai_answered(&ab, "", None, None);
    m.ai_answered(&a, "", None, None);
    let requested = series(&m, "livepeer_ai_models_requested{").join("\n");
    assert!(requested.contains("model_name=\"ab\"} 2"), "{requested}");
    assert!(requested.contains("model_name=\"a\"} 1"), "{requested}");
}

/// How many series of `family` the exposition holds.
fn count(m: &Metrics, family: &str) -> usize {
    text(m).lines().filter(|l| l.starts_with(family)).count()
}

/// A pool whose every refresh brings new names (an orchestrator renaming its capabilities,
/// orchestrators coming and going) keeps a bounded number of series, while the names in the
/// pool keep theirs.
#[test]
fn series_of_names_that_left_the_pool_are_let_go() {
    let m = Metrics::new();
    let stays = JobKey::ai("llm", "stays").unwrap();
    for i in 0..2_000 {
        let model = JobKey::ai("llm", &format!("m{i}")).unwrap();
        let cap = JobKey::byoc(&format!("cap{i}"));
        let orch = format!("https://o{i}:1");
        m.available([(&stays, 1), (&model, 1), (&cap, 1)]);
        m.pool_members([orch.as_str(), "https://stays:1"]);
        m.ai_answered(&model, "", None, None);
        m.ai_answered(&stays, "", None, None);
        m.ai_error(&model, &orch, "x");
        m.byoc_error(&cap, "failed");
        m.selection_counter(&orch).inc();
        m.selection_counter("https://stays:1").inc();
        m.discovered(&orch, Duration::from_millis(1));
        m.discovery_error(&orch, "unreachable");
    }
    // The names retired since the last clearing, plus the two that stay; 2,000 without it.
    let bound = 256 + 2;
    for family in [
        "livepeer_ai_models_requested{",
        "livepeer_ai_request_errors{",
        "livepeer_gateway_byoc_attempt_errors_total",
        "livepeer_gateway_selections_total",
        "livepeer_discovery_errors_total",
        "livepeer_gateway_discovery_latency_seconds_count",
    ] {
        let n = count(&m, family);
        assert!(n > 0 && n <= bound, "{family}: {n} series, at most {bound}");
    }
    // Names still in the pool keep their series; a selection counter handed out earlier still
    // counts on the series shown.
    let text = text(&m);
    assert!(text.contains("model_name=\"stays\""), "{text}");
    assert!(
        text.contains(
            "livepeer_gateway_selections_total{orchestrator_uri=\"https://stays:1\"} 2000"
        )
    );
}

/// `gateway_live_streams` lets go of the series of pipelines no longer offered too, but not
/// of one that counts a running stream: that stream still ends on it, and the series goes at
/// a later letting go.
#[test]
fn live_stream_series_of_retired_pipelines_are_let_go_once_idle() {
    let m = Metrics::new();
    let live = |name: &str| JobKey::ai("live-video-to-video", name).unwrap();
    m.available([(&live("held"), 1)]);
    m.live_stream_started("held");
    let churn = |from: usize, to: usize| {
        for i in from..to {
            let pipeline = format!("p{i}");
            m.available([(&live(&pipeline), 1)]);
            m.live_stream_started(&pipeline);
            m.live_stream_ended(&pipeline);
        }
    };
    churn(0, 2_000);
    let family = "livepeer_gateway_live_streams";
    let n = count(&m, family);
    assert!(n <= retire::RETIRED_MAX + 2, "{n} series, 2,001 without letting go");
    let streams = series(&m, family).join("\n");
    assert!(streams.contains("pipeline=\"held\"} 1"), "{streams}");
    m.live_stream_ended("held");
    let streams = series(&m, family).join("\n");
    assert!(streams.contains("pipeline=\"held\"} 0"), "{streams}");
    assert!(!streams.contains("-1"), "{streams}");
    churn(2_000, 2_000 + retire::RETIRED_MAX);
    let streams = series(&m, family).join("\n");
    assert!(!streams.contains("held"), "{streams}");
}

/// A pool that does not change is never cleared: counters keep counting across censuses.
#[test]
fn a_steady_pool_keeps_its_counters() {
    let m = Metrics::new();
    let sd = JobKey::ai("text-to-image", "sd").unwrap();
    for _ in 0..1_000 {
        m.available([(&sd, 1)]);
        m.pool_members(["https://o:1"]);
        m.ai_answered(&sd, "", None, None);
    }
    let requested = series(&m, "livepeer_ai_models_requested{").join("\n");
    assert!(requested.contains("model_name=\"sd\"} 1000"), "{requested}");
}

/// The series an operator's go-livepeer dashboards read: its names (no `_total` on its
/// counters that have none), its `node_id`/`node_type` on every series, its funds gauges in
/// gwei, the price of answered requests, the pool's size, and the process series.
#[test]
fn go_livepeer_s_names_and_labels() {
    let m = Metrics::new();
    m.set_account("0xAbC");
    let sd = JobKey::ai("text-to-image", "sd").unwrap();
    m.available([(&sd, 2)]);
    m.pool_members(["https://o:1"]);
    m.pool_states([("healthy", 2), ("ejected", 1)]);
    m.ai_answered(&sd, "", Some((10, 4)), None);
    m.sender_funds("0xAbC", 1_500_000_000, 2_000_000_000_000);
    let pay = livepeer_pm::Ratio::from_u64(3_000_000_000);
    m.paid("https://o:1", &sd, 2, &pay, &pay);
    m.transcode_retried(2);
    m.transcode_retried(11);
    m.transcode_retried(12);
    let out = m.encode();
    let node = format!(",node_id=\"0xAbC-{}\",node_type=\"bctr\"", host_name());
    let want = [
        "# TYPE livepeer_tickets_sent counter".to_owned(),
        format!(
            "livepeer_tickets_sent{{orchestrator_uri=\"https://o:1\",pipeline=\"text-to-image\"{node}}} 2"
        ),
        format!(
            "livepeer_ticket_value_sent{{orchestrator_uri=\"https://o:1\",pipeline=\"text-to-image\"{node}}} 3.0"
        ),
        format!(
            "livepeer_ai_models_requested{{pipeline=\"text-to-image\",model_name=\"sd\"{node}}} 1"
        ),
        format!(
            "livepeer_ai_request_price{{pipeline=\"text-to-image\",model_name=\"sd\"{node}}} 2.5"
        ),
        format!("livepeer_transcode_retried{{try=\"2\"{node}}} 1"),
        format!("livepeer_transcode_retried{{try=\">10\"{node}}} 2"),
        format!("livepeer_ai_orchestrators_available_total{{{}}} 3", &node[1..]),
        format!("livepeer_gateway_deposit{{sender=\"0xAbC\"{node}}} 1.5"),
        format!("livepeer_broadcaster_reserve{{sender=\"0xAbC\"{node}}} 2000.0"),
        format!("livepeer_segment_transcoded_total{{{}}} 0", &node[1..]),
        format!(
            "livepeer_versions{{compiler=\"rustc\",goos=\"{}\",livepeerversion=\"{}\",node_type=\"bctr\"}} 1",
            std::env::consts::OS,
            env!("CARGO_PKG_VERSION")
        ),
    ];
    for line in want {
        assert!(out.lines().any(|l| l == line), "no {line} in\n{out}");
    }
    assert!(!out.contains("# EOF") && !out.contains("_total_total"), "{out}");
    #[cfg(target_os = "linux")]
    assert!(out.contains("\n# TYPE process_resident_memory_bytes gauge\n"), "{out}");
    // Every sample carries the node's labels, but the process series, as go-livepeer's.
    let samples = out.lines().filter(|l| !l.starts_with('#') && !l.starts_with("process_"));
    assert!(samples.clone().count() > 20);
    assert!(samples.clone().all(|l| l.contains("node_type=\"bctr\"")), "{out}");
}
