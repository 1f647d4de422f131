//! One channel: a ring of segments, and the segments themselves.
//!
//! A segment's bytes live in a `watch` channel so that any number of readers can follow the
//! writer without a per-reader queue: a reader remembers how far it got and waits for the next
//! change. Chunks are `Bytes`, so fan-out to many readers copies nothing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Writes shorter than this are copied into a shared tail buffer rather than kept as their own
/// chunk, so a publisher sending tiny writes cannot make per-chunk overhead dwarf the payload
/// (and pin the larger network buffers the tiny slices point into).
const SMALL_WRITE: usize = 4096;
/// The tail buffer becomes a chunk of its own once it holds this much.
const TAIL_LIMIT: usize = 16 * 1024;

/// Locks a mutex, ignoring poisoning: every critical section here leaves the data consistent,
/// so a panic elsewhere must not take the server down with it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The bytes of a segment so far.
#[derive(Debug, Default)]
pub(crate) struct SegmentData {
    /// Complete chunks, in order.
    chunks: Vec<Bytes>,
    /// Small writes gathered after the last chunk.
    tail: BytesMut,
    /// Payload bytes in `chunks` and `tail`.
    len: usize,
    /// No more bytes will come.
    closed: bool,
}

impl SegmentData {
    /// Moves the tail into the chunk list, so it stops being copied on reads.
    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            let sealed = self.tail.split().freeze();
            self.chunks.push(sealed);
        }
    }
}

/// Why an append was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppendError {
    /// The segment was closed (finished, abandoned, evicted or its channel closed).
    Closed,
    /// The segment would grow past the limit.
    TooLarge,
}

/// One segment of a channel.
#[derive(Debug)]
pub(crate) struct Segment {
    seq: u64,
    data: watch::Sender<SegmentData>,
    /// Fired when the subscribers served this segment over HTTP must let it go: it left the
    /// window, and the bytes its channel holds outside the window are over their bound.
    let_go: CancellationToken,
}

impl Segment {
    fn new(seq: u64) -> Arc<Self> {
        let data = watch::Sender::new(SegmentData::default());
        Arc::new(Self { seq, data, let_go: CancellationToken::new() })
    }

    /// What an HTTP subscriber of the segment watches: once fired, it lets the segment go.
    pub(crate) fn let_go(&self) -> CancellationToken {
        self.let_go.clone()
    }

    /// Its sequence number.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Payload bytes held.
    pub(crate) fn len(&self) -> usize {
        self.data.borrow().len
    }

    /// Whether it has ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.data.borrow().closed
    }

    /// Appends `chunk`, refusing to grow past `limit` bytes, and wakes the readers.
    pub(crate) fn append(&self, chunk: Bytes, limit: usize) -> Result<(), AppendError> {
        let mut result = Ok(());
        self.data.send_if_modified(|data| {
            if data.closed {
                result = Err(AppendError::Closed);
                return false;
            }
            if chunk.is_empty() {
                return false;
            }
            if data.len.saturating_add(chunk.len()) > limit {
                result = Err(AppendError::TooLarge);
                return false;
            }
            data.len += chunk.len();
            if chunk.len() < SMALL_WRITE {
                if data.tail.len() + chunk.len() > TAIL_LIMIT {
                    data.seal_tail();
                }
                data.tail.extend_from_slice(&chunk);
            } else {
                data.seal_tail();
                data.chunks.push(chunk);
            }
            true
        });
        result
    }

    /// Ends the segment and wakes its readers and writers; returns whether it was open.
    pub(crate) fn close(&self) -> bool {
        self.data.send_if_modified(|data| {
            if data.closed {
                return false;
            }
            data.closed = true;
            true
        })
    }

    /// Waits until the segment is closed.
    pub(crate) async fn closed(&self) {
        let mut rx = self.data.subscribe();
        // The sender lives in `self`, so this only fails if the segment is gone, which cannot
        // happen while `self` is borrowed.
        let _ = rx.wait_for(|data| data.closed).await;
    }

    /// A reader of the segment from byte 0.
    pub(crate) fn cursor(self: &Arc<Self>) -> Cursor {
        Cursor { _segment: Arc::clone(self), rx: self.data.subscribe(), index: 0, skip: 0 }
    }
}

/// What a cursor found without waiting.
enum Step {
    Data(Bytes),
    End,
    Wait,
}

/// A reader's position in a segment. Holding a cursor keeps the segment's bytes alive even
/// after the segment left its channel's window, so a slow reader still finishes (an HTTP
/// subscriber, while its channel keeps no more than a window's bytes for readers behind it).
#[derive(Debug)]
pub(crate) struct Cursor {
    /// Keeps the sender alive, so `changed()` only fails if the segment really is gone.
    _segment: Arc<Segment>,
    rx: watch::Receiver<SegmentData>,
    /// The next chunk to read (`chunks.len()` means the tail).
    index: usize,
    /// Bytes already read from the chunk at `index` (or the tail).
    skip: usize,
}

impl Cursor {
    fn try_next(&mut self) -> Step {
        // `borrow_and_update` marks the value seen, so a change made after this look wakes
        // the following `changed()`.
        let data = self.rx.borrow_and_update();
        while self.index < data.chunks.len() {
            let chunk = &data.chunks[self.index];
            let skip = self.skip;
            self.index += 1;
            self.skip = 0;
            if skip < chunk.len() {
                return Step::Data(chunk.slice(skip..));
            }
        }
        if data.tail.len() > self.skip {
            let out = Bytes::copy_from_slice(&data.tail[self.skip..]);
            self.skip = data.tail.len();
            return Step::Data(out);
        }
        if data.closed { Step::End } else { Step::Wait }
    }

    /// The next bytes, waiting for the writer; `None` once the segment has ended.
    pub(crate) async fn next(&mut self) -> Option<Bytes> {
        loop {
            match self.try_next() {
                Step::Data(bytes) => return Some(bytes),
                Step::End => return None,
                Step::Wait => {
                    if self.rx.changed().await.is_err() {
                        return None;
                    }
                }
            }
        }
    }
}

/// Where a read request landed.
#[derive(Debug)]
pub(crate) enum ReadSlot {
    /// The segment exists (or was pre-created for a reader waiting at the live edge).
    Found {
        /// The segment.
        segment: Arc<Segment>,
        /// The channel's next write sequence when the request arrived.
        latest: u64,
    },
    /// The segment is outside the window.
    Missing {
        /// The requested sequence, resolved.
        seq: i64,
        /// The channel's next write sequence.
        latest: u64,
        /// Whether the channel is closed.
        closed: bool,
    },
}

/// The channel was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelClosed;

#[derive(Debug)]
struct ChannelState {
    /// Ring of segments: slot = seq mod window.
    slots: Vec<Option<Arc<Segment>>>,
    /// Segments evicted from the window that subscribers were still reading, oldest first.
    evicted: VecDeque<Weak<Segment>>,
    /// Most bytes of evicted segments kept for their subscribers: as much as the window holds.
    max_evicted_bytes: usize,
    next_write: u64,
    closed: bool,
    last_activity: Instant,
}

impl ChannelState {
    fn slot(&self, seq: u64) -> usize {
        // `slots` is never empty (the hub clamps the window to at least 1).
        (seq % self.slots.len() as u64) as usize
    }

    fn get(&self, seq: u64) -> Option<&Arc<Segment>> {
        self.slots[self.slot(seq)].as_ref().filter(|segment| segment.seq == seq)
    }

    /// Puts a fresh segment `seq` in its slot, closing whatever it evicts so that the evicted
    /// segment's readers and writers are released.
    fn install(&mut self, seq: u64) -> Arc<Segment> {
        let segment = Segment::new(seq);
        let slot = self.slot(seq);
        if let Some(old) = self.slots[slot].replace(Arc::clone(&segment)) {
            old.close();
            self.keep_evicted(old);
        }
        segment
    }

    /// Keeps `old`, just evicted, for the subscribers still reading it, within
    /// `max_evicted_bytes` in all: past that, the subscribers of the oldest evicted segments
    /// are let go. Each subscriber pins one segment, so without this bound a client's slow
    /// subscribers (up to the channel's readers, each a segment behind the last) held a
    /// segment apiece long after the window let them go: 16 × 16 MiB a channel.
    fn keep_evicted(&mut self, old: Arc<Segment>) {
        // Here and in the slot it just left, nobody else: freed when `old` drops.
        if Arc::strong_count(&old) > 1 {
            self.evicted.push_back(Arc::downgrade(&old));
        }
        drop(old);
        self.evicted.retain(|segment| segment.strong_count() > 0);
        let mut held: usize =
            self.evicted.iter().filter_map(Weak::upgrade).map(|segment| segment.len()).sum();
        while held > self.max_evicted_bytes {
            let Some(oldest) = self.evicted.pop_front() else { break };
            if let Some(oldest) = oldest.upgrade() {
                held = held.saturating_sub(oldest.len());
                oldest.let_go.cancel();
            }
        }
    }
}

/// A named stream of segments.
#[derive(Debug)]
pub(crate) struct Channel {
    name: String,
    mime: String,
    max_segment_bytes: usize,
    /// Subscribers served at once, at most.
    max_readers: usize,
    /// Subscribers being served now (each holds a [`ReaderSlot`]).
    readers: AtomicUsize,
    state: Mutex<ChannelState>,
}

/// One subscriber's place among a channel's readers, given back when dropped.
#[derive(Debug)]
pub(crate) struct ReaderSlot(Arc<Channel>);

impl Drop for ReaderSlot {
    fn drop(&mut self) {
        self.0.readers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A snapshot of a channel, for [`crate::ChannelStats`].
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) next_write: u64,
    pub(crate) bytes: usize,
    pub(crate) closed: bool,
    pub(crate) last_activity: Instant,
}

impl Channel {
    pub(crate) fn new(name: &str, mime: &str, window: usize, max_segment_bytes: usize) -> Self {
        Self {
            name: name.to_owned(),
            mime: mime.to_owned(),
            max_segment_bytes,
            max_readers: usize::MAX,
            readers: AtomicUsize::new(0),
            state: Mutex::new(ChannelState {
                slots: vec![None; window.max(1)],
                evicted: VecDeque::new(),
                max_evicted_bytes: window.max(1).saturating_mul(max_segment_bytes),
                next_write: 0,
                closed: false,
                last_activity: Instant::now(),
            }),
        }
    }

    /// The same channel serving at most `max_readers` subscribers at once.
    pub(crate) fn with_max_readers(mut self, max_readers: usize) -> Self {
        self.max_readers = max_readers;
        self
    }

    /// A place for one more subscriber, or `None` if `max_readers` are being served.
    pub(crate) fn reader_slot(self: &Arc<Self>) -> Option<ReaderSlot> {
        let max = self.max_readers;
        self.readers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| ReaderSlot(Arc::clone(self)))
    }

    /// Subscribers being served now.
    pub(crate) fn readers(&self) -> usize {
        self.readers.load(Ordering::Acquire)
    }

    /// Its name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Its mime type, as given at creation.
    pub(crate) fn mime(&self) -> &str {
        &self.mime
    }

    /// The largest segment it accepts.
    pub(crate) fn max_segment_bytes(&self) -> usize {
        self.max_segment_bytes
    }

    /// Whether it was closed.
    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    /// The sequence number the next publish gets.
    pub(crate) fn next_write(&self) -> u64 {
        lock(&self.state).next_write
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let state = lock(&self.state);
        let bytes = state.slots.iter().flatten().map(|segment| segment.len()).sum();
        Snapshot {
            next_write: state.next_write,
            bytes,
            closed: state.closed,
            last_activity: state.last_activity,
        }
    }

    /// The segment a reader asking for `seq` gets (`-1`: next write, `-2`: current write).
    /// A reader exactly at the live edge pre-creates the segment and then waits on it.
    pub(crate) fn read_slot(&self, seq: i64) -> ReadSlot {
        let mut state = lock(&self.state);
        let next_write = state.next_write;
        let seq = match seq {
            crate::SEQ_NEXT => next_write,
            crate::SEQ_CURRENT => next_write.saturating_sub(1),
            seq => match u64::try_from(seq) {
                Ok(seq) => seq,
                Err(_) => {
                    return ReadSlot::Missing { seq, latest: next_write, closed: state.closed };
                }
            },
        };
        if let Some(segment) = state.get(seq) {
            return ReadSlot::Found { segment: Arc::clone(segment), latest: next_write };
        }
        // Grace for readers slightly ahead: the next write, or seq 1 before anything was
        // written (a subscriber that preconnected one ahead of a publisher that has not started).
        let at_edge = seq == next_write || (next_write == 0 && seq == 1);
        if at_edge && !state.closed {
            let segment = state.install(seq);
            return ReadSlot::Found { segment, latest: next_write };
        }
        ReadSlot::Missing { seq: seq as i64, latest: next_write, closed: state.closed }
    }

    /// The segment a publisher writes for `seq` (`-1`: next write). An open segment already in
    /// the window is shared (the publisher appends to it); a closed one is started afresh, so a
    /// retried segment reaches readers normally. With `reset`, every older segment is closed
    /// first, releasing readers stuck on a previous publisher's segments.
    pub(crate) fn write_slot(&self, seq: i64, reset: bool) -> Result<Arc<Segment>, ChannelClosed> {
        let mut state = lock(&self.state);
        if state.closed {
            return Err(ChannelClosed);
        }
        let seq = u64::try_from(seq).unwrap_or(state.next_write);
        if reset {
            for segment in state.slots.iter().flatten() {
                if segment.seq < seq {
                    segment.close();
                }
            }
        }
        if let Some(segment) = state.get(seq).filter(|segment| !segment.is_closed()) {
            return Ok(Arc::clone(segment));
        }
        Ok(state.install(seq))
    }

    /// Records that a publisher wrote (or ended empty) segment `seq`: the live edge moves just
    /// past it, as go-livepeer does, even backwards, so that a publisher restarting from 0
    /// drags subscribers along (they get 470 and jump).
    pub(crate) fn mark_written(&self, seq: u64) {
        let mut state = lock(&self.state);
        state.next_write = seq.saturating_add(1);
        state.last_activity = Instant::now();
    }

    /// Counts now as activity, without a write (`Hub::touch`).
    pub(crate) fn touch(&self) {
        lock(&self.state).last_activity = Instant::now();
    }

    /// Closes segment `seq` if it is in the window; returns whether it was.
    pub(crate) fn close_segment(&self, seq: u64) -> bool {
        let state = lock(&self.state);
        match state.get(seq) {
            Some(segment) => {
                segment.close();
                true
            }
            None => false,
        }
    }

    /// Closes the channel and every segment in it, releasing all waiting readers and writers.
    pub(crate) fn close(&self) {
        self.close_keeping();
        self.release();
    }

    /// Closes it as [`Channel::close`] does, but keeps the segments in its window, so that a
    /// subscriber arriving a little late still reads what was published before the end.
    pub(crate) fn close_keeping(&self) {
        let mut state = lock(&self.state);
        state.closed = true;
        for segment in state.slots.iter().flatten() {
            segment.close();
        }
    }

    /// Lets go of the segments in its window (their current readers keep theirs).
    pub(crate) fn release(&self) {
        let mut state = lock(&self.state);
        for slot in &mut state.slots {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(cursor: &mut Cursor) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(bytes) = cursor.next().await {
            out.extend_from_slice(&bytes);
        }
        out
    }

    #[tokio::test]
    async fn cursor_reads_chunks_and_tail_in_order() {
        let segment = Segment::new(0);
        let mut early = segment.cursor();
        segment.append(Bytes::from_static(b"ab"), 1 << 20).unwrap();
        assert_eq!(early.next().await.unwrap(), Bytes::from_static(b"ab"));
        segment.append(Bytes::from_static(b"cd"), 1 << 20).unwrap();
        let big = Bytes::from(vec![7u8; SMALL_WRITE]);
        segment.append(big.clone(), 1 << 20).unwrap();
        segment.append(Bytes::from_static(b"ef"), 1 << 20).unwrap();
        segment.close();
        let mut expected = b"abcd".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"ef");
        assert_eq!(read_all(&mut segment.cursor()).await, expected);
        assert_eq!(read_all(&mut early).await, expected[2..].to_vec());
    }

    #[tokio::test]
    async fn tiny_writes_are_gathered() {
        let segment = Segment::new(0);
        for _ in 0..10_000 {
            segment.append(Bytes::from_static(b"x"), 1 << 20).unwrap();
        }
        assert_eq!(segment.len(), 10_000);
        assert!(segment.data.borrow().chunks.len() <= 1);
        assert_eq!(
            segment.append(Bytes::from(vec![0; 1 << 20]), 1 << 20),
            Err(AppendError::TooLarge)
        );
        segment.close();
        assert_eq!(segment.append(Bytes::from_static(b"x"), 1 << 20), Err(AppendError::Closed));
        assert_eq!(read_all(&mut segment.cursor()).await.len(), 10_000);
    }

    /// Evicted segments still read are kept up to the window's bytes (2 × 100 here); past
    /// that, the readers of the oldest are told to let go. Unread ones are not kept at all.
    #[test]
    fn evicted_segments_kept_for_readers_are_bounded() {
        let channel = Channel::new("c", "video/mp2t", 2, 100);
        let mut cursors = Vec::new();
        let mut let_go = Vec::new();
        for seq in 0..6 {
            let segment = channel.write_slot(seq, false).unwrap();
            segment.append(Bytes::from(vec![1; 90]), 100).unwrap();
            channel.mark_written(seq.unsigned_abs());
            // Segments 0–3 have a reader each; 4 and 5 none.
            if seq < 4 {
                cursors.push(segment.cursor());
            }
            let_go.push(segment.let_go());
        }
        // 0–3 evicted, 360 bytes read: 0 and 1 let go, 2 and 3 kept (180 ≤ 200).
        let fired: Vec<bool> = let_go.iter().map(CancellationToken::is_cancelled).collect();
        assert_eq!(fired, [true, true, false, false, false, false]);
        drop(cursors);
        let _seventh = channel.write_slot(6, false).unwrap();
        assert!(lock(&channel.state).evicted.is_empty(), "nothing read is kept");
    }

    #[test]
    fn window_evicts_and_closes() {
        let channel = Channel::new("c", "video/mp2t", 2, 100);
        let first = channel.write_slot(0, false).unwrap();
        channel.mark_written(0);
        let second = channel.write_slot(-1, false).unwrap();
        assert_eq!(second.seq(), 1);
        channel.mark_written(1);
        let third = channel.write_slot(2, false).unwrap();
        channel.mark_written(2);
        assert!(first.is_closed());
        assert!(!second.is_closed() && !third.is_closed());
        assert!(matches!(
            channel.read_slot(0),
            ReadSlot::Missing { seq: 0, latest: 3, closed: false }
        ));
        assert!(
            matches!(channel.read_slot(-2), ReadSlot::Found { ref segment, latest: 3 } if segment.seq() == 2)
        );
        let _fourth = channel.write_slot(3, true).unwrap();
        assert!(third.is_closed(), "reset closes older segments");
        channel.close();
        assert!(matches!(channel.read_slot(3), ReadSlot::Missing { closed: true, .. }));
        assert_eq!(channel.write_slot(4, false).unwrap_err(), ChannelClosed);
    }
}
