use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use proptest::prelude::*;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};

use super::body::{Chunks, Framing, Step, framing};
use super::*;

/// A raw server for one connection: for each request it reads, it writes the next answer of
/// `answers`, each in the parts given (separate writes, so the client sees them arrive in
/// pieces); after the last, it closes. Returns the address and what it read.
async fn raw_server(answers: Vec<Vec<&'static [u8]>>) -> (String, Arc<std::sync::Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let got = seen.clone();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        for parts in answers {
            let Some(head) = read_request_head(&mut tcp).await else { return };
            got.lock().unwrap().extend_from_slice(&head);
            for part in parts {
                tcp.write_all(part).await.unwrap();
                tcp.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        }
    });
    (addr, seen)
}

async fn conn(addr: &str) -> Conn {
    Conn::new(Io::Plain(TcpStream::connect(addr).await.unwrap()))
}

fn get_head(host: &str) -> Vec<u8> {
    request_head(&Method::GET, "/x?y=1", host, &HeaderMap::new(), 0)
}

async fn read_all(body: &mut Body) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        out.extend_from_slice(&frame.into_data().unwrap_or_default());
    }
    Ok(out)
}

#[tokio::test]
async fn answers_framed_every_way_are_read_and_only_reusable_connections_come_back() {
    let cases: Vec<(Vec<&'static [u8]>, &str, bool)> = vec![
        (vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", b"lo"], "hello", true),
        (
            vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nhel\r",
                b"\n2\r\nlo\r\n0\r\nX-Trailer: t\r\n",
                b"\r\n",
            ],
            "hello",
            true,
        ),
        (
            vec![b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"],
            "ok",
            true,
        ),
        (vec![b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"], "ok", false),
        (vec![b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"], "ok", false),
        (
            vec![b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"],
            "ok",
            true,
        ),
        (vec![b"HTTP/1.1 204 No Content\r\n\r\n"], "", true),
        // To the end of the connection: the server's close ends it.
        (vec![b"HTTP/1.1 200 OK\r\n\r\nuntil ", b"the end"], "until the end", false),
        // More than the length says: the answer is cut at its length, the connection dropped.
        (vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"], "ok", false),
    ];
    for (parts, want, reusable) in cases {
        let (addr, seen) = raw_server(vec![parts.clone()]).await;
        let resp = conn(&addr).await.exchange(&get_head(&addr), &[], false).await.unwrap();
        let homes = Arc::new(AtomicUsize::new(0));
        let counted = homes.clone();
        let mut body = resp.into_body();
        body.go_home(Box::new(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(read_all(&mut body).await.unwrap(), want.as_bytes(), "{parts:?}");
        assert_eq!(homes.load(Ordering::SeqCst) == 1, reusable, "{parts:?}");
        let seen = String::from_utf8(seen.lock().unwrap().clone()).unwrap();
        assert_eq!(seen, format!("GET /x?y=1 HTTP/1.1\r\nhost: {addr}\r\n\r\n"));
    }
}

#[tokio::test]
async fn a_kept_connection_carries_the_next_exchange_and_sees_its_server_close() {
    let first: Vec<&'static [u8]> = vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"];
    let second: Vec<&'static [u8]> = vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"];
    let (addr, _) = raw_server(vec![first, second]).await;
    let mut kept = None;
    for want in ["a", "b"] {
        let conn = match kept.take() {
            Some(conn) => conn,
            None => conn(&addr).await,
        };
        let mut body = conn.exchange(&get_head(&addr), &[], false).await.unwrap().into_body();
        assert_eq!(read_all(&mut body).await.unwrap(), want.as_bytes());
        kept = body.into_conn();
        assert!(kept.is_some(), "a complete keep-alive answer leaves its connection usable");
    }
    // The server has closed after its last answer: once the reactor has seen that, the
    // connection says so, rather than taking a request into a dead socket.
    let mut conn = kept.unwrap();
    let mut open = true;
    for _ in 0..1000 {
        open = conn.is_open();
        if !open {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(!open, "the server's close was never seen");
}

#[tokio::test]
async fn a_body_not_read_to_its_end_gives_no_connection_back() {
    let parts: Vec<&'static [u8]> = vec![b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nok"];
    let (addr, _) = raw_server(vec![parts]).await;
    let resp = conn(&addr).await.exchange(&get_head(&addr), &[], false).await.unwrap();
    assert!(resp.into_body().into_conn().is_none());
}

#[tokio::test]
async fn broken_and_oversized_answers_fail_with_their_cause() {
    let leak = |parts: &[&[u8]]| -> &'static [u8] { Box::leak(parts.concat().into()) };
    let head_flood = leak(&[b"HTTP/1.1 200 OK\r\nX-A: ", &b"a".repeat(MAX_HEAD), b"\r\n\r\n"]);
    let many_fields = leak(&[b"HTTP/1.1 200 OK\r\n", &b"X-A: a\r\n".repeat(MAX_HEADERS + 1)]);
    let cases: Vec<(Vec<&'static [u8]>, &str)> = vec![
        (
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"],
            "closed before the answer's end",
        ),
        (
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
            "invalid chunk size",
        ),
        (
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXY"],
            "not followed by CRLF",
        ),
        (vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n"], "disagree"),
        (vec![b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"], "invalid Content-Length"),
        (vec![b"SSH-2.0-OpenSSH\r\n\r\n"], "invalid answer head"),
        (vec![b"HTTP/1.1 101 Switching Protocols\r\n\r\n"], "protocol switch"),
        (vec![b"HTTP/1.1 200 OK\r\n"], "closed before the answer's head"),
        (vec![head_flood], "larger than"),
        (vec![many_fields], "header fields"),
    ];
    for (parts, want) in cases {
        let (addr, _) = raw_server(vec![parts]).await;
        let got = match conn(&addr).await.exchange(&get_head(&addr), &[], false).await {
            Err(e) => e.to_string(),
            Ok(resp) => match read_all(&mut resp.into_body()).await {
                Err(e) => e,
                Ok(body) => panic!("{want}: read {body:?}"),
            },
        };
        assert!(got.contains(want), "{want}: {got}");
    }
}

#[tokio::test]
async fn a_request_nothing_of_which_was_taken_is_reported_unsent() {
    // A connection whose peer reset it: the write fails before a byte is taken.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let client = TcpStream::connect(&addr).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    // A zero linger resets at once; it is a longer one that would block the thread on drop.
    #[allow(deprecated)]
    server.set_linger(Some(std::time::Duration::ZERO)).unwrap();
    drop(server);
    let mut conn = Conn::new(Io::Plain(client));
    // Wait until the reset has arrived (events, not time): the connection reads it.
    let mut closed = false;
    for _ in 0..1000 {
        if !conn.is_open() {
            closed = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(closed);
    conn.0.buf.clear();
    match conn.exchange(&get_head(&addr), &[], false).await {
        Err(ExchangeError::NotSent(_)) => {}
        other => panic!("{other:?}"),
    }
}

/// A request body larger than loopback's socket buffers hold, so that its write blocks on a
/// server that does not read it.
const LARGE: usize = 24 << 20;

/// A server that answers `answer` after the request's head without reading its body, then
/// ends its side; `reset`: it then drops the connection with the body unread (the kernel
/// resets it, as Go's server does 500 ms later), else it holds it open and unread.
async fn early_answer_server(answer: &'static [u8], reset: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        read_request_head(&mut tcp).await.unwrap();
        tcp.write_all(answer).await.unwrap();
        tcp.shutdown().await.unwrap();
        if !reset {
            // Held until the client is done with it.
            let _ = tcp.readable().await;
            std::future::pending::<()>().await;
        }
    });
    addr
}

#[tokio::test]
async fn an_answer_sent_before_the_request_was_read_is_what_the_caller_gets() {
    let answer: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 21\r\n\r\nInsufficient balance\n";
    let body = vec![7u8; LARGE];
    for reset in [false, true] {
        let addr = early_answer_server(answer, reset).await;
        let head = request_head(&Method::POST, "/segment", &addr, &HeaderMap::new(), body.len());
        // Bounded so that a client blocked on its write fails the test instead of hanging it.
        let exchange = conn(&addr).await.exchange(&head, &body, false);
        let mut response = tokio::time::timeout(std::time::Duration::from_secs(30), exchange)
            .await
            .unwrap_or_else(|_| panic!("reset {reset}: still writing, the answer unseen"))
            .unwrap_or_else(|e| panic!("reset {reset}: {e}"));
        assert_eq!(response.status(), 400, "reset {reset}");
        let text = read_all(response.body_mut()).await.unwrap();
        assert_eq!(text, b"Insufficient balance\n", "reset {reset}");
        // The request was cut short: its connection cannot carry another.
        assert!(response.into_body().into_conn().is_none(), "reset {reset}");
    }
}

#[tokio::test]
async fn an_interim_answer_while_the_request_goes_out_does_not_stop_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt as _;
        let (mut tcp, _) = listener.accept().await.unwrap();
        let head = read_request_head(&mut tcp).await.unwrap();
        tcp.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.unwrap();
        let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut got = head.len() - end;
        let mut buf = vec![0u8; 1 << 16];
        while got < LARGE {
            got += tcp.read(&mut buf).await.unwrap();
        }
        let text = got.to_string();
        let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}", text.len());
        tcp.write_all(answer.as_bytes()).await.unwrap();
        std::future::pending::<()>().await;
    });
    let body = vec![7u8; LARGE];
    let head = request_head(&Method::POST, "/segment", &addr, &HeaderMap::new(), body.len());
    let mut response = conn(&addr).await.exchange(&head, &body, false).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(read_all(response.body_mut()).await.unwrap(), LARGE.to_string().as_bytes());
    assert!(response.into_body().into_conn().is_some(), "a whole request keeps its connection");
}

#[test]
fn request_heads_carry_the_body_length_and_the_callers_fields_but_its_framing() {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_static("Bearer x"));
    headers.insert("content-length", HeaderValue::from_static("999"));
    headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
    let head = request_head(&Method::POST, "/llm", "orch:8935", &headers, 12);
    assert_eq!(
        String::from_utf8(head).unwrap(),
        "POST /llm HTTP/1.1\r\nhost: orch:8935\r\nauthorization: Bearer x\r\ncontent-length: 12\r\n\r\n"
    );
    // A URL with a query and no path: the target still starts with `/`.
    let query_only = request_head(&Method::GET, "?x=1/segment", "h", &HeaderMap::new(), 0);
    assert!(query_only.starts_with(b"GET /?x=1/segment HTTP/1.1\r\n"));
    let empty_post = request_head(&Method::POST, "/", "h", &HeaderMap::new(), 0);
    assert!(String::from_utf8(empty_post).unwrap().ends_with("content-length: 0\r\n\r\n"));
    headers.insert("host", HeaderValue::from_static("other"));
    let own_host = String::from_utf8(request_head(&Method::GET, "/", "h", &headers, 0)).unwrap();
    assert!(own_host.contains("host: other\r\n") && !own_host.contains("host: h\r\n"));
    assert!(!own_host.contains("content-length"), "{own_host}");
}

#[test]
fn framing_follows_the_answers_head() {
    let head = |fields: &[(&str, &str)]| {
        let mut map = HeaderMap::new();
        for (k, v) in fields {
            map.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        map
    };
    type Case<'a> = (u16, &'a [(&'a str, &'a str)], bool, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (200, &[("content-length", "7")], false, "Length(7) keep"),
        (200, &[("content-length", "7"), ("content-length", "7")], false, "Length(7) keep"),
        (200, &[("content-length", "7, 7")], false, "Length(7) keep"),
        (200, &[("transfer-encoding", "chunked")], false, "Chunked keep"),
        (200, &[("transfer-encoding", "CHUNKED")], false, "Chunked keep"),
        (200, &[("transfer-encoding", "chunked"), ("content-length", "3")], false, "Chunked drop"),
        // Codings the gateway cannot undo are refused, not passed on as the content.
        (200, &[("transfer-encoding", "gzip, chunked")], false, "error"),
        (200, &[("transfer-encoding", "gzip")], false, "error"),
        (
            200,
            &[("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")],
            false,
            "error",
        ),
        (200, &[], false, "Close drop"),
        (200, &[("content-length", "7")], true, "Length(0) keep"),
        (204, &[("content-length", "7")], false, "Length(0) keep"),
        (304, &[], false, "Length(0) keep"),
        (
            200,
            &[("content-length", "7"), ("connection", "keep-alive, close")],
            false,
            "Length(7) drop",
        ),
    ];
    let read = |status, version, fields: &[(&str, &str)], head_request| {
        let Ok((framing, keep)) = framing(status, version, &head(fields), head_request) else {
            return "error".to_owned();
        };
        let kind = match framing {
            Framing::Length(n) => format!("Length({n})"),
            Framing::Chunked(_) => "Chunked".to_owned(),
            Framing::Close => "Close".to_owned(),
        };
        format!("{kind} {}", if keep { "keep" } else { "drop" })
    };
    for (status, fields, head_request, want) in cases {
        assert_eq!(read(status, Version::HTTP_11, fields, head_request), want, "{fields:?}");
    }
    // HTTP/1.0 has no chunks: Go ignores the field there, and so does the gateway.
    let te_and_length = [("transfer-encoding", "chunked"), ("content-length", "2")];
    assert_eq!(read(200, Version::HTTP_10, &te_and_length, false), "Length(2) drop");
    assert_eq!(read(200, Version::HTTP_10, &[("transfer-encoding", "gzip")], false), "Close drop");
}

/// `data` in chunks of the given sizes, with an extension on some size lines and a trailer.
fn chunked(data: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes.get(i).copied().unwrap_or(rest.len()).clamp(1, rest.len());
        let ext = if i % 2 == 1 { ";name=value" } else { "" };
        out.extend_from_slice(format!("{n:X}{ext}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
        i += 1;
    }
    out.extend_from_slice(b"0\r\nTrailer: x\r\n\r\n");
    out
}

/// Feeds `wire` to a decoder in pieces of the given sizes; what it gave, or its error.
fn decode(wire: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, bool), String> {
    let (mut chunks, mut buf, mut out) = (Chunks::default(), BytesMut::new(), Vec::new());
    let mut fed = 0;
    let mut i = 0;
    loop {
        match chunks.step(&mut buf)? {
            Step::Data(d) => out.extend_from_slice(&d),
            Step::End => return Ok((out, true)),
            Step::More if fed == wire.len() => return Ok((out, false)),
            Step::More => {
                let n = cuts.get(i).copied().unwrap_or(wire.len()).clamp(1, wire.len() - fed);
                buf.extend_from_slice(&wire[fed..fed + n]);
                fed += n;
                i += 1;
            }
        }
    }
}

proptest! {
    #[test]
    fn chunked_bodies_decode_to_their_data_however_they_arrive(
        data in proptest::collection::vec(any::<u8>(), 1..600),
        sizes in proptest::collection::vec(1usize..200, 0..8),
        cuts in proptest::collection::vec(1usize..64, 0..40),
    ) {
        let wire = chunked(&data, &sizes);
        prop_assert_eq!(decode(&wire, &cuts), Ok((data, true)));
    }

    #[test]
    fn any_bytes_give_an_answer_or_an_error_never_a_panic(
        wire in proptest::collection::vec(any::<u8>(), 0..400),
        cuts in proptest::collection::vec(1usize..64, 0..20),
    ) {
        let _ = decode(&wire, &cuts);
        let _ = read_answer_for_fuzz(&wire);
    }
}

#[test]
fn chunk_framing_is_bounded_and_strict() {
    let long_line = [b"1".repeat(17), b"\r\n".to_vec()].concat();
    let long_ext = [b"1;".to_vec(), b"x".repeat(5000)].concat();
    let trailers = [b"0\r\n".to_vec(), b"T: x\r\n".repeat(20_000), b"\r\n".to_vec()].concat();
    for (wire, want) in [
        (long_line.as_slice(), "invalid chunk size line"),
        (long_ext.as_slice(), "longer than"),
        (trailers.as_slice(), "trailers larger than"),
        (b"\r\n".as_slice(), "invalid chunk size line"),
        (b"g\r\n".as_slice(), "invalid chunk size"),
    ] {
        let got = decode(wire, &[]).unwrap_err();
        assert!(got.contains(want), "{want}: {got}");
    }
    // A size line ended by a bare LF, blanks before its extension: as Go reads them.
    assert_eq!(decode(b"2 ;x\nok\r\n0\n\n", &[]).unwrap(), (b"ok".to_vec(), true));
    assert_eq!(Bytes::from_static(b"ok"), Bytes::from(b"ok".to_vec()));
}

#[test]
fn the_fuzz_reader_takes_a_whole_answer() {
    let answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
    assert_eq!(read_answer_for_fuzz(answer), Some((201, 2)));
    assert_eq!(read_answer_for_fuzz(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab"), None);
}
