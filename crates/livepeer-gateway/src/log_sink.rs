//! Where log lines go: a shared in-memory buffer that a background thread writes out to
//! stderr on a short timer, or that the logging thread itself writes out once it is full.
//!
//! Why not `tracing_appender::non_blocking`: it hands every line to its writer thread over a
//! channel, and waking that thread cost a context switch per request — at the default `info`
//! level, where every AI request logs one line, that was about a fifth of the gateway's
//! throughput on a 2-core machine. Here a line costs a lock and a copy; the writer thread
//! wakes on its timer, not per line. Nothing is dropped: when the buffer is full the thread
//! that logs writes it out itself (back-pressure, as a direct write to stderr would give).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Above this many buffered bytes, the logging thread writes the buffer out itself.
const FULL: usize = 256 << 10;

/// How long a line may wait in the buffer.
const INTERVAL: Duration = Duration::from_millis(50);

struct Shared {
    buf: Mutex<Vec<u8>>,
    /// The output; its own lock keeps two writers' batches whole and in order.
    out: Mutex<Box<dyn Write + Send>>,
    stop: AtomicBool,
}

impl Shared {
    /// Writes out what is buffered. The buffer lock is held only to swap the buffer, so
    /// logging threads never wait on the output while it is being written.
    fn flush(&self, spare: &mut Vec<u8>) {
        let mut out = lock(&self.out);
        std::mem::swap(&mut *lock(&self.buf), spare);
        if !spare.is_empty() {
            // Logging must not fail the request path; a broken stderr loses lines.
            let _ = out.write_all(spare);
            let _ = out.flush();
            spare.clear();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A thread that panicked while logging leaves the bytes intact; keep using them.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The writer handed to `tracing_subscriber::fmt().with_writer(...)`.
#[derive(Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
}

/// Writes out what is left and stops the writer thread when dropped: keep it alive as long
/// as the process logs.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogSink")
    }
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogGuard")
    }
}

impl LogSink {
    /// A sink writing to `out`, with its writer thread.
    pub fn new(out: Box<dyn Write + Send>) -> std::io::Result<(Self, LogGuard)> {
        let shared = Arc::new(Shared {
            buf: Mutex::new(Vec::with_capacity(FULL)),
            out: Mutex::new(out),
            stop: AtomicBool::new(false),
        });
        let bg = shared.clone();
        let thread = std::thread::Builder::new().name("log-writer".into()).spawn(move || {
            let mut spare = Vec::with_capacity(FULL);
            while !bg.stop.load(Ordering::Acquire) {
                std::thread::park_timeout(INTERVAL);
                bg.flush(&mut spare);
            }
        })?;
        Ok((Self { shared: shared.clone() }, LogGuard { shared, thread: Some(thread) }))
    }

    /// A sink writing to stderr.
    pub fn stderr() -> std::io::Result<(Self, LogGuard)> {
        Self::new(Box::new(std::io::stderr()))
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        self.shared.flush(&mut Vec::new());
    }
}

impl Write for LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut buf = lock(&self.shared.buf);
            buf.extend_from_slice(bytes);
            buf.len() >= FULL
        };
        if full {
            self.shared.flush(&mut Vec::with_capacity(FULL));
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Lines are written out on the timer; an explicit flush from the formatter (once per
        // event) must not turn into a write per line again.
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LogSink;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that records what reached it, with the number of writes.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Recorder {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let mut r = lock(&self.0);
            r.0.extend_from_slice(b);
            r.1 += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_arrives_in_order_and_the_guard_writes_the_rest() {
        let rec = Recorder::default();
        let (sink, guard) = LogSink::new(Box::new(rec.clone())).unwrap();
        let mut expected = Vec::new();
        for i in 0..10_000 {
            let line = format!("line {i} of the log\n");
            sink.clone().write_all(line.as_bytes()).unwrap();
            expected.extend_from_slice(line.as_bytes());
        }
        drop(guard);
        let got = lock(&rec.0);
        assert_eq!(got.0, expected);
        // Batched: far fewer writes than lines.
        assert!(got.1 < 1_000, "{} writes for 10,000 lines", got.1);
    }

    #[test]
    fn lines_from_many_threads_stay_whole() {
        let rec = Recorder::default();
        let (sink, guard) = LogSink::new(Box::new(rec.clone())).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        sink.clone().write_all(format!("t{t} n{i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let got = lock(&rec.0);
        let text = String::from_utf8(got.0.clone()).unwrap();
        let mut next = [0usize; 4];
        for line in text.lines() {
            let (t, n) = line.split_once(' ').unwrap();
            let t: usize = t[1..].parse().unwrap();
            assert_eq!(n, format!("n{}", next[t]), "thread {t}'s lines out of order");
            next[t] += 1;
        }
        assert_eq!(next, [5_000; 4]);
    }
}
