//! `livepeer-gateway keys …`: customer keys (and their usage) managed from a terminal, through a running
//! gateway's admin API (`/keys`). Prints the API's JSON answer (`export`: its CSV); `create`'s
//! is the only one that carries the key's secret.

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use url::Url;

/// Where the admin API is and how to call it.
#[derive(Debug, clap::Args)]
pub(crate) struct KeysArgs {
    /// The gateway's admin API (its `--cli-addr`).
    #[arg(long, env = "LP_ADMINURL", default_value = "http://127.0.0.1:5935")]
    admin_url: Url,
    /// The gateway's `--admin-token`, when it has one.
    #[arg(long, env = "LP_ADMINTOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Create a key and print it with its secret (shown this once only).
    Create(CreateArgs),
    /// List every key.
    List,
    /// Show one key.
    Show {
        /// The key's id (`key_…`).
        id: String,
    },
    /// Disable a key: its calls get 401 until it is enabled again (`PATCH /keys/{id}`).
    Disable {
        /// The key's id.
        id: String,
    },
    /// Delete a key.
    Delete {
        /// The key's id.
        id: String,
    },
    /// A key's usage by pipeline and model (the last 30 days unless `--from`/`--to`).
    Usage {
        /// The key's id.
        id: String,
        /// From this unix second.
        #[arg(long)]
        from: Option<i64>,
        /// Up to this unix second (excluded).
        #[arg(long)]
        to: Option<i64>,
    },
    /// The usage ledger as CSV, one row per request (a key's, or every key's without an
    /// id): time, key, request id, pipeline, model, status, outcome, latency, units,
    /// orchestrator, tickets, EV and fee paid (wei), the customer's charge (USD).
    Export {
        /// The key's id; every key's rows without it.
        id: Option<String>,
        /// From this unix second.
        #[arg(long)]
        from: Option<i64>,
        /// Up to this unix second (excluded).
        #[arg(long)]
        to: Option<i64>,
        /// Rows at most (up to 100000).
        #[arg(long)]
        limit: Option<u32>,
    },
}

#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// A name for the key (e.g. the customer's).
    #[arg(long)]
    name: String,
    /// A pipeline (`text-to-image`) or model (`llm/meta-llama/Llama-3.1-8B-Instruct`) the key
    /// may use; repeat for more. Without any: all.
    #[arg(long = "allow")]
    allowed: Vec<String>,
    /// Requests per minute (per gateway instance).
    #[arg(long)]
    requests_per_minute: Option<u32>,
    /// Streams at once.
    #[arg(long)]
    max_streams: Option<u32>,
    /// Budget in micro-USD (50000000 is 50 USD).
    #[arg(long)]
    budget_micro_usd: Option<u64>,
    /// The budget's period: `30d`, `12h`, `90m`, `45s`.
    #[arg(long, value_parser = seconds)]
    budget_period: Option<u64>,
    /// The key expires after this long: `30d`, `12h`, `90m`, `45s`.
    #[arg(long, value_parser = seconds)]
    expires_in: Option<u64>,
    /// Metadata, a JSON object (e.g. `{"account":"42"}`).
    #[arg(long, value_parser = object)]
    metadata: Option<Value>,
}

/// Seconds of `30d`, `12h`, `90m` or `45s`.
fn seconds(text: &str) -> Result<u64, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{text:?}: expected a number and d, h, m or s"))?;
    let unit = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" | "" => 1,
        other => return Err(format!("unknown unit {other:?}: use d, h, m or s")),
    };
    n.checked_mul(unit).ok_or_else(|| format!("{text:?} is too long"))
}

fn object(text: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err("expected a JSON object".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// Runs the action against the admin API; the report is its JSON answer, pretty-printed.
pub(crate) async fn run(args: KeysArgs) -> anyhow::Result<String> {
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
    let (method, path, body) = match args.action {
        Action::Create(c) => (reqwest::Method::POST, "keys".to_owned(), Some(create_body(c)?)),
        Action::List => (reqwest::Method::GET, "keys".to_owned(), None),
        Action::Show { id } => (reqwest::Method::GET, format!("keys/{id}"), None),
        Action::Disable { id } => (reqwest::Method::POST, format!("keys/{id}/disable"), None),
        Action::Delete { id } => (reqwest::Method::DELETE, format!("keys/{id}"), None),
        Action::Usage { id, from, to } => {
            let mut query: Vec<String> = Vec::new();
            query.extend(from.map(|f| format!("from={f}")));
            query.extend(to.map(|t| format!("to={t}")));
            (reqwest::Method::GET, format!("keys/{id}/usage?{}", query.join("&")), None)
        }
        Action::Export { id, from, to, limit } => {
            let mut query: Vec<String> = Vec::new();
            query.extend(from.map(|f| format!("from={f}")));
            query.extend(to.map(|t| format!("to={t}")));
            query.extend(limit.map(|l| format!("limit={l}")));
            let path = match id {
                Some(id) => format!("keys/{id}/usage.csv"),
                None => "usage.csv".to_owned(),
            };
            (reqwest::Method::GET, format!("{path}?{}", query.join("&")), None)
        }
    };
    let csv = path.contains("usage.csv");
    let url = args.admin_url.join(&path).context("--admin-url")?;
    let mut req = client.request(method, url.clone());
    if let Some(token) = &args.admin_token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(text);
        bail!("{url}: {status}: {message}");
    }
    if csv {
        return Ok(text);
    }
    let value: Value = serde_json::from_str(&text).context("the admin API's answer")?;
    Ok(format!("{}\n", serde_json::to_string_pretty(&value)?))
}

fn create_body(c: CreateArgs) -> anyhow::Result<Value> {
    let expires_at = match c.expires_in {
        Some(secs) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            Some(now.as_secs().saturating_add(secs))
        }
        None => None,
    };
    Ok(json!({
        "name": c.name,
        "allowed": c.allowed,
        "requests_per_minute": c.requests_per_minute,
        "max_streams": c.max_streams,
        "budget_micro_usd": c.budget_micro_usd,
        "budget_period_seconds": c.budget_period,
        "expires_at": expires_at,
        "metadata": c.metadata,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_whole_seconds() {
        assert_eq!(seconds("30d"), Ok(2_592_000));
        assert_eq!(seconds("90m"), Ok(5_400));
        assert_eq!(seconds("45"), Ok(45));
        assert!(seconds("1w").is_err());
        assert!(seconds("d").is_err());
    }
}
