//! Lingering close, as nginx's `lingering_close`: a connection closed while its client is still
//! sending (a body refused by its declared length, answered 413 before it was read) is
//! half-closed, and what the client still sends is read and discarded for a bounded time
//! before the socket is closed.
//!
//! Closing a socket with unread bytes makes the kernel answer with a reset rather than the end
//! of the stream, and a reset can reach the client before it has read the answer: it then sees
//! "connection reset" or "broken pipe" instead of the 413. Whether the client read first was a
//! matter of timing, which the public port's per-core runtimes changed (hyper closes sooner).
//!
//! hyper owns the connection's socket and gives it back to nobody, so a second descriptor of
//! the same socket is kept from the start: when hyper drops its own, the socket stays open
//! until this one decides.

use std::io::ErrorKind;
use std::net::Shutdown;
use std::os::fd::AsFd as _;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

/// How long a client still sending after the answer is read from and ignored, at most. The
/// connection keeps its place under the listener's cap meanwhile.
const LINGER: Duration = Duration::from_secs(2);

/// A second descriptor of a connection's socket.
#[derive(Debug)]
pub(super) struct Linger(Option<std::net::TcpStream>);

impl Linger {
    /// Keeps a descriptor of `stream`'s socket (none if the process is out of descriptors:
    /// that connection is then closed as before, at once).
    pub(super) fn new(stream: &TcpStream) -> Self {
        Self(stream.as_fd().try_clone_to_owned().ok().map(std::net::TcpStream::from))
    }

    /// Closes the socket once hyper has let go of it. With nothing left unread, at once (with
    /// the end of the stream); with bytes still coming, after the end of the stream was sent
    /// and the client closed or [`LINGER`] went by. `upgraded`: the socket went on to serve
    /// an upgraded protocol, and is not this connection's to close any more.
    pub(super) async fn close(self, upgraded: bool) {
        let Some(socket) = self.0 else { return };
        if upgraded {
            return;
        }
        // Accepted sockets are non-blocking (the flag belongs to the socket, not to the
        // descriptor): this only looks at what is already there.
        let pending = matches!(socket.peek(&mut [0u8; 1]), Ok(n) if n > 0);
        let _ = socket.shutdown(Shutdown::Write);
        if !pending {
            return;
        }
        let Ok(mut socket) = TcpStream::from_std(socket) else { return };
        // On the heap: every connection's task carries this future, and only a few linger.
        let mut sink = vec![0u8; 16 << 10];
        let discard = async {
            loop {
                match socket.read(&mut sink).await {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, discard).await;
    }
}
