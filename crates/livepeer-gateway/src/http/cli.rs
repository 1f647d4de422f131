//! go-livepeer's CLI routes (`-cliAddr`, `server/webserver.go`) on our admin port, with their
//! shapes, for `livepeer_cli` and the dashboards and scripts written against go-livepeer's
//! gateway: `/status` (ours and go-livepeer's `NodeStatus` together), the broadcast config
//! (read and written), the node-type and stream routes, and the chain and account routes
//! (`cli_chain`). Like go-livepeer's, the read routes answer any method; the writes
//! (`cli_write`) take a form-encoded POST. Answers are go-livepeer's: bare text, JSON, and
//! plain-text errors (`cli_reply`). Routes go-livepeer has that a gateway without them cannot
//! answer truthfully (bonding, funding, voting, gas prices, `/setLogLevel`...) are not served
//! (README.md lists them), and answer as Go's mux answers a path it does not know.
//!
//! Every CLI route refuses a request a browser marks as sent by a page of another origin
//! (`Sec-Fetch-Site`), token or not: without `--admin-token` the admin port trusts the
//! operator's machine, and a page open on it can make the browser send a GET (an image, a
//! link) that carries no `Origin` for the loopback guard to refuse, and make the gateway call
//! its chain endpoint as often as it likes (`/ethBalance`...). `livepeer_cli`, curl and
//! scripts send no such header.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use axum::routing::any;
use serde_json::{Value, json};

use super::cli_reply::{error, json, json_text, rat_text, text};
use super::cli_write::GoForm;
use super::{cli_chain, cli_status, cli_write};
use crate::state::AppState;
use crate::transcode::TranscodeState;

/// What the CLI routes read: the admin state and the transcoding streams.
#[derive(Debug, Clone)]
pub(crate) struct CliState {
    /// The admin handlers' state.
    pub(crate) app: AppState,
    /// The transcoding streams and their settings.
    pub(crate) transcode: TranscodeState,
}

/// go-livepeer's CLI routes (`server/webserver.go`) this gateway does not serve, and
/// `livepeer_cli` may call. They answer Go's own 404 rather than our JSON one: `livepeer_cli`
/// decodes some answers without looking at the status (`/delegatorInfo` into a `Delegator`),
/// and a JSON object decodes into one whose numbers are nil, which it then dereferences and
/// crashes; Go's plain text fails to decode, and it carries on.
const NOT_SERVED: &[&str] = &[
    // Status and AI.
    "/currentBlock",
    "/orchestratorInfo",
    "/getAISessionPoolsInfo",
    "/getNetworkCapabilities",
    "/registerLiveRunners",
    // Rounds.
    "/initializeRound",
    "/roundInitialized",
    // The orchestrator's.
    "/activateOrchestrator",
    "/setOrchestratorConfig",
    "/setMaxFaceValue",
    "/setPriceForBroadcaster",
    "/setMaxSessions",
    // Bonding and rewards.
    "/bond",
    "/rebond",
    "/unbond",
    "/withdrawStake",
    "/unbondingLocks",
    "/withdrawFees",
    "/claimEarnings",
    "/delegatorInfo",
    "/orchestratorEarningPoolsForRound",
    "/registeredOrchestrators",
    "/reward",
    "/protocolParameters",
    // Tokens, signing, voting.
    "/transferTokens",
    "/requestTokens",
    "/signMessage",
    "/vote",
    "/voteOnProposal",
    // Gas prices.
    "/setMaxGasPrice",
    "/setMinGasPrice",
    "/maxGasPrice",
    "/minGasPrice",
    // Funding (the `deposit`, `unlock`, `cancel-unlock` and `withdraw` subcommands).
    "/fundDepositAndReserve",
    "/fundDeposit",
    "/unlock",
    "/cancelUnlock",
    "/withdraw",
    // Logs and debugging (go-livepeer serves pprof under `/debug/pprof/`).
    "/setLogLevel",
    "/debug",
    "/debug/pprof/",
    "/debug/pprof/{*rest}",
];

/// The go-livepeer CLI routes, `/status` among them.
pub(crate) fn router(state: CliState) -> Router {
    let mut router = Router::new();
    for path in NOT_SERVED {
        router = router.route(path, any(not_found));
    }
    router
        .route("/status", any(status))
        .route("/streamID", any(stream_id))
        .route("/manifestID", any(manifest_id))
        .route("/localStreams", any(|| async { json(&json!([])) }))
        .route("/IsOrchestrator", any(|| async { text("false") }))
        .route("/IsRedeemer", any(|| async { text("false") }))
        .route("/getBroadcastConfig", any(get_broadcast_config))
        .route("/getAvailableTranscodingOptions", any(available_transcoding_options))
        .route("/setBroadcastConfig", any(set_broadcast_config))
        .route("/setMaxPriceForCapability", any(set_max_price_for_capability))
        .route("/getLogLevel", any(log_level))
        .route(
            "/EthChainID",
            any(|s: State<CliState>| async move { cli_chain::eth_chain_id(&s.app) }),
        )
        .route(
            "/currentRound",
            any(|s: State<CliState>| async move { cli_chain::current_round(&s.app) }),
        )
        .route("/ethAddr", any(|s: State<CliState>| async move { cli_chain::eth_addr(&s.app) }))
        .route(
            "/senderInfo",
            any(|s: State<CliState>| async move { cli_chain::sender_info(&s.app) }),
        )
        .route(
            "/contractAddresses",
            any(|s: State<CliState>| async move { cli_chain::contract_addresses(&s.app) }),
        )
        .route(
            "/ethBalance",
            any(|s: State<CliState>| async move { cli_chain::eth_balance(&s.app).await }),
        )
        .route(
            "/tokenBalance",
            any(|s: State<CliState>| async move { cli_chain::token_balance(&s.app).await }),
        )
        .route(
            "/ticketBrokerParams",
            any(|s: State<CliState>| async move { cli_chain::ticket_broker_params(&s.app).await }),
        )
        .layer(from_fn(same_origin_only))
        .with_state(state)
}

/// Go's `http.NotFound`, what its mux answers a path it does not know: 404,
/// `404 page not found` and a newline as plain text, with `nosniff`.
async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "404 page not found")
}

/// Refuses a request whose `Sec-Fetch-Site` says a page of another origin sent it (another
/// port of localhost included); `same-origin` (the dashboard's own page) and `none` (typed in
/// the address bar) pass, as does a request without it (not a browser's).
async fn same_origin_only(req: Request, next: Next) -> Response {
    if let Some(site) = req.headers().get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        let site = String::from_utf8_lossy(site.as_bytes()).into_owned();
        let message = format!(
            "refused: a web page of another origin sent this request (Sec-Fetch-Site: {site})"
        );
        return error(StatusCode::FORBIDDEN, message);
    }
    next.run(req).await
}

/// `/status`: our fields (the dashboard's) and go-livepeer's `NodeStatus` members beside them.
/// Go's names are capitalised, so none collides with ours, but Go decodes a JSON key into a
/// field whose name matches it case-insensitively, and our `version` is such a key for
/// `Version`: both hold the same text, so whichever Go reads last is right.
async fn status(State(state): State<CliState>) -> Response {
    let mut out = super::admin::status_json(&state.app);
    if let Value::Object(map) = &mut out {
        map.extend(cli_status::node_status(&state.app, &state.transcode));
    }
    json_text(out.to_string())
}

/// `/manifestID`: the newest running stream's manifest id, empty when none.
async fn manifest_id(State(state): State<CliState>) -> Response {
    text(newest_stream(&state.transcode).unwrap_or_default())
}

/// `/streamID`: go-livepeer's `StreamID` of the newest stream's source, `<manifestID>/source`
/// (`/` when there is none, as Go prints an empty one).
async fn stream_id(State(state): State<CliState>) -> Response {
    let manifest = newest_stream(&state.transcode).unwrap_or_default();
    let rendition = if manifest.is_empty() { "" } else { crate::transcode::profiles::SOURCE };
    text(format!("{manifest}/{rendition}"))
}

/// The manifest id of the transcoding stream created last, among those running.
fn newest_stream(transcode: &TranscodeState) -> Option<String> {
    let status = transcode.streams_status();
    let streams = status["streams"].as_array()?;
    let newest = streams.iter().max_by_key(|s| s["created_ms"].as_u64().unwrap_or(0))?;
    newest["manifest_id"].as_str().map(str::to_owned)
}

/// `/getBroadcastConfig`: `{"MaxPrice": <big.Rat text or null>, "TranscodingOptions": "…"}`,
/// the global price cap now in force and the renditions of streams that name none.
async fn get_broadcast_config(State(state): State<CliState>) -> Response {
    let max = state.app.requirements.load().max_price.map(rat_text);
    let names: Vec<&str> =
        state.transcode.config().default_profiles.iter().map(|p| p.name.as_str()).collect();
    json(&json!({ "MaxPrice": max, "TranscodingOptions": names.join(",") }))
}

/// `/getAvailableTranscodingOptions`: the preset names `transcodingOptions` takes.
async fn available_transcoding_options() -> Response {
    let names: Vec<&str> = crate::transcode::profiles::preset_names().collect();
    json(&json!(names))
}

async fn set_broadcast_config(State(state): State<CliState>, form: GoForm) -> Response {
    let defaults = &state.transcode.config().default_profiles;
    cli_write::set_broadcast_config(&state.app.pool, defaults, &form)
}

async fn set_max_price_for_capability(State(state): State<CliState>, form: GoForm) -> Response {
    cli_write::set_max_price_for_capability(&state.app.pool, &form)
}

/// `/getLogLevel`: the log filter the gateway started with (`--log-level`; a tracing filter,
/// where go-livepeer answers its glog verbosity).
async fn log_level(State(state): State<CliState>) -> Response {
    text(state.app.summary["log_level"].as_str().unwrap_or("info"))
}
