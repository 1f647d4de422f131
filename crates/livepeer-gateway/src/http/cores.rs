//! The public port served as nginx serves it: one thread per core, each running a
//! single-threaded runtime with a listener of its own on the port (`SO_REUSEPORT`: the kernel
//! spreads incoming connections over them) and its own connections to orchestrators
//! ([`crate::lane`]).
//!
//! Why not the one work-stealing runtime the rest of the gateway runs on: a request there is
//! read on one worker, its orchestrator call may go out over a connection whose task lives on
//! another, and its answer may be written from a third; every hand-over is a cross-thread wake-up
//! (a futex or eventfd write), and with two cores shared with the client and the orchestrator,
//! the workers spent much of their time waking each other. One worker (`TOKIO_WORKER_THREADS=1`)
//! already saved 8 µs of CPU per LLM request. Here a connection, its requests and their
//! orchestrator calls stay on one thread from accept to answer.
//!
//! The admin port and background work (discovery, payments, the ledger, metrics) stay on the
//! shared runtime. Work a request starts and leaves running (a live stream's tasks) runs on its
//! serving thread, which therefore lives until the gateway has shut down, not just until its
//! listener has drained.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::server::{self, ConnLimits, Port};
use crate::task::Tasks;

/// The public port, bound: one listener on the shared runtime, or one per serving thread.
#[derive(Debug)]
pub(crate) enum PublicListener {
    /// `--http-threads 0`: served by the shared runtime.
    Shared(TcpListener),
    /// One listener per serving thread, all on the same address.
    Cores(Vec<std::net::TcpListener>),
}

/// The serving threads, which end when this is dropped: after the gateway's shutdown (or when
/// a gateway is dropped without one).
#[derive(Debug)]
pub(crate) struct Cores {
    _stop: Option<DropGuard>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Cores {
    /// Ends the serving threads and waits, at most `within`, for them to be gone: with them
    /// every request still on them is dropped, and what a dropped request leaves (a customer's
    /// usage row) is handed on before this returns.
    pub(crate) async fn stop(mut self, within: Duration) {
        drop(self._stop.take());
        let threads = std::mem::take(&mut self.threads);
        // Joined on a thread of its own, not the runtime's blocking pool: a join that outlasts
        // `within` must not hold the process's exit, which waits for that pool.
        let (joined, done) = tokio::sync::oneshot::channel::<()>();
        let joiner = std::thread::Builder::new().name("serving-join".into()).spawn(move || {
            for thread in threads {
                let _ = thread.join();
            }
            let _ = joined.send(());
        });
        if joiner.is_ok() && tokio::time::timeout(within, done).await.is_err() {
            tracing::warn!(?within, "serving threads still running at shutdown");
        }
    }
}

impl PublicListener {
    /// Binds `addr` for `threads` serving threads (`0`: one listener for the shared runtime).
    ///
    /// A port that another socket holds is refused, as without `SO_REUSEPORT`: the first
    /// socket is bound without that option, which only then is set on it, before it listens
    /// and the others join its group. Otherwise a second gateway of the same user started on
    /// the same port would silently take half of its connections. The first socket is kept
    /// (not bound and let go): an ephemeral port (`:0`) let go could be taken by another
    /// program before the group binds it.
    pub(crate) async fn bind(addr: SocketAddr, threads: usize) -> std::io::Result<Self> {
        if threads == 0 || !cfg!(unix) {
            // The shared runtime's listener is what `TcpListener::bind` makes (`SO_REUSEADDR`).
            return Ok(Self::Shared(TcpListener::bind(addr).await?));
        }
        let first = first_listener(addr)?;
        // An ephemeral port becomes the one the kernel picked, for every listener.
        let addr = first.local_addr()?;
        let mut listeners = Vec::with_capacity(threads);
        listeners.push(first);
        for _ in 1..threads {
            listeners.push(reuseport_listener(addr)?);
        }
        Ok(Self::Cores(listeners))
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Self::Shared(listener) => listener.local_addr(),
            Self::Cores(listeners) => match listeners.first() {
                Some(listener) => listener.local_addr(),
                None => Err(std::io::Error::other("no listener")),
            },
        }
    }

    /// Serves `router` on the listener(s) until `tasks` is shut down, all of them within
    /// `port`'s bounds; each serving thread's drain is one of `tasks`' tasks, so shutdown
    /// waits for them as for the shared one's.
    pub(crate) fn serve(
        self,
        name: &'static str,
        router: Router,
        limits: ConnLimits,
        port: Port,
        tasks: &Tasks,
    ) -> std::io::Result<Cores> {
        let listeners = match self {
            Self::Shared(listener) => {
                tasks.spawn(name, move |cancel| {
                    server::serve_with(name, listener, router, limits, port, cancel)
                });
                return Ok(Cores { _stop: None, threads: Vec::new() });
            }
            Self::Cores(listeners) => listeners,
        };
        let stop = CancellationToken::new();
        // Made first: threads already started end if a later one cannot start.
        let guard = stop.clone().drop_guard();
        let mut threads = Vec::with_capacity(listeners.len());
        for (i, listener) in listeners.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (drained, done) = tokio::sync::oneshot::channel::<()>();
            let (router, port, cancel, stop) =
                (router.clone(), port.clone(), tasks.token(), stop.clone());
            let thread = std::thread::Builder::new().name(format!("{name}-{i}"));
            let handle = thread.spawn(move || {
                // Lane 0 is every thread that is not a serving one.
                crate::lane::enter(i + 1);
                runtime.block_on(async move {
                    let serving = async {
                        let listener = TcpListener::from_std(listener)?;
                        server::serve_with(name, listener, router, limits, port, cancel).await;
                        Ok::<_, std::io::Error>(())
                    };
                    tokio::spawn(keep_a_timer_near());
                    tokio::select! {
                        served = serving => if let Err(e) = served {
                            tracing::error!(listener = name, error = %e, "cannot serve");
                        },
                        _ = stop.cancelled() => return,
                    }
                    let _ = drained.send(());
                    // Tasks requests started may still be running: they run until the end.
                    stop.cancelled().await;
                });
                // Bounded: blocking work a request left (a name lookup, an audio probe) is
                // not waited for past this, as an implicit drop would wait.
                runtime.shutdown_timeout(Duration::from_millis(500));
            })?;
            threads.push(handle);
            tasks.spawn(name, move |_| async move {
                let _ = done.await;
            });
        }
        Ok(Cores { _stop: Some(guard), threads })
    }
}

/// How far ahead a serving thread's earliest timer stays at most.
const NEAR: Duration = Duration::from_millis(250);

/// Keeps a timer at most [`NEAR`] ahead on the serving thread, for ever. Why: tokio's timer
/// wakes its own thread's driver (an eventfd `write(2)`, then one more `epoll_wait` event)
/// whenever a timer is set to fire earlier than the earliest one the driver parked with.
/// With only far timers registered (idle connections), every request's own deadlines, seconds
/// away, were such timers: a self-wake per request, which syscall counts showed. Timers set
/// later than this one wake nobody.
async fn keep_a_timer_near() {
    let mut tick = tokio::time::interval(NEAR);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// A listener on `addr` in a `SO_REUSEPORT` group.
#[cfg(unix)]
fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    // The backlog `TcpListener::bind` uses.
    socket.listen(1024)?.into_std()
}

/// The group's first listener on `addr`: bound as a plain socket (refused when another
/// socket holds the port, or picking a port nobody holds), then opened to the group.
#[cfg(unix)]
fn first_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // Linux checks the option of the sockets already bound when a later one binds, and
    // makes the group when this one listens: set now, it lets the others in.
    socket.set_reuseport(true)?;
    socket.listen(1024)?.into_std()
}

#[cfg(not(unix))]
fn first_listener(_: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    Err(std::io::Error::other("SO_REUSEPORT needs a Unix"))
}

#[cfg(not(unix))]
fn reuseport_listener(_: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    Err(std::io::Error::other("SO_REUSEPORT needs a Unix"))
}
