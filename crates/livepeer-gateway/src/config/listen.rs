//! The gateway's own edges: its two listeners and its log output.

use std::net::SocketAddr;
use std::time::Duration;

use super::section::section;
use super::values::{listen_addr, positive_duration};
use super::{ConfigError, LogFormat, bad};

section! {
    /// Listener settings.
    pub struct Listen {
        /// Public API listen address [default: 127.0.0.1:9935].
        #[arg(long, env = "LP_HTTPADDR")]
        pub http_addr: Option<String>,
        /// Admin API and metrics listen address [default: 127.0.0.1:5935].
        #[arg(long, env = "LP_CLIADDR")]
        pub cli_addr: Option<String>,
        /// Deadline for a client to send a request's headers on the public and admin ports,
        /// counted from the connection's opening (a connection that sends nothing is closed
        /// after it) and, on a kept-alive HTTP/1.1 connection, from the previous response
        /// [default: 30s].
        #[arg(long, env = "LP_HTTPHEADERTIMEOUT")]
        pub http_header_timeout: Option<String>,
        /// A connection with no request in flight (HTTP/1.1 keep-alive, HTTP/2 with no open
        /// stream) is closed after this, or on HTTP/1.1 after `--http-header-timeout` if shorter;
        /// HTTP/2 connections are pinged this often and closed when a ping goes unanswered as
        /// long [default: 60s].
        #[arg(long, env = "LP_HTTPIDLETIMEOUT")]
        pub http_idle_timeout: Option<String>,
        /// Connections open at once on each of the two listeners; at the cap, new connections
        /// wait in the kernel's accept queue until one closes. Each connection holds two
        /// descriptors, so both listeners full use 1,536: at start the soft descriptor limit
        /// is raised to the hard one, as Go programs raise theirs [default: 384].
        #[arg(long, env = "LP_MAXCONNECTIONS")]
        pub max_connections: Option<usize>,
        /// Connections one client IP address may hold open at once on each of the two
        /// listeners; a connection beyond it is closed as soon as it is accepted, without
        /// taking one of the `--max-connections` places. An IPv4 address mapped into IPv6
        /// counts as the IPv4 address; an IPv6 client counts by its /64 prefix, since it may
        /// pick any address in it. At most `--max-connections`. Off (`0`) by default: a
        /// gateway behind a load balancer or reverse proxy, or serving one application
        /// backend, sees every connection come from one address, and any cap there would
        /// refuse its real clients [default: 0].
        #[arg(long, env = "LP_MAXCONNECTIONSPERADDRESS")]
        pub max_connections_per_address: Option<usize>,
        /// A connection whose client takes no bytes of a response for this long while some are
        /// waiting to be sent (a client that stopped reading) is closed [default: 30s].
        #[arg(long, env = "LP_HTTPWRITETIMEOUT")]
        pub http_write_timeout: Option<String>,
        /// Threads serving the public port, each with a single-threaded runtime, a listener of
        /// its own on the port (`SO_REUSEPORT`, so the kernel spreads connections) and its own
        /// connections to orchestrators, so a request never changes threads (as nginx's
        /// workers). `0` serves it on the runtime shared with the admin port and background
        /// work. By default one per core this process may use (at most 1024).
        #[arg(long, env = "LP_HTTPTHREADS")]
        pub http_threads: Option<usize>,
        /// Bytes of request bodies the process may hold in memory at once, across every
        /// request of both ports; a body that would pass it fails its request with 503
        /// `gateway_overloaded` [default: 1073741824].
        #[arg(long, env = "LP_MAXBODYMEMORY")]
        pub max_body_memory: Option<usize>,
    }
}

/// The validated listener settings.
pub(super) struct Listeners {
    pub(super) http_addr: SocketAddr,
    pub(super) cli_addr: SocketAddr,
    pub(super) header_timeout: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) max_connections: usize,
    pub(super) max_per_address: usize,
    pub(super) write_timeout: Duration,
    pub(super) max_body_memory: usize,
    pub(super) http_threads: usize,
}

impl Listen {
    pub(super) fn validate(self) -> Result<Listeners, ConfigError> {
        let max_connections = match self.max_connections.unwrap_or(384) {
            0 => return Err(bad("--max-connections", "must be at least 1")),
            // Each takes two descriptors; a semaphore of more permits than it counts panics.
            n if n > 1_000_000 => return Err(bad("--max-connections", "must be at most 1000000")),
            n => n,
        };
        let max_per_address = match self.max_connections_per_address.unwrap_or(0) {
            n if n > max_connections => {
                return Err(bad(
                    "--max-connections-per-address",
                    format!("{n} is more than --max-connections ({max_connections})"),
                ));
            }
            n => n,
        };
        Ok(Listeners {
            http_addr: listen_addr("--http-addr", self.http_addr, 9935)?,
            cli_addr: listen_addr("--cli-addr", self.cli_addr, 5935)?,
            header_timeout: positive_duration(
                "--http-header-timeout",
                self.http_header_timeout,
                Duration::from_secs(30),
            )?,
            idle_timeout: positive_duration(
                "--http-idle-timeout",
                self.http_idle_timeout,
                Duration::from_secs(60),
            )?,
            max_connections,
            max_per_address,
            write_timeout: positive_duration(
                "--http-write-timeout",
                self.http_write_timeout,
                Duration::from_secs(30),
            )?,
            max_body_memory: match self.max_body_memory.unwrap_or(1 << 30) {
                0 => return Err(bad("--max-body-memory", "must be at least 1")),
                n => n,
            },
            http_threads: match self.http_threads {
                Some(n) if n > MAX_HTTP_THREADS => {
                    return Err(bad("--http-threads", format!("at most {MAX_HTTP_THREADS}")));
                }
                Some(n) => n,
                None => std::thread::available_parallelism().map_or(1, usize::from),
            },
        })
    }
}

/// More serving threads than this is a mistake (each has a runtime and connection pools).
const MAX_HTTP_THREADS: usize = 1024;

section! {
    /// Log settings.
    pub struct Logging {
        /// Log format: `text` or `json` [default: text].
        #[arg(long, env = "LP_LOGFORMAT")]
        pub log_format: Option<String>,
        /// Log filter, e.g. `info` or `livepeer_gateway=debug` [default: info].
        #[arg(long, env = "LP_LOGLEVEL")]
        pub log_level: Option<String>,
    }
}

impl Logging {
    pub(super) fn validate(self) -> Result<(LogFormat, String), ConfigError> {
        let format = match self.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(bad("--log-format", format!("{other:?}: expected text or json")));
            }
        };
        let level = self.log_level.unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            return Err(bad("--log-level", format!("{level:?} is not a log filter")));
        }
        Ok((format, level))
    }
}
