//! The proxies `bench` measures as their own processes, as operators run them: this binary
//! as a gateway child process, and nginx.
//!
//! A throwaway nginx `proxy_pass` in front of a simulated orchestrator is the plain-proxy
//! baseline of `livepeer-gateway bench`. The gateway does more than nginx does (validation,
//! selection, payment, result storage), but nginx is what an operator would otherwise put in
//! front of an orchestrator, so it is the bar for what a proxy in the path may cost.
//!
//! nginx runs as a child process with its own prefix directory (config, pid, logs, temp
//! files), `worker_processes auto` and keep-alive connections to the upstream, and is killed
//! when the handle drops. If the `nginx` binary is missing it is installed from Debian's
//! `nginx-light` package with apt-get, as the README's test command installs what tests need.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use tokio::time::Instant;

/// A running nginx, stopped on drop.
pub(crate) struct Nginx {
    child: Child,
    dir: PathBuf,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
}

impl Nginx {
    /// Starts nginx proxying every path to `upstream` and waits until it accepts connections.
    pub(crate) async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let binary = find_or_install()?;
        let dir = std::env::temp_dir().join(format!(
            "livepeer-bench-nginx-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(dir.join("logs"))?;
        // Take a free port by binding and releasing it: nginx cannot report the port it chose.
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        std::fs::write(dir.join("nginx.conf"), config(&dir, addr, upstream))?;
        let child = Command::new(&binary)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("logs/error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut nginx = Self { child, dir, addr };
        nginx.wait_ready().await?;
        Ok(nginx)
    }

    /// The master's and the workers' process ids (for their CPU time).
    pub(crate) fn pids(&self) -> Vec<u32> {
        let master = self.child.id();
        let mut pids = vec![master];
        let Ok(dir) = std::fs::read_dir("/proc") else { return pids };
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // The parent id is the second field after the parenthesised command name.
            let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1));
            if ppid.and_then(|p| p.parse::<u32>().ok()) == Some(master) {
                pids.push(pid);
            }
        }
        pids
    }

    /// The base URL clients use.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log =
                    std::fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default();
                anyhow::bail!("nginx exited with {status}: {log}");
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "nginx did not listen on {}", self.addr);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // `daemon off` keeps the master as our child. Killed outright, it left its workers
        // running (and listening) after every bench; SIGTERM is nginx's fast shutdown, which
        // stops the workers before the master exits. The master is killed if it is not gone
        // within 5 s. (`kill(1)`: sending a signal from Rust needs `unsafe` or a new crate.)
        let pid = self.child.id().to_string();
        let termed = Command::new("kill").args(["-TERM", &pid]).status();
        if termed.is_ok_and(|s| s.success()) {
            for _ in 0..250 {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// nginx's configuration: what an operator would write for a keep-alive reverse proxy, with
/// logging off (the gateway's bench logs at `warn`, so neither pays for access logs).
fn config(dir: &Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "daemon off;
worker_processes auto;
worker_rlimit_nofile 65536;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 64m;
    upstream orchestrator {{
        server {upstream};
        keepalive 256;
    }}
    server {{
        listen {listen} reuseport backlog=4096;
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://orchestrator;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}
}}
"
    )
}

/// The nginx binary: on the PATH or in /usr/sbin, else installed with apt-get.
fn find_or_install() -> anyhow::Result<PathBuf> {
    if let Some(found) = find() {
        return Ok(found);
    }
    eprintln!("nginx not found; installing nginx-light with apt-get");
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0"))?;
    let apt = |args: &[&str]| -> anyhow::Result<()> {
        let mut cmd = if root { Command::new("apt-get") } else { Command::new("sudo") };
        if !root {
            cmd.arg("apt-get");
        }
        let status = cmd
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .context("running apt-get")?;
        anyhow::ensure!(status.success(), "apt-get {} failed: {status}", args.join(" "));
        Ok(())
    };
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "--no-install-recommends", "nginx-light"])?;
    find().context("nginx-light installed but no nginx binary found")
}

fn find() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")]);
    on_path.map(|d| d.join("nginx")).find(|p| p.is_file())
}

/// This binary running as a gateway in front of `orchestrator`, killed on drop.
pub(crate) struct GatewayChild {
    child: Child,
    /// Its public API.
    pub(crate) addr: SocketAddr,
}

impl GatewayChild {
    /// Starts `bin` (this binary when `None`) with default settings (its stderr, the `info`
    /// log, goes to ours) and waits until `ready_path` answers 200 to `ready_body`, i.e. the
    /// orchestrator is in its pool.
    pub(crate) async fn start(
        bin: Option<&Path>,
        orchestrator: &str,
        h2c: bool,
        ready_path: &str,
        ready_body: &serde_json::Value,
    ) -> anyhow::Result<Self> {
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let admin = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let bin = match bin {
            Some(bin) => bin.to_owned(),
            None => std::env::current_exe()?,
        };
        let child = Command::new(&bin)
            .args(["--http-addr", &addr.to_string(), "--cli-addr", &admin.to_string()])
            .args(["--rtmp-addr", "off"])
            .args(["--orch-addr", orchestrator, "--orch-h2c", if h2c { "true" } else { "false" }])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting the gateway {}", bin.display()))?;
        let mut gw = Self { child, addr };
        let http = reqwest::Client::new();
        let url = format!("http://{addr}/{ready_path}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = gw.child.try_wait()? {
                anyhow::bail!("the gateway exited with {status}");
            }
            let resp = http.post(&url).json(ready_body).send().await;
            if resp.is_ok_and(|r| r.status().is_success()) {
                return Ok(gw);
            }
            anyhow::ensure!(Instant::now() < deadline, "the gateway at {addr} never served");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its process id (for its CPU time).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for GatewayChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
