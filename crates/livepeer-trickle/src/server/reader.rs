//! A subscriber's response body, and the watchdog that lets go of a subscriber who stops
//! taking bytes.
//!
//! A reader that never reads would otherwise hold its segment (up to the segment limit, even
//! after the window evicts it) and its place among the channel's readers for as long as its
//! connection lasts. The server cannot see the socket, but it can see hyper: hyper asks the
//! body for more only once its write buffer (a few hundred kB at most) has gone to the socket,
//! so a body that handed over bytes and is not asked again for `stall` has a reader that
//! took none of them, or fewer than a live stream needs. Waiting for the publisher is not
//! stalling: only the reader can be blamed.
//!
//! A slow but steady reader is not stalled, yet it too pins its segment after the window
//! evicted it; the channel bounds the bytes so kept and fires the segment's `let_go` for the
//! readers of the oldest, which the watchdog treats as a stall.
//!
//! On a stall the watchdog takes the cursor and the reader's place away, releasing the
//! segment at once; the body ends in an error when hyper next asks for it, so hyper drops the
//! connection instead of pretending the segment was complete. (Closing the socket itself while
//! hyper is blocked writing is up to the server, with a write deadline on its connections.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::channel::lock;
use super::{Cursor, ReaderSlot};

/// What the body is doing, as the watchdog sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Asked for bytes, waiting for the publisher: not the reader's fault.
    Pulling,
    /// Handed bytes to hyper, not asked again yet: the reader is taking them (or not).
    Handed,
}

/// What the watchdog may take away from the body.
#[derive(Debug)]
struct Held {
    cursor: Option<Cursor>,
    slot: Option<ReaderSlot>,
}

/// The body of a segment GET: `first`, then whatever the publisher writes until the segment
/// ends; watched so that a reader stalled for `stall` is let go.
pub(super) fn segment_body(
    first: Bytes,
    cursor: Cursor,
    slot: ReaderSlot,
    stall: Duration,
    let_go: CancellationToken,
) -> Body {
    let held = Arc::new(Mutex::new(Held { cursor: Some(cursor), slot: Some(slot) }));
    let (phase, watched) = watch::channel(Phase::Handed);
    tokio::spawn(watchdog(Arc::clone(&held), watched, stall, let_go));
    let stream = futures_util::stream::unfold(
        (Some(first), held, phase),
        |(first, held, phase)| async move {
            if let Some(first) = first {
                return Some((Ok(first), (None, held, phase)));
            }
            phase.send_replace(Phase::Pulling);
            let taken = lock(&held).cursor.take();
            let Some(mut cursor) = taken else {
                // Let go by the watchdog: end in an error so the response is not taken as whole.
                let cut = std::io::Error::new(std::io::ErrorKind::TimedOut, "subscriber let go");
                return Some((Err(cut), (None, held, phase)));
            };
            let bytes = cursor.next().await;
            lock(&held).cursor = Some(cursor);
            let bytes = bytes?;
            phase.send_replace(Phase::Handed);
            Some((Ok(bytes), (None, held, phase)))
        },
    );
    // After an error the stream would be asked again: stop it there.
    let stream = futures_util::StreamExt::take_while(stream, {
        let mut failed = false;
        move |item: &Result<Bytes, std::io::Error>| {
            let go = !failed;
            failed |= item.is_err();
            std::future::ready(go)
        }
    });
    Body::from_stream(stream)
}

/// Lets go of the reader once its body has handed over bytes and not been asked for more
/// within `stall`, or once `let_go` fires (its segment left the window and the channel keeps
/// no more for readers behind it); ends with the body.
async fn watchdog(
    held: Arc<Mutex<Held>>,
    mut phase: watch::Receiver<Phase>,
    stall: Duration,
    let_go: CancellationToken,
) {
    let why = loop {
        let handed = *phase.borrow_and_update() == Phase::Handed;
        let next = async {
            if handed {
                tokio::time::timeout(stall, phase.changed()).await.ok()
            } else {
                Some(phase.changed().await)
            }
        };
        let changed = tokio::select! {
            () = let_go.cancelled() => break "fell behind the window",
            changed = next => changed,
        };
        match changed {
            None => break "stalled",
            // The body is gone: it released everything itself.
            Some(Err(_)) => return,
            Some(Ok(())) => {}
        }
    };
    let released = {
        let mut held = lock(&held);
        (held.cursor.take(), held.slot.take())
    };
    tracing::debug!(stall_ms = stall.as_millis(), why, "trickle subscriber let go");
    drop(released);
}
