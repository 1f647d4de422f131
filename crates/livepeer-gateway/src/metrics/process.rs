//! The process series that go-livepeer's `/metrics` carries from Prometheus' Go client
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, …),
//! read from `/proc/self` when scraped. Written here because prometheus-client has no
//! process collector; names, types, units and labels (none: the Go client's collector is not
//! one of go-livepeer's OpenCensus views, which carry `node_id`) are the Go client's, so the
//! usual memory, CPU and descriptor panels and alerts work unchanged.

use std::fmt::Write as _;

/// What one scrape read about the process.
#[derive(Debug, Default, Clone, PartialEq)]
struct Reading {
    cpu_seconds: f64,
    virtual_bytes: u64,
    resident_bytes: u64,
    start_time_seconds: f64,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

/// Appends the process series to `out`. Nothing is written where `/proc` cannot be read (not
/// Linux).
pub(super) fn append(out: &mut String) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| boot_time(&s));
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as u64;
    let Some(mut r) = parse_stat(&stat, ticks, page, boot) else { return };
    r.open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
    r.max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    write(out, &r);
}

/// The fields of `/proc/self/stat` (proc(5)) the series need. The command name, field 2, is
/// in parentheses and may hold spaces or parentheses, so fields are counted after its last `)`.
fn parse_stat(stat: &str, ticks: f64, page: u64, boot: Option<u64>) -> Option<Reading> {
    let after = &stat[stat.rfind(')')? + 1..];
    // `after` starts at field 3 (state): field n is at index n - 3.
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let (utime, stime) = (field(14)?, field(15)?);
    let start_ticks = field(22)?;
    Some(Reading {
        cpu_seconds: (utime + stime) as f64 / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)?.saturating_mul(page),
        start_time_seconds: boot.map_or(0.0, |b| b as f64 + start_ticks as f64 / ticks),
        open_fds: None,
        max_fds: None,
    })
}

/// The boot time, seconds since the epoch (`btime` of `/proc/stat`).
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// The series, each as the Go client writes it: name, type, help and value (none: not read).
fn write(out: &mut String, r: &Reading) {
    let series = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            Some(r.cpu_seconds.to_string()),
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            Some(r.resident_bytes.to_string()),
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            Some(r.virtual_bytes.to_string()),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            Some(r.start_time_seconds.to_string()),
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            r.open_fds.map(|n| n.to_string()),
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            r.max_fds.map(|n| n.to_string()),
        ),
    ];
    for (name, kind, help, value) in series {
        if let Some(value) = value {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with spaces and parentheses; utime 250, stime 150, starttime 1000,
        // vsize 4096000, rss 300 pages.
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 8 0 1000 \
            4096000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let r = parse_stat(stat, 100.0, 4096, Some(1_700_000_000)).unwrap();
        assert_eq!(r.cpu_seconds, 4.0);
        assert_eq!(r.virtual_bytes, 4_096_000);
        assert_eq!(r.resident_bytes, 300 * 4096);
        assert_eq!(r.start_time_seconds, 1_700_000_010.0);
        assert_eq!(parse_stat("42 (cut short) S 1", 100.0, 4096, None), None);
        assert_eq!(boot_time("cpu 1 2\nbtime 1700000000\nprocesses 5\n"), Some(1_700_000_000));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_read_from_proc() {
        let mut out = String::new();
        append(&mut out);
        let value = |name: &str| {
            let prefix = format!("{name} ");
            let line = out.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| {
                panic!("no {name} in {out}");
            });
            line[prefix.len()..].parse::<f64>().unwrap()
        };
        // Resident memory: more than the binary's first page, less than a terabyte.
        let rss = value("process_resident_memory_bytes");
        assert!(rss > 4096.0 && rss < 1e12, "{rss}");
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_start_time_seconds") > 1.5e9);
        assert!(out.contains("# TYPE process_cpu_seconds_total counter\n"), "{out}");
    }
}
