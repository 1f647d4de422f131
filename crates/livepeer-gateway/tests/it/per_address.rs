//! The per-address connection cap of both ports (`--max-connections-per-address`), over real
//! sockets: clients bound to distinct loopback addresses (Linux routes all of 127/8 to `lo`)
//! are distinct clients to the gateway.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use livepeer_gateway::Gateway;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{config, eventually, start, without_node_labels};

/// Far longer than the gateway takes to close a refused connection or to answer: only a
/// connection held (or a request unanswered) runs into it.
const BOUND: Duration = Duration::from_secs(5);

const CAP: usize = 3;

/// The client the cap is reached by, another one, and the one that reads the metrics.
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const WATCHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

const KEEP_ALIVE: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
const CLOSE: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// A connection to `addr` from `source`.
async fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads until the head of an answer has come (`None` if the connection closes first, or
/// nothing came within [`BOUND`]); the answer's bytes so far.
async fn answer_head(conn: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
            if got.windows(4).any(|w| w == b"\r\n\r\n") {
                return Some(String::from_utf8_lossy(&got).into_owned());
            }
        }
    };
    tokio::time::timeout(BOUND, read).await.ok().flatten()
}

/// `GET /healthz` on a new connection from `source`, which the gateway answers with 200.
async fn served_from(source: Ipv4Addr, addr: SocketAddr) -> bool {
    let mut conn = connect_from(source, addr).await;
    conn.write_all(CLOSE).await.is_ok()
        && answer_head(&mut conn).await.is_some_and(|a| a.starts_with("HTTP/1.1 200"))
}

/// Whether the gateway closes `conn` (EOF or reset) with no answer to the request sent on
/// it, within [`BOUND`].
async fn refused(mut conn: TcpStream) -> bool {
    // The request may find the socket closed already (the write then fails): fine.
    let _ = conn.write_all(KEEP_ALIVE).await;
    let mut rest = Vec::new();
    match tokio::time::timeout(BOUND, conn.read_to_end(&mut rest)).await {
        Ok(_) => rest.is_empty(),
        Err(_) => false,
    }
}

/// The refusals `listener` counted, from `/metrics` (read from [`WATCHER`]'s address).
async fn refusals(gw: &Gateway, listener: &str) -> u64 {
    let mut conn = connect_from(WATCHER, gw.admin_addr).await;
    // A loopback `Host`: the token-less admin API answers no other.
    let get = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    conn.write_all(get).await.unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).await.unwrap();
    let text = without_node_labels(text.split_once("\r\n\r\n").map_or("", |(_, body)| body));
    let series =
        format!("livepeer_gateway_http_connections_refused_total{{listener=\"{listener}\"}} ");
    let line = text.lines().find_map(|l| l.strip_prefix(series.as_str()));
    line.unwrap_or_else(|| panic!("no {series}in /metrics")).trim().parse().unwrap()
}

/// Reaches the cap from [`CLIENT`] on `addr` (the listener `listener`), and checks that
/// further connections from it are closed unserved and counted, that another address is
/// served meanwhile, and that a place freed is taken again.
async fn the_cap_holds(gw: &Gateway, addr: SocketAddr, listener: &str) {
    // Held: each is served, and stays open (kept alive, idle) afterwards.
    let mut held = Vec::new();
    for i in 0..CAP {
        let mut conn = connect_from(CLIENT, addr).await;
        conn.write_all(KEEP_ALIVE).await.unwrap();
        let answer = answer_head(&mut conn).await;
        let answer = answer.unwrap_or_else(|| panic!("{listener}: connection {i} not served"));
        assert!(answer.starts_with("HTTP/1.1 200"), "{listener}: {answer}");
        held.push(conn);
    }
    // Several, so that on a port of several serving threads some reach each listener.
    const EXTRA: usize = 6;
    for i in CAP..CAP + EXTRA {
        let conn = connect_from(CLIENT, addr).await;
        assert!(refused(conn).await, "{listener}: connection {i} beyond the cap held");
    }
    assert!(served_from(OTHER, addr).await, "{listener}: another address was not served");
    assert_eq!(refusals(gw, listener).await, EXTRA as u64, "{listener}");
    // The held ones are still open: a second request on one is answered.
    held[1].write_all(KEEP_ALIVE).await.unwrap();
    let again = answer_head(&mut held[1]).await;
    assert!(again.is_some_and(|a| a.contains("200")), "{listener}: a held connection ended");
    // A place freed once the gateway has seen its connection close.
    drop(held.remove(0));
    eventually(BOUND, "a place freed is taken again", || served_from(CLIENT, addr)).await;
}

#[tokio::test]
async fn one_address_holds_at_most_its_cap_on_either_port() {
    let mut c = config(&[]);
    c.max_connections_per_address = CAP;
    // Two listeners on the public port: the cap is the port's, across them.
    c.http_threads = 2;
    let gw = start(c).await;
    the_cap_holds(&gw, gw.http_addr, "public-api").await;
    the_cap_holds(&gw, gw.admin_addr, "admin-api").await;
    gw.shutdown().await;
}

/// With the port full of one address's connections, that address's next ones are still
/// closed at once, not held waiting for a place; they take none, so another address's
/// client, waiting in the accept queue, is served as soon as one of the first closes.
#[tokio::test]
async fn over_its_cap_a_connection_is_closed_at_once_even_when_the_port_is_full() {
    let mut c = config(&[]);
    c.max_connections = CAP;
    c.max_connections_per_address = CAP;
    c.http_threads = 2;
    let gw = start(c).await;
    let addr = gw.http_addr;
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut conn = connect_from(CLIENT, addr).await;
        conn.write_all(KEEP_ALIVE).await.unwrap();
        assert!(answer_head(&mut conn).await.is_some_and(|a| a.starts_with("HTTP/1.1 200")));
        held.push(conn);
    }
    for i in CAP..CAP + 6 {
        let conn = connect_from(CLIENT, addr).await;
        assert!(refused(conn).await, "connection {i} beyond the cap held");
    }
    let mut waiting = connect_from(OTHER, addr).await;
    waiting.write_all(CLOSE).await.unwrap();
    drop(held.remove(0));
    let answer = answer_head(&mut waiting).await;
    assert!(answer.is_some_and(|a| a.starts_with("HTTP/1.1 200")), "no place came free");
    gw.shutdown().await;
}
