//! `/metrics` as go-livepeer serves it: Prometheus text format 0.0.4, go-livepeer's series
//! names, and its `node_id`/`node_type` labels on every series.
//!
//! Why a rewrite of prometheus-client's output rather than its output as it is: that crate
//! writes OpenMetrics only, where every counter's samples must end in `_total`. go-livepeer's
//! exporter (OpenCensus' Prometheus exporter behind `promhttp`, which never answers in
//! OpenMetrics) names a counter after its view, so `livepeer_tickets_sent`,
//! `livepeer_ai_request_errors` and four more have no `_total`, and dashboards built on them
//! found nothing under ours. Text 0.0.4 lets a counter have any name; the rewrite drops the
//! suffix for those families, and the `# EOF` and `# UNIT` lines that 0.0.4 does not have.

use std::fmt::Write as _;

/// go-livepeer's counters whose names do not end in `_total` (census.go's views), without the
/// `livepeer_` prefix. Every other counter keeps the `_total` its samples have.
const BARE_COUNTERS: [&str; 6] = [
    "tickets_sent",
    "ticket_value_sent",
    "ai_models_requested",
    "ai_request_errors",
    "orchestrator_swaps",
    "transcode_retried",
];

/// The family that carries no `node_id`, as go-livepeer's `versions` view has none.
const VERSIONS: &str = "livepeer_versions";

/// The labels go-livepeer adds to every series: `node_id` (`<eth address>-<hostname>`, or the
/// hostname alone without an account) and `node_type` (`bctr` for a gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NodeLabels {
    /// `,node_id="…",node_type="bctr"`, escaped, ready to close a label set.
    all: String,
    /// `,node_type="bctr"`, for [`VERSIONS`].
    node_type: String,
}

impl NodeLabels {
    /// go-livepeer's `node_id` for `account` (the gateway's Ethereum address, if any) on
    /// `host`.
    pub(super) fn new(account: Option<&str>, host: &str) -> Self {
        let id = match account {
            Some(a) if !a.is_empty() => format!("{a}-{host}"),
            _ => host.to_owned(),
        };
        let node_type = ",node_type=\"bctr\"".to_owned();
        let mut all = String::from(",node_id=\"");
        escape_into(&mut all, &id);
        all.push('"');
        all.push_str(&node_type);
        Self { all, node_type }
    }

    /// `,node_id="…",node_type="bctr"`.
    #[cfg(test)]
    pub(super) fn all(&self) -> &str {
        &self.all
    }
}

/// A label value as text formats escape it: backslash, double quote and newline.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Rewrites `open` (prometheus-client's OpenMetrics text, families prefixed `livepeer_`) as
/// Prometheus text 0.0.4 with go-livepeer's names, adding `node` to every sample.
pub(super) fn prometheus_text(open: &str, node: &NodeLabels) -> String {
    let mut out = String::with_capacity(open.len() + open.len() / 2);
    // HELP comes before TYPE, and the name it is written under depends on the type.
    let mut help: Option<&str> = None;
    // The current family: its name, and the name its samples are written under when that
    // differs (a bare counter: `name_total` becomes `name`).
    let mut family = "";
    let mut rename: Option<String> = None;
    for line in open.lines() {
        if let Some(text) = line.strip_prefix("# HELP ") {
            help = Some(text);
        } else if let Some(text) = line.strip_prefix("# TYPE ") {
            let (name, kind) = text.split_once(' ').unwrap_or((text, ""));
            family = name;
            let bare = kind == "counter"
                && name.strip_prefix("livepeer_").is_some_and(|n| BARE_COUNTERS.contains(&n));
            let shown = match (kind, bare) {
                ("counter", false) => format!("{name}_total"),
                _ => name.to_owned(),
            };
            rename = bare.then(|| name.to_owned());
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map_or("", |(_, t)| t);
                let _ = writeln!(out, "# HELP {shown} {text}");
            }
            let _ = writeln!(out, "# TYPE {shown} {kind}");
        } else if line.starts_with('#') {
            // `# UNIT` and `# EOF`: OpenMetrics only.
        } else if !line.is_empty() {
            sample(&mut out, line, family, rename.as_deref(), node);
        }
    }
    out
}

/// One sample line, renamed if its family is a bare counter, with the node's labels last.
fn sample(out: &mut String, line: &str, family: &str, rename: Option<&str>, node: &NodeLabels) {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let (name, rest) = line.split_at(name_end);
    let name = match rename {
        // A counter's `_created` sample is OpenMetrics only; 0.0.4 has none.
        Some(_) if name.ends_with("_created") => return,
        Some(bare) if name == format!("{bare}_total") => bare,
        _ => name,
    };
    let labels = if family == VERSIONS { &node.node_type } else { &node.all };
    out.push_str(name);
    match rest.strip_prefix('{') {
        Some(inner) => {
            let close = label_set_end(inner);
            let (set, after) = inner.split_at(close);
            out.push('{');
            out.push_str(set);
            // The set's own labels, if any, are followed by ours; ours lead an empty one.
            out.push_str(if set.is_empty() { &labels[1..] } else { labels });
            out.push_str(after);
        }
        None => {
            out.push('{');
            out.push_str(&labels[1..]);
            out.push('}');
            out.push_str(rest);
        }
    }
    out.push('\n');
}

/// Where the label set that `inner` starts (just after its `{`) closes: the first `}` outside
/// a quoted value. A value may hold `}`, spaces and escaped quotes.
fn label_set_end(inner: &str) -> usize {
    let (mut quoted, mut escaped) = (false, false);
    for (i, b) in inner.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'}' if !quoted => return i,
            _ => {}
        }
    }
    inner.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeLabels {
        NodeLabels::new(Some("0xAbC"), "host-1")
    }

    #[test]
    fn bare_counters_lose_their_suffix_and_others_keep_it() {
        let open = "# HELP livepeer_tickets_sent Tickets sent.\n\
            # TYPE livepeer_tickets_sent counter\n\
            livepeer_tickets_sent_total{orchestrator_uri=\"https://o:1\"} 3\n\
            livepeer_tickets_sent_created{orchestrator_uri=\"https://o:1\"} 1.5\n\
            # HELP livepeer_stream_created Streams created.\n\
            # TYPE livepeer_stream_created counter\n\
            livepeer_stream_created_total 2\n\
            # EOF\n";
        let text = prometheus_text(open, &node());
        let want = "# HELP livepeer_tickets_sent Tickets sent.\n\
            # TYPE livepeer_tickets_sent counter\n\
            livepeer_tickets_sent{orchestrator_uri=\"https://o:1\",node_id=\"0xAbC-host-1\",node_type=\"bctr\"} 3\n\
            # HELP livepeer_stream_created_total Streams created.\n\
            # TYPE livepeer_stream_created_total counter\n\
            livepeer_stream_created_total{node_id=\"0xAbC-host-1\",node_type=\"bctr\"} 2\n";
        assert_eq!(text, want);
    }

    #[test]
    fn histograms_gauges_and_awkward_values_keep_their_shape() {
        let open = "# HELP livepeer_x_seconds Time.\n\
            # TYPE livepeer_x_seconds histogram\n\
            # UNIT livepeer_x_seconds seconds\n\
            livepeer_x_seconds_bucket{model_name=\"a} b\\\"c\",le=\"+Inf\"} 1\n\
            livepeer_x_seconds_sum{model_name=\"a} b\\\"c\"} 0.5\n\
            # HELP livepeer_versions Versions.\n\
            # TYPE livepeer_versions gauge\n\
            livepeer_versions{livepeerversion=\"0.1.0\"} 1\n\
            livepeer_versions{} 1\n";
        let text = prometheus_text(open, &node());
        assert!(text.contains(
            "livepeer_x_seconds_bucket{model_name=\"a} b\\\"c\",le=\"+Inf\",node_id=\"0xAbC-host-1\",node_type=\"bctr\"} 1\n"
        ), "{text}");
        assert!(text.contains("# TYPE livepeer_x_seconds histogram\n"), "{text}");
        assert!(!text.contains("UNIT") && !text.contains("EOF"), "{text}");
        assert!(
            text.contains("livepeer_versions{livepeerversion=\"0.1.0\",node_type=\"bctr\"} 1\n")
        );
        assert!(text.contains("livepeer_versions{node_type=\"bctr\"} 1\n"), "{text}");
    }

    #[test]
    fn the_node_id_is_go_livepeer_s_and_escaped() {
        assert_eq!(NodeLabels::new(None, "h").all, ",node_id=\"h\",node_type=\"bctr\"");
        assert_eq!(NodeLabels::new(Some(""), "h").all, ",node_id=\"h\",node_type=\"bctr\"");
        let odd = NodeLabels::new(Some("0x1"), "a\"b\\c\nd");
        assert_eq!(odd.all, ",node_id=\"0x1-a\\\"b\\\\c\\nd\",node_type=\"bctr\"");
    }
}
