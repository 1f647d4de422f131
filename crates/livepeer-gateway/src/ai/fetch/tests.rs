use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

#[test]
fn own_paths_are_what_joining_them_gives() {
    let orch = Url::parse("https://Orch.Example:8935/base/").unwrap();
    let taken = [
        "https://orch.example:8935/stream/ab12/0.png",
        "https://orch.example:8935/x",
        "https://orch.example:8935/a/b.c/d~e_f-g",
    ];
    for src in taken {
        let path = own_path(&orch, src).unwrap_or_else(|| panic!("{src}"));
        let joined = orch.join(src).unwrap();
        assert_eq!(&joined[url::Position::BeforePath..url::Position::AfterQuery], path);
        assert_eq!(joined.as_str(), src);
    }
    let left = [
        "/stream/ab12/0.png",                   // relative
        "HTTPS://orch.example:8935/x",          // spelt otherwise
        "https://orch.example/x",               // another port
        "https://orch.example:89350/x",         // another port
        "https://orch.example:8935",            // no path
        "https://orch.example:8935/",           // empty segment
        "https://orch.example:8935/a//b",       // empty segment
        "https://orch.example:8935/a/../admin", // dot segments
        "https://orch.example:8935/a/./b",
        "https://orch.example:8935/a/%2e%2e/b", // escapes
        "https://orch.example:8935/a?x=1",      // query
        "https://orch.example:8935/a#f",        // fragment
        "https://orch.example:8935/a b",
        "https://orch.example:8935/a\\b",
        "https://orch.example:8935@evil.example/x", // userinfo trick
        "https://orch.example:8935.evil.example/x",
    ];
    for src in left {
        assert_eq!(own_path(&orch, src), None, "{src}");
    }
    // An orchestrator URL with user information never takes the shortcut.
    let with_user = Url::parse("http://u:p@orch.example:8935").unwrap();
    assert_eq!(own_path(&with_user, "http://u:p@orch.example:8935/x"), None);
}

proptest::proptest! {
    /// Whatever an orchestrator answers, the shortcut agrees with the parser.
    #[test]
    fn own_path_agrees_with_joining(tail in "[a-zA-Z0-9._~/%?#: @\\-]{0,24}") {
        let orch = Url::parse("http://127.0.0.1:18935").unwrap();
        let src = format!("http://127.0.0.1:18935{tail}");
        if let Some(path) = own_path(&orch, &src) {
            let joined = orch.join(&src).unwrap();
            proptest::prop_assert_eq!(&joined[url::Position::BeforePath..url::Position::AfterQuery], path);
            proptest::prop_assert_eq!(joined.as_str(), src.as_str());
        }
    }
}

#[test]
fn the_host_header_is_the_host_and_a_port_other_than_the_schemes() {
    for (url, want) in [
        ("http://u:p@127.0.0.1:18935/a", "127.0.0.1:18935"),
        ("https://orch.example:443/a", "orch.example"),
        ("http://orch.example:80/a", "orch.example"),
        ("http://[::1]:8935/a?q", "[::1]:8935"),
        ("https://Orch.Example/a", "orch.example"),
    ] {
        let url = Url::parse(url).unwrap();
        assert_eq!(&url[url::Position::BeforeHost..url::Position::AfterPort], want);
        let formatted = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap()),
            None => url.host_str().unwrap().to_owned(),
        };
        assert_eq!(formatted, want);
    }
}

#[test]
fn errors_show_urls_without_their_query_and_short() {
    let signed = "https://bucket.example/r/1.png?X-Amz-Signature=secret#frag";
    assert_eq!(shown(signed), "https://bucket.example/r/1.png");
    let long = format!("http://o.example/{}", "a".repeat(1000));
    let s = shown(&long);
    assert_eq!(s.chars().count(), 201);
    assert!(s.ends_with('…') && !s.contains("secret"));
    assert_eq!(shown("http://o.example/x.png"), "http://o.example/x.png");
}

/// A server answering every GET with `abc` as a PNG; counts the connections it accepts.
async fn server() -> (Url, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let answer = hyper::service::service_fn(|_| async {
                let body = http_body_util::Full::new(Bytes::from_static(b"abc"));
                let resp = http::Response::builder().header(CONTENT_TYPE, "image/png");
                Ok::<_, std::convert::Infallible>(resp.body(body).unwrap())
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), answer);
            tokio::spawn(conn);
        }
    });
    (url, accepted)
}

/// What the tests' requests may fetch from `orch` (its answer from `peer`): results of at
/// most 3 bytes, 100 in all, into `store`.
fn small_budget<'a>(orch: &Url, peer: Option<IpAddr>, store: &'a ResultStore) -> Budget<'a> {
    Budget {
        orch: orch.clone().into(),
        orch_peer: peer,
        allowed: &[],
        per_result: 3,
        left: 100,
        store,
    }
}

/// Files come over one kept connection; one over the cap is refused by its length.
#[tokio::test]
async fn files_share_a_connection_and_lengths_over_the_cap_are_refused() {
    let (orch, accepted) = server().await;
    let store = ResultStore::new(1000, Duration::from_secs(60));
    let fetcher = Fetcher::new(Duration::from_secs(2), Duration::from_secs(5)).unwrap();
    let mut budget = small_budget(&orch, None, &store);
    for _ in 0..3 {
        let fetched = fetcher.fetch("/a.png", &mut budget).await.unwrap();
        assert_eq!((fetched.content_type.as_str(), &fetched.bytes[..]), ("image/png", &b"abc"[..]));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(budget.left, 91);
    budget.per_result = 2;
    let refused = fetcher.fetch("/a.png", &mut budget).await.unwrap_err();
    assert!(refused.to_string().contains("3 bytes, more than the 2 allowed"), "{refused}");
    assert_eq!(store.reserved(), 0, "nothing stays reserved");
}

/// Whether a loopback result is the orchestrator's own is judged by the address its answer
/// came from when that is known: a name that resolved publicly for the job and resolves to
/// loopback now (DNS rebinding) gets nothing from loopback.
#[tokio::test]
async fn the_answers_own_address_decides_what_is_the_orchestrators() {
    let (orch, _) = server().await;
    let store = ResultStore::new(1000, Duration::from_secs(60));
    let fetcher = Fetcher::new(Duration::from_secs(2), Duration::from_secs(5)).unwrap();
    let public: IpAddr = "93.184.216.34".parse().unwrap();
    for (peer, fetched) in
        [(None, true), (Some(IpAddr::from([127, 0, 0, 1])), true), (Some(public), false)]
    {
        let mut budget = small_budget(&orch, peer, &store);
        let got = fetcher.fetch("/a.png", &mut budget).await;
        assert_eq!(got.is_ok(), fetched, "answer from {peer:?}: {:?}", got.err());
        if let Err(e) = got {
            assert!(e.to_string().contains("is not the orchestrator's kind"), "{e}");
        }
    }
}

#[test]
fn addresses_are_classed_and_inward_ones_need_an_orchestrator_of_the_same_kind() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let rows = [
        ("8.8.8.8", Reach::Public),
        ("127.0.0.1", Reach::Loopback),
        ("::1", Reach::Loopback),
        ("::ffff:127.0.0.1", Reach::Loopback),
        ("169.254.169.254", Reach::LinkLocal),
        ("fe80::1", Reach::LinkLocal),
        ("10.1.2.3", Reach::Private),
        ("172.16.0.1", Reach::Private),
        ("192.168.1.1", Reach::Private),
        ("100.64.0.1", Reach::Private),
        ("fd00::1", Reach::Private),
        ("0.0.0.0", Reach::Never),
        ("0.1.2.3", Reach::Never),
        ("::", Reach::Never),
        ("224.0.0.1", Reach::Never),
        ("ff02::1", Reach::Never),
        ("255.255.255.255", Reach::Never),
        ("2001:db8::1", Reach::Public),
    ];
    for (addr, want) in rows {
        assert_eq!(reach(ip(addr)), want, "{addr}");
    }
    let public_orch = [ip("203.0.113.9")];
    let local_orch = [ip("127.0.0.1")];
    assert!(reachable(ip("8.8.8.8"), &local_orch));
    assert!(!reachable(ip("127.0.0.1"), &public_orch));
    assert!(reachable(ip("127.0.0.2"), &local_orch));
    assert!(!reachable(ip("169.254.169.254"), &local_orch));
    assert!(!reachable(ip("10.0.0.1"), &local_orch));
    assert!(!reachable(ip("0.0.0.0"), &[ip("0.0.0.0")]));
}

#[test]
fn only_the_orchestrators_origin_and_allowed_hosts_pass() {
    let orch = Url::parse("https://orch.example.com:8935/").unwrap();
    let allowed = ["store.example".to_owned(), "cdn.example:9000".to_owned()];
    let ok = |u: &str| origin_allowed(&Url::parse(u).unwrap(), &orch, &allowed);
    assert!(ok("https://ORCH.example.com:8935/stream/a.png"));
    assert!(ok("http://orch.example.com:8935/a.png"));
    assert!(!ok("https://orch.example.com/a.png"), "another port");
    assert!(!ok("https://orch.example.com:8936/a.png"));
    assert!(!ok("https://evil.example/a.png"));
    assert!(ok("https://store.example/a.png") && ok("http://store.example:1234/a.png"));
    assert!(ok("http://cdn.example:9000/a") && !ok("http://cdn.example:9001/a"));
    assert_eq!(
        orch.join("/stream/x.png").unwrap().as_str(),
        "https://orch.example.com:8935/stream/x.png"
    );
}

#[test]
fn scriptable_types_are_refused_and_other_non_media_ones_made_opaque() {
    let rows = [
        ("image/png", Some("image/png")),
        ("video/mp4; codecs=avc1", Some("video/mp4")),
        ("audio/wav", Some("audio/wav")),
        ("text/html; charset=utf-8", None),
        ("TEXT/HTML", None),
        ("application/xhtml+xml", None),
        ("image/svg+xml", None),
        ("text/xml", None),
        ("application/javascript", None),
        ("text/ecmascript", None),
        ("text/plain", Some("application/octet-stream")),
        ("application/json", Some("application/octet-stream")),
        ("image/png\"<x>", Some("application/octet-stream")),
        ("", Some("application/octet-stream")),
    ];
    for (declared, want) in rows {
        assert_eq!(served_type(declared), want, "{declared}");
    }
    // The shortcut answers as the long way does.
    for common in COMMON_TYPES {
        assert_eq!(classify(common), Some(common));
        let upper = common.to_ascii_uppercase();
        assert_eq!(served_type(&upper), Some(upper.as_str()));
    }
}

/// A kept download connection whose server dropped it after answering is closed by the
/// fetcher's sweeper, without another download from that server. Paused time: the sweeps
/// come as the clock is advanced, and the runtime sees the socket's events when it parks.
#[tokio::test(start_paused = true)]
async fn kept_connections_their_server_dropped_are_swept() {
    use tokio::io::AsyncWriteExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let orch = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        if h1::read_request_head(&mut tcp).await.is_none() {
            return;
        }
        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: 3\r\n\r\nabc";
        tcp.write_all(answer).await.unwrap();
    });
    let store = ResultStore::new(1000, Duration::from_secs(60));
    let fetcher = Fetcher::new(Duration::from_secs(2), Duration::from_secs(5)).unwrap();
    let mut budget = small_budget(&orch, None, &store);
    fetcher.fetch("/a.png", &mut budget).await.unwrap();
    let kept = || fetcher.idle.get().map.lock().unwrap().values().map(VecDeque::len).sum::<usize>();
    assert_eq!(kept(), 1);
    for _ in 0..3 {
        tokio::time::sleep(h1::SWEEP_EVERY).await;
        if kept() == 0 {
            break;
        }
    }
    assert_eq!(kept(), 0, "a connection its server dropped was kept");
}

/// A download the gateway cannot dial for want of its own descriptors is its shortage, not an
/// unusable result of the orchestrator's.
#[test]
fn a_download_without_descriptors_is_the_gateways_shortage() {
    if !crate::alone::run_here(
        "ai::fetch::tests::a_download_without_descriptors_is_the_gateways_shortage",
    ) {
        return;
    }
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (orch, _) = server().await;
        let store = ResultStore::new(1000, Duration::from_secs(60));
        let fetcher = Fetcher::new(Duration::from_secs(2), Duration::from_secs(5)).unwrap();
        let mut budget = small_budget(&orch, None, &store);
        let before = getrlimit(Resource::Nofile);
        let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        setrlimit(Resource::Nofile, Rlimit { current: Some(open + 64), maximum: before.maximum })
            .unwrap();
        let mut held = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            held.push(f);
        }
        let got = fetcher.fetch("/a.png", &mut budget).await;
        drop(held);
        setrlimit(Resource::Nofile, before).unwrap();
        assert!(matches!(got, Err(FetchError::Local(_))), "{:?}", got.err());
        // With descriptors back, the same file comes.
        assert!(fetcher.fetch("/a.png", &mut budget).await.is_ok());
    });
}
