//! Requests still unanswered when the drain time is over get an answer, not a reset.
//!
//! At shutdown every request gets `--shutdown-drain-timeout`; then the serving threads end and
//! take what still runs with them. A streamed answer already under way writes its final
//! event on [`crate::task::Tasks::drained`]; a request whose answer has not begun (a batch AI
//! job waiting on a slow orchestrator, a BYOC job, a pushed segment, a stream's start) would
//! see its connection cut. This layer answers those 503 `gateway_overloaded` with
//! `Retry-After`, which tells the client to try again, elsewhere or after the restart.

use crate::error::{Error, Kind};
use crate::lane::Lanes;
use crate::task::Tasks;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::IntoResponse as _;

/// `router` with every request raced against `tasks`' drained token: one not yet answered
/// when it fires is answered 503 and its work dropped (as when a client hangs up). Applied
/// inside the CORS layer, so that a page can read it. `lanes` is how many serving lanes there
/// are ([`crate::lane`]): each watches a child token of its own, since every request registers
/// with the token it watches, and one token for all would be a lock the threads share.
pub(crate) fn answer_at_drain_end(
    router: axum::Router,
    tasks: &Tasks,
    lanes: usize,
) -> axum::Router {
    let drained = tasks.drained();
    let tokens = Lanes::filled(lanes, || drained.child_token());
    router.layer(axum::middleware::from_fn(move |req: Request, next: Next| {
        let drained = tokens.get().clone();
        async move {
            tokio::select! {
                biased;
                resp = next.run(req) => resp,
                () = drained.cancelled() => {
                    Error::new(Kind::GatewayOverloaded, "the gateway is shutting down").into_response()
                }
            }
        }
    }))
}
