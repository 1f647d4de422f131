use super::*;

fn prices(table: &str, usd_per_eth: Option<&str>) -> CustomerPrices {
    CustomerPrices::parse(Some(table), usd_per_eth).unwrap()
}

#[test]
fn amounts_parse_exactly() {
    assert_eq!(parse_amount("0.0025").unwrap(), "1/400".parse().unwrap());
    assert_eq!(parse_amount("12").unwrap(), Ratio::from_u64(12));
    assert_eq!(parse_amount(".5").unwrap(), "1/2".parse().unwrap());
    assert_eq!(parse_amount("1/3").unwrap(), "1/3".parse().unwrap());
    for bad in ["", ".", "-1", "1e3", "0.1.2", "abc"] {
        assert!(parse_amount(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_charge_is_the_rate_times_natural_units_rounded_up_once() {
    let p = prices(
        r#"{"price": [
            {"pipeline": "text-to-image", "usd": "0.01"},
            {"pipeline": "text-to-image", "model": "special", "usd": "0.03"},
            {"pipeline": "llm", "usd": "0.2"},
            {"pipeline": "audio-to-text", "wei": "1000000000000"},
            {"pipeline": "image-to-video", "orchestrator_multiple": "1.5"},
            {"pipeline": "upscale", "usd": "0.0000001"}
        ]}"#,
        Some("2500.5"),
    );
    // 512 × 512 pixels: 0.262144 megapixel at 0.01 USD = 0.00262144 USD.
    assert_eq!(p.charge("text-to-image", "any", 262_144, None).unwrap(), 2_621_440);
    assert_eq!(p.charge("text-to-image", "special", 262_144, None).unwrap(), 7_864_320);
    // 256 tokens at 0.2 USD per million: 0.0000512 USD.
    assert_eq!(p.charge("llm", "m", 256, None).unwrap(), 51_200);
    // 1 token: 2e-7 USD = 200 nano-USD.
    assert_eq!(p.charge("llm", "m", 1, None).unwrap(), 200);
    // 1 pixel at 1e-7 USD per megapixel: 1e-13 USD, rounded up to 1 nano-USD; none is 0.
    assert_eq!(p.charge("upscale", "m", 1, None).unwrap(), 1);
    assert_eq!(p.charge("upscale", "m", 0, None).unwrap(), 0);
    // 3 s of audio (3000 units) at 1e12 wei/s and 2500.5 USD/ETH: 3e12 × 2500.5 / 1e18 USD.
    assert_eq!(p.charge("audio-to-text", "w", 3000, None).unwrap(), 7_501_500);
    // 1.5 × an orchestrator fee of 1e15 wei: 1.5e15 wei = 3.75075 USD.
    let fee = Ratio::from_u64(1_000_000_000_000_000);
    assert_eq!(p.charge("image-to-video", "m", 10, Some(&fee)).unwrap(), 3_750_750_000);
    // Unpriced pipelines are free.
    assert_eq!(p.charge("image-to-text", "m", 1_000_000, None).unwrap(), 0);
}

#[test]
fn quotes_show_usd_per_natural_unit() {
    let p = prices(
        "[[price]]\npipeline = \"llm\"\nusd = \"0.2\"\n[[price]]\npipeline = \"image-to-video\"\norchestrator_multiple = \"2\"\n",
        Some("3000"),
    );
    let q = p.quote("llm", "m", None).unwrap();
    assert_eq!(q.unit.name, "million_tokens");
    assert_eq!(q.usd_per_unit.as_deref(), Some("0.200000000"));
    // 0.2 USD at 3000 USD/ETH = 1/15000 ETH = 2e18/30000 wei, exactly.
    assert_eq!(q.wei_per_unit.as_deref(), Some("200000000000000/3"));
    assert_eq!(p.quote("upscale", "m", None), None);
    assert_eq!(p.quote("image-to-video", "c", None).unwrap().usd_per_unit, None);
    // 1e6 wei a pixel = 1e12 wei a megapixel, × 2 = 2e12 wei = 0.006 USD at 3000 USD/ETH.
    let q = p.quote("image-to-video", "c", Some(Ratio::from_u64(1_000_000))).unwrap();
    assert_eq!(q.usd_per_unit.as_deref(), Some("0.006000000"));
    assert_eq!(q.orchestrator_multiple.as_deref(), Some("2"));
    assert_eq!(q.wei_per_unit.as_deref(), Some("2000000000000"));
}

#[test]
fn bad_tables_are_refused_by_entry() {
    let bad = |t: &str, eth: Option<&str>| CustomerPrices::parse(Some(t), eth).unwrap_err().0;
    // Streams, BYOC jobs and transcoding are charged a multiple of what was paid for them.
    for pipeline in ["live-video-to-video", "byoc", "transcode"] {
        let t = format!(r#"{{"price":[{{"pipeline":"{pipeline}","orchestrator_multiple":"2"}}]}}"#);
        assert!(CustomerPrices::parse(Some(&t), Some("3000")).is_ok(), "{pipeline}");
        assert!(bad(&t, None).contains("--usd-per-eth"), "{pipeline}");
    }
    assert!(bad(r#"{"price":[{"pipeline":"nope","usd":"1"}]}"#, None).contains("unknown pipeline"));
    assert!(bad(r#"{"price":[{"pipeline":"llm"}]}"#, None).contains("exactly one"));
    assert!(bad(r#"{"price":[{"pipeline":"llm","wei":"1"}]}"#, None).contains("--usd-per-eth"));
    let twice = r#"{"price":[{"pipeline":"llm","usd":"1"},{"pipeline":"llm","usd":"2"}]}"#;
    assert!(bad(twice, None).contains("twice"));
    assert!(bad(r#"{"price":[{"pipeline":"llm","usd":"-1"}]}"#, None).contains("price[0]"));
    assert!(CustomerPrices::parse(None, Some("0")).is_err());
    assert!(CustomerPrices::parse(None, None).unwrap().is_empty());
}

#[test]
fn usd_text_has_nine_places() {
    assert_eq!(usd_text(2_621_440), "0.002621440");
    assert_eq!(usd_text(-1), "-0.000000001");
    assert_eq!(usd_text(50_000_000_000), "50.000000000");
}
