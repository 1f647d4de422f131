//! RTMP ingest against hostile publishers, over real sockets to a real gateway: a client
//! may not keep a connection (and its place under the listener's cap) by trickling bytes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::*;
use crate::transcode::{gateway_config, get_text, listed, sim};
use crate::transcode_rtmp::publish;

/// A client that sends one byte of an RTMP handshake every 500 ms (within the crate's
/// per-read deadline, so it is never idle) and never finishes it; returns when the gateway
/// closes its connection.
async fn trickle(addr: std::net::SocketAddr, source: u8) {
    trickle_on(connect_from([127, 0, 0, source], addr).await).await;
}

/// [`trickle`] on a connection already made.
async fn trickle_on(mut socket: TcpStream) {
    // C0: version 3; then C1 byte by byte (1536 bytes: 12 minutes at this pace).
    let mut byte = 3u8;
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            read = socket.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                if socket.write_all(&[byte]).await.is_err() {
                    return;
                }
                byte = 0;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_publish_are_closed_and_free_their_places() {
    let sim = sim("rtmp-trickle", false).await;
    let mut config = gateway_config(&[&sim]);
    config.transcode.max_sessions = 1;
    let gw = start(config).await;
    let rtmp = gw.rtmp_addr.unwrap();
    // Every place under the listener's cap (streams + 16) taken by a trickling client, each
    // from its own address (one address may hold only a few).
    let started = Instant::now();
    let clients: Vec<_> = (1..=17).map(|i| tokio::spawn(trickle(rtmp, i))).collect();
    // Each is closed at the publish deadline (10 s); before it had one, they held the
    // listener until they chose to leave, and no publisher got in.
    for client in clients {
        let left = Duration::from_secs(25).saturating_sub(started.elapsed());
        let closed = tokio::time::timeout(left, client).await;
        assert!(closed.is_ok(), "a trickling client still held a place after 25 s");
    }
    // Their places are free: a real publisher gets in and is transcoded.
    let mut ffmpeg = publish(&gw, "stream/after/key", 10);
    eventually(Duration::from_secs(60), "a segment of the publisher after them", || async {
        let (status, media) = get_text(&gw, "/stream/after/P240p30fps16x9.m3u8").await;
        status == 200 && !listed(&media).1.is_empty()
    })
    .await;
    let _ = ffmpeg.kill().await;
    gw.shutdown().await;
}

/// Completes a simple RTMP handshake on `socket` (C2 goes with the first bytes after it).
async fn handshake(socket: &mut TcpStream) -> Vec<u8> {
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0u8; 1536]);
    socket.write_all(&c0c1).await.unwrap();
    let mut s = vec![0u8; 1 + 1536 + 1536];
    socket.read_exact(&mut s).await.unwrap();
    // C2 echoes S1.
    s[1..1 + 1536].to_vec()
}

/// One chunk-0 header of a message of `len` bytes of `kind` on chunk stream `csid`.
fn header(csid: u8, len: u32, kind: u8) -> Vec<u8> {
    let l = len.to_be_bytes();
    vec![csid, 0, 0, 0, l[1], l[2], l[3], kind, 1, 0, 0, 0]
}

/// A client that sends four messages of 10 MiB, all but their last chunk, on one
/// connection that publishes nothing; whether the gateway took all of it.
async fn hoard(addr: std::net::SocketAddr, source: u8) -> bool {
    let mut socket = connect_from([127, 0, 0, source], addr).await;
    let mut out = handshake(&mut socket).await;
    // Set Chunk Size 65536 on the control stream.
    out.extend(header(2, 4, 1));
    out.extend(65536u32.to_be_bytes());
    socket.write_all(&out).await.unwrap();
    let len = 10 << 20;
    let body = vec![0u8; 65536];
    for csid in 3..7u8 {
        if socket.write_all(&header(csid, len, 9)).await.is_err() {
            return false;
        }
        // Whole chunks, all but the last: the message stays unfinished.
        for i in 0..(len as usize / 65536 - 1) {
            let continuation = if i == 0 { &[][..] } else { &[0xC0 | csid][..] };
            let sent = socket.write_all(continuation).await;
            if sent.is_err() || socket.write_all(&body).await.is_err() {
                return false;
            }
        }
    }
    // All sent: the gateway holds it unless it closes the connection.
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await;
    !matches!(read, Ok(Ok(0)) | Ok(Err(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_messages_of_connections_that_never_publish_stay_within_memory() {
    let sim = sim("rtmp-hoard", false).await;
    let mut config = gateway_config(&[&sim]);
    config.transcode.max_sessions = 1;
    let gw = start(config).await;
    let rtmp = gw.rtmp_addr.unwrap();
    let before = proc_status("VmRSS:");
    // Every place under the listener's cap: 17 × 40 MiB sent, none of it a publish, each
    // from its own address (one address may hold only a few).
    let clients: Vec<_> = (1..=17).map(|i| tokio::spawn(hoard(rtmp, i))).collect();
    for client in clients {
        let held = tokio::time::timeout(Duration::from_secs(60), client).await.unwrap().unwrap();
        assert!(!held, "a connection that never published was sent 40 MiB and kept");
    }
    // Before the cap on bytes sent without publishing, the peak grew by 680 MiB.
    let grown = proc_status("VmHWM:").saturating_sub(before);
    assert!(grown < 200 << 20, "the peak resident set grew by {} MiB", grown >> 20);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_cannot_join_a_live_rtmp_stream() {
    let sim = sim("rtmp-join", false).await;
    let gw = start(gateway_config(&[&sim])).await;
    let mut ffmpeg = publish(&gw, "stream/cam9/key", 20);
    let playlist = "/stream/cam9/P240p30fps16x9.m3u8";
    eventually(Duration::from_secs(60), "a segment of the RTMP stream", || async {
        let (status, media) = get_text(&gw, playlist).await;
        status == 200 && !listed(&media).1.is_empty()
    })
    .await;
    // Someone else pushes into the publisher's stream, far ahead of its sequence numbers.
    let pushed = crate::transcode::push(&gw, "cam9", 500, None).await;
    assert_eq!(pushed.status(), 403, "{}", pushed.text().await.unwrap());
    let (_, media) = get_text(&gw, playlist).await;
    assert!(!listed(&media).1.contains(&500), "{media}");
    // The publisher's stream goes on.
    let before = listed(&media).1.last().copied().unwrap();
    eventually(Duration::from_secs(60), "the publisher's next segment", || async {
        let (_, media) = get_text(&gw, playlist).await;
        listed(&media).1.last().is_some_and(|&last| last > before)
    })
    .await;
    let _ = ffmpeg.kill().await;
    gw.shutdown().await;
}

/// The tags (type and body) of an FLV file.
fn flv_tags(data: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 13;
    while i + 11 <= data.len() {
        let size = u32::from_be_bytes([0, data[i + 1], data[i + 2], data[i + 3]]) as usize;
        out.push((data[i], data[i + 11..i + 11 + size].to_vec()));
        i += 11 + size + 4;
    }
    out
}

/// The video and audio tags of a second of ffmpeg's test pattern and tone.
fn sample_tags() -> Vec<(u8, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.flv");
    let made = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-t", "1"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine", "-t", "1", "-c:v", "libx264"])
        .args(["-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    flv_tags(&std::fs::read(&path).unwrap())
}

/// An AMF0 command message body: name, transaction id, then `args` already encoded.
fn command(name: &str, id: f64, args: &[u8]) -> Vec<u8> {
    let mut out = vec![2];
    out.extend((name.len() as u16).to_be_bytes());
    out.extend(name.as_bytes());
    out.push(0);
    out.extend(id.to_be_bytes());
    out.extend(args);
    out
}

/// An AMF0 string.
fn amf_string(s: &str) -> Vec<u8> {
    let mut out = vec![2];
    out.extend((s.len() as u16).to_be_bytes());
    out.extend(s.as_bytes());
    out
}

/// One whole message (at most the 64 KiB chunk size) on chunk stream 4 of message stream 1.
fn message(kind: u8, timestamp: u32, body: &[u8]) -> Vec<u8> {
    let mut out = header(4, body.len() as u32, kind);
    out[1..4].copy_from_slice(&timestamp.to_be_bytes()[1..]);
    out.extend(body);
    out
}

/// What a client sends after the handshake to publish `key` in `app`: a chunk size of 64 KiB,
/// connect, createStream (stream 1), and publish on it.
fn publishing(app_name: &str, key: &str) -> Vec<u8> {
    let mut out = header(2, 4, 1);
    out.extend(65536u32.to_be_bytes());
    let mut app = vec![3];
    app.extend(3u16.to_be_bytes());
    app.extend(b"app");
    app.extend(amf_string(app_name));
    app.extend([0, 0, 9]);
    for body in [command("connect", 1.0, &app), command("createStream", 2.0, &[5])] {
        let mut h = header(3, body.len() as u32, 20);
        h[8] = 0;
        out.extend(h);
        out.extend(body);
    }
    let mut args = vec![5];
    args.extend(amf_string(key));
    args.extend(amf_string("live"));
    out.extend(message(20, 0, &command("publish", 3.0, &args)));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_timestamps_stand_still_cannot_pile_up_in_the_remux() {
    let sim = sim("rtmp-pileup", false).await;
    let mut config = gateway_config(&[&sim]);
    config.ingest.cut.max_bytes = 16 << 20;
    let gw = start(config).await;
    let tags = sample_tags();
    let video: Vec<&Vec<u8>> = tags.iter().filter(|t| t.0 == 9).map(|t| &t.1).collect();
    let audio: Vec<&Vec<u8>> = tags.iter().filter(|t| t.0 == 8).map(|t| &t.1).collect();
    let mut socket = TcpStream::connect(gw.rtmp_addr.unwrap()).await.unwrap();
    let mut out = handshake(&mut socket).await;
    out.extend(publishing("hold", "key"));
    // The codecs, one audio frame, then keyframes that all say 0 ms.
    out.extend(message(9, 0, video[0]));
    out.extend(message(8, 0, audio[0]));
    out.extend(message(8, 0, audio[1]));
    let (mut reader, mut writer) = socket.into_split();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while matches!(reader.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    writer.write_all(&out).await.unwrap();
    let frame = message(9, 0, video[1]);
    let (mut sent, most) = (0usize, 400usize << 20);
    while sent < most {
        if writer.write_all(&frame).await.is_err() {
            break;
        }
        sent += frame.len();
    }
    // The remux may hold a segment's cap (16 MiB); before, it took all 400 MiB (ffmpeg's
    // resident set grew past them) until the stall deadline ended the stream.
    assert!(sent < 100 << 20, "{} MiB sent before the gateway closed", sent >> 20);
    gw.shutdown().await;
}

/// A connection to `addr` from `source`, any 127.x address (all are the loopback's).
async fn connect_from(source: [u8; 4], addr: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((std::net::Ipv4Addr::from(source), 0).into()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Connects to `addr` from `source` (any 127.x address is the loopback's) and returns the
/// socket once the gateway answered a handshake, or `None` if it closed the connection.
async fn answered_from(source: [u8; 4], addr: std::net::SocketAddr) -> Option<TcpStream> {
    let mut socket = connect_from(source, addr).await;
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0u8; 1536]);
    // A refused connection may be reset before the write or the read.
    socket.write_all(&c0c1).await.ok()?;
    let mut s = vec![0u8; 1 + 1536 + 1536];
    socket.read_exact(&mut s).await.ok()?;
    Some(socket)
}

/// Reads from `socket` until `needle` has come, or the connection ends.
async fn read_until(socket: &mut TcpStream, needle: &[u8]) -> bool {
    let (mut seen, mut buf) = (Vec::new(), [0u8; 4096]);
    loop {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        if seen.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_may_hold_only_a_few_connections_yet_to_publish() {
    let sim = sim("rtmp-per-address", false).await;
    let mut config = gateway_config(&[&sim]);
    config.transcode.max_sessions = 4;
    let gw = start(config).await;
    let rtmp = gw.rtmp_addr.unwrap();
    let most = livepeer_gateway::ingest::rtmp::MAX_PENDING_PER_ADDRESS;
    // All but one of the address's places taken by clients trickling a handshake, each
    // connected (and so accepted, in order) before the next.
    let mut clients = Vec::new();
    for _ in 0..most - 1 {
        let socket = TcpStream::connect(rtmp).await.unwrap();
        clients.push(tokio::spawn(trickle_on(socket)));
    }
    // The last one publishes, which gives its place back.
    let mut publisher = answered_from([127, 0, 0, 1], rtmp).await.expect("a place was left");
    publisher.write_all(&[0u8; 1536]).await.unwrap();
    publisher.write_all(&publishing("perip", "key")).await.unwrap();
    assert!(read_until(&mut publisher, b"NetStream.Publish.Start").await, "publish refused");
    // So one more from the address is let in, and then no more.
    let last = answered_from([127, 0, 0, 1], rtmp).await;
    assert!(last.is_some(), "a publishing connection still counted as yet to publish");
    // (Each trickling client still holds its place: one closed early would leave room.)
    assert!(clients.iter().all(|c| !c.is_finished()), "a trickling client was closed early");
    let refused = answered_from([127, 0, 0, 1], rtmp).await;
    assert!(refused.is_none(), "a connection over the address's cap was let in");
    // Another address still gets in, while the first one's connections are all held.
    let other = answered_from([127, 0, 0, 2], rtmp).await;
    assert!(other.is_some(), "another address was refused");
    assert!(clients.iter().all(|c| !c.is_finished()), "a trickling client was closed early");
    for client in clients {
        client.abort();
    }
    drop((publisher, last, other));
    gw.shutdown().await;
}
