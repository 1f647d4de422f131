//! The listeners under clients that hold connections: silent ones, idle keep-alive and h2c
//! connections, and more connections than the cap. Raw sockets throughout, so nothing in a
//! client library hides what the gateway does.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{config, start};

/// Far longer than any deadline these tests configure: a connection still open after this is
/// held for good.
const BOUND: Duration = Duration::from_secs(5);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the peer closes `conn` (EOF or reset) within `limit`; what it sent is discarded.
async fn closed_within(conn: &mut TcpStream, limit: Duration) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(limit, conn.read_to_end(&mut sink)).await.is_ok()
}

/// One HTTP/1.1 `GET` on a new connection that closes after it; the whole answer.
async fn get(addr: SocketAddr, path: &str) -> String {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    answer
}

/// Reads one HTTP/1.1 response with a `Content-Length` from a kept-alive connection.
async fn read_response(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed mid-response: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(str::to_owned)
                })
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

/// An HTTP/2 frame header and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads frames until one on `stream` ends it (END_STREAM); fails if the connection closes.
async fn read_until_stream_end(conn: &mut TcpStream, stream: u32) {
    loop {
        let mut head = [0u8; 9];
        conn.read_exact(&mut head).await.unwrap();
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        conn.read_exact(&mut payload).await.unwrap();
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        // DATA (0) or HEADERS (1) with END_STREAM (0x1).
        if id == stream && head[3] <= 1 && head[4] & 0x1 != 0 {
            return;
        }
    }
}

#[tokio::test]
async fn connections_that_send_nothing_are_closed_while_prompt_clients_are_served() {
    let mut c = config(&[]);
    c.header_timeout = Duration::from_millis(300);
    let gw = start(c).await;
    for addr in [gw.http_addr, gw.admin_addr] {
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let answer = get(addr, "/healthz").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{addr}: {answer}");
        assert!(closed_within(&mut silent, BOUND).await, "{addr}: a silent connection is held");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let mut c = config(&[]);
    c.header_timeout = Duration::from_secs(30);
    c.idle_timeout = Duration::from_millis(300);
    let gw = start(c).await;
    for addr in [gw.http_addr, gw.admin_addr] {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let answer = read_response(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{addr}: {answer}");
        // A second request on the same connection: keep-alive still works.
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let answer = read_response(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{addr}: {answer}");
        assert!(
            closed_within(&mut conn, BOUND).await,
            "{addr}: an idle HTTP/1.1 connection is held"
        );
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn idle_h2c_connections_are_closed() {
    let mut c = config(&[]);
    c.header_timeout = Duration::from_secs(30);
    c.idle_timeout = Duration::from_millis(300);
    let gw = start(c).await;
    let mut conn = TcpStream::connect(gw.http_addr).await.unwrap();
    conn.write_all(PREFACE).await.unwrap();
    conn.write_all(&frame(0x4, 0, 0, &[])).await.unwrap(); // SETTINGS, none changed
    // HEADERS, END_STREAM | END_HEADERS: GET http /healthz, HPACK literals without indexing.
    let mut block = vec![0x82, 0x86, 0x04, 8];
    block.extend_from_slice(b"/healthz");
    block.extend_from_slice(&[0x01, 1, b'x']);
    conn.write_all(&frame(0x1, 0x5, 1, &block)).await.unwrap();
    read_until_stream_end(&mut conn, 1).await;
    assert!(closed_within(&mut conn, BOUND).await, "an idle h2c connection is held");
    gw.shutdown().await;
}

#[tokio::test]
async fn h2c_connections_that_stop_after_the_preface_are_closed() {
    let mut c = config(&[]);
    c.header_timeout = Duration::from_millis(300);
    let gw = start(c).await;
    for addr in [gw.http_addr, gw.admin_addr] {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(PREFACE).await.unwrap();
        conn.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
        assert!(
            closed_within(&mut conn, BOUND).await,
            "{addr}: a preface-only h2c connection is held"
        );
    }
    gw.shutdown().await;
}

/// The socket inodes of this process's open file descriptors.
fn own_socket_inodes() -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        let target = target.to_string_lossy().to_string();
        if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
            inodes.insert(inode.parse().unwrap());
        }
    }
    inodes
}

/// How many file descriptors of this process are connections the gateway accepted on `addr`
/// (local address `addr`, not the listening socket). Connections still waiting in the
/// kernel's accept queue have no descriptor and are not counted. Distinct inodes are counted:
/// `/proc/net/tcp` is read in chunks, and while other tests open and close sockets a row can
/// appear twice.
fn accepted_fds(addr: SocketAddr) -> usize {
    let own = own_socket_inodes();
    let local = format!("0100007F:{:04X}", addr.port());
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let accepted: HashSet<u64> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // cols: sl, local, remote, state, queues, timer, retransmits, uid, timeout, inode
            if cols.len() <= 9 || cols[1] != local || cols[3] == "0A" {
                return None;
            }
            cols[9].parse().ok().filter(|inode: &u64| own.contains(inode))
        })
        .collect();
    accepted.len()
}

#[tokio::test]
async fn the_connection_cap_bounds_descriptors_and_clients_are_served_after_silent_ones_close() {
    const CAP: usize = 8;
    let mut c = config(&[]);
    c.header_timeout = Duration::from_millis(300);
    c.max_connections = CAP;
    let gw = start(c).await;
    let addr = gw.http_addr;

    // Watch the gateway's descriptors for this listener for the whole test.
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let (peak, done) = (peak.clone(), done.clone());
        async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(accepted_fds(addr), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });

    let mut silent = Vec::new();
    for _ in 0..CAP + 20 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let answer = tokio::time::timeout(Duration::from_secs(20), get(addr, "/healthz")).await;
    let answer = answer.expect("a prompt client is never served");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The admin port has its own cap: it answered all along.
    let admin = tokio::time::timeout(BOUND, get(gw.admin_addr, "/healthz")).await.unwrap();
    assert!(admin.starts_with("HTTP/1.1 200"), "{admin}");
    for (i, conn) in silent.iter_mut().enumerate() {
        assert!(closed_within(conn, BOUND).await, "silent connection {i} is held");
    }
    peak.fetch_max(accepted_fds(addr), Ordering::Relaxed);
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let peak = peak.load(Ordering::Relaxed);
    eprintln!("peak accepted connections: {peak}");
    // Each serving thread may hold one accepted connection waiting for a slot.
    let most = CAP + std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(peak <= most, "the gateway held {peak} connections on a listener capped at {CAP}");
    gw.shutdown().await;
}

/// At the cap, with slots held by idle clients on some serving threads, every new client is
/// served while a slot is free, whichever thread's queue the kernel puts it in.
#[tokio::test]
async fn a_free_slot_serves_clients_of_any_thread() {
    let mut c = config(&[]);
    c.header_timeout = Duration::from_secs(120);
    c.idle_timeout = Duration::from_secs(120);
    c.max_connections = 3;
    c.http_threads = 2;
    let gw = start(c).await;
    let addr = gw.http_addr;
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let answer = read_response(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        idle.push(conn);
    }
    for i in 0..12 {
        let answer = tokio::time::timeout(BOUND, get(addr, "/healthz")).await;
        let answer = answer.unwrap_or_else(|_| panic!("client {i} waited with a slot free"));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    drop(idle);
    gw.shutdown().await;
}
