//! A paid BYOC stream start its orchestrator leaves unanswered, over real sockets, whoever
//! signs. go-livepeer's orchestrator processes a start's payment before anything else
//! (`setupOrchJob`), and closes the connection on a payment it cannot take (nothing credited);
//! an orchestrator stuck past the gateway's deadline holds the tickets instead. The gateway
//! cannot tell the two apart: the start is of unknown outcome, its tickets are booked as
//! spent, not counted on as credit, and it is stopped there in case it runs. Also an update whose creds the orchestrator refuses: it
//! refused the payment with them, and its tickets are not counted on either.

use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_sim::{ByocStreamFault, Sim};
use serde_json::{Value, json};

use crate::byoc_remote::{paid_by_the_signer_only, priced_sim, reverse_job};
use crate::byoc_stream::job_header;
use crate::byoc_unanswered::{
    REVERSAL, both_ways, cooled_down, credit_within_held, held, token_held, view,
};
use crate::support::eventually;

/// 1e9 wei per second against the simulator's tickets of 8e9: a start of any timeout under a
/// minute, nothing held, pays what is short of the minute the orchestrator wants held, 60e9:
/// 8 tickets (64e9).
const PRICE: i64 = 1_000_000_000;
const MINUTE_TICKETS: u64 = 8;

/// A stream of `REVERSAL` (no video or data channels) started at `gw` with `timeout`.
async fn start_stream(gw: &Gateway, name: &str, timeout: u64) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/process/stream/start", gw.http_addr))
        .header("Livepeer", job_header(REVERSAL, timeout, "{}"))
        .header("Authorization", "Bearer byoc-stream-unanswered")
        .json(&json!({"stream_name": name, "stream_id": "1", "params": {}}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The start failed: a JSON 503 naming no client mistake, saying why.
fn failed(who: &str, (status, body): (u16, Value), why: &str) {
    assert_eq!(status, 503, "{who}: {body}");
    assert_eq!(body["error"]["type"], "orchestrators_unavailable", "{who}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(why), "{who}: {message}");
}

/// `sim` has received `stops` `/ai/stream/stop` calls: the gateway stops a start left
/// unanswered where it was sent, in the background.
async fn stopped(sim: &Sim, stops: u64) {
    eventually(Duration::from_secs(20), "the stop of the unanswered start", || async {
        sim.byoc_stats().stream_stops == stops
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_dropped_unanswered_is_stopped_there_and_its_tickets_not_counted_on() {
    // The orchestrator drops the connection before it takes the start's 8 tickets (64e9, the
    // minute it wants held). The start may have run there, so the gateway stops it there;
    // the stop's fresh job token shows nothing held, so the stop pays the minute, and the
    // view is what the orchestrator holds. The next job pays its own 10 s only.
    let (keyed_sim, remote_sim) = (priced_sim(PRICE).await, priced_sim(PRICE).await);
    let (keyed, keyless, _signer) = both_ways(&keyed_sim, &remote_sim).await;
    for (sim, gw) in [(&keyed_sim, &keyed), (&remote_sim, &keyless)] {
        let who = sim.url();
        token_held(gw, sim).await;
        sim.set_byoc_stream_fault(ByocStreamFault::Close);
        failed(who, start_stream(gw, "dropped", 10).await, "could not start on 1");
        stopped(sim, 1).await;
        let stats = sim.byoc_stats();
        assert_eq!((stats.stream_start_calls, stats.stream_starts), (1, 0), "{who}");
        assert_eq!(stats.payments_on_stop_or_update, 1, "{who}: the stop was paid");
        paid_by_the_signer_only(sim);
        let credited = sim.payments().tickets_credited;
        assert_eq!(credited, MINUTE_TICKETS, "{who}: the stop's minute, the start's taken not");
        credit_within_held(gw, sim).await;
        sim.set_byoc_stream_fault(ByocStreamFault::None);
        cooled_down(gw, sim).await;
        reverse_job(gw, 10).await;
        let more = sim.payments().tickets_credited - credited;
        assert!((1..=2).contains(&more), "{who}: {more} tickets for the 10 s, not the minute");
        credit_within_held(gw, sim).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_still_on_its_way_lands_before_a_new_start_of_the_same_id() {
    // The stop of an unanswered start goes out in the background, and the orchestrator is
    // slow to take it (5 s). The client starts the same stream id again at once: the stop
    // must reach the orchestrator first. Sent before the stop landed, the new start ran
    // there until the stop ended it under the id they share. (Unpriced: with a price, the
    // start and the stop also raced on the credit, and the start was refused 402.)
    let (keyed_sim, remote_sim) = (priced_sim(0).await, priced_sim(0).await);
    let (gw, _keyless, _signer) = both_ways(&keyed_sim, &remote_sim).await;
    let sim = &keyed_sim;
    token_held(&gw, sim).await;
    // Long enough for the cooldown below to end before the stop is taken, on a slow machine
    // too: the restart must find the stop still on its way for the test to mean anything.
    sim.set_byoc_stop_delay(Duration::from_secs(5));
    sim.set_byoc_stream_fault(ByocStreamFault::Close);
    failed(sim.url(), start_stream(&gw, "again", 10).await, "could not start on 1");
    sim.set_byoc_stream_fault(ByocStreamFault::None);
    cooled_down(&gw, sim).await;
    assert_eq!(sim.byoc_stats().stream_stops, 0, "the stop is still on its way");
    let (status, body) = start_stream(&gw, "again", 10).await;
    assert_eq!(status, 200, "{body}");
    stopped(sim, 1).await;
    let stats = sim.byoc_stats();
    assert_eq!((stats.stream_starts, stats.streams_active), (1, 1), "the new stream runs on");
    let status = reqwest::Client::new()
        .get(body["status_url"].as_str().unwrap())
        .header("Authorization", "Bearer byoc-stream-unanswered")
        .send()
        .await
        .unwrap();
    let status: Value = status.json().await.unwrap();
    assert_eq!(status["state"], "running", "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_abandoned_by_its_client_is_stopped_before_the_same_id_starts_again() {
    // The orchestrator starts the stream and never answers; the client gives up and hangs
    // up. The gateway stops the stream there in the background (the orchestrator takes 5 s
    // to take the stop) and frees the id. The client starts the same id again at once: the
    // new start must wait for that stop, or the stop would end the new stream there.
    let (keyed_sim, remote_sim) = (priced_sim(0).await, priced_sim(0).await);
    let (gw, _keyless, _signer) = both_ways(&keyed_sim, &remote_sim).await;
    let sim = &keyed_sim;
    token_held(&gw, sim).await;
    sim.set_byoc_stop_delay(Duration::from_secs(5));
    sim.set_byoc_stream_fault(ByocStreamFault::HangStarted);
    let start = reqwest::Client::new()
        .post(format!("http://{}/process/stream/start", gw.http_addr))
        .header("Livepeer", job_header(REVERSAL, 10, "{}"))
        .header("Authorization", "Bearer byoc-stream-unanswered")
        .json(&json!({"stream_name": "left", "stream_id": "1", "params": {}}))
        .send();
    let start = tokio::spawn(start);
    eventually(Duration::from_secs(10), "the stream started there", || async {
        sim.byoc_stats().stream_starts == 1
    })
    .await;
    start.abort();
    sim.set_byoc_stream_fault(ByocStreamFault::None);
    // The id is free again once the gateway has seen the client go.
    let (status, body) = eventually_started(&gw, "left").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sim.byoc_stats().stream_stops, 1, "the stop landed before the new start");
    let stats = sim.byoc_stats();
    assert_eq!((stats.stream_starts, stats.streams_active), (2, 1), "the new stream runs");
    stopped(sim, 1).await;
    assert_eq!(sim.byoc_stats().streams_active, 1, "and runs on");
}

/// Starts `name` at `gw` until the answer is not 409 (the name still held by a start whose
/// client has gone, until the gateway notices).
async fn eventually_started(gw: &Gateway, name: &str) -> (u16, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = start_stream(gw, name, 10).await;
        if status != 409 || tokio::time::Instant::now() >= deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_answered_too_late_is_stopped_there_and_its_tickets_counted_again() {
    // The orchestrator takes the start's 8 tickets and answers nothing within the gateway's
    // deadline (a 1 s timeout and its 5 s of grace; both gateways wait at once). Of unknown
    // outcome, the start is booked as spent, and stopped there; the stop's fresh job token
    // reports the 64e9 held, and the view counts it again: the next start pays its own 10 s
    // only, not the minute again.
    let (keyed_sim, remote_sim) = (priced_sim(PRICE).await, priced_sim(PRICE).await);
    let (keyed, keyless, _signer) = both_ways(&keyed_sim, &remote_sim).await;
    let pairs = [(&keyed_sim, &keyed), (&remote_sim, &keyless)];
    for (sim, gw) in pairs {
        token_held(gw, sim).await;
        sim.set_byoc_stream_fault(ByocStreamFault::Hang);
    }
    let (a, b) = tokio::join!(start_stream(&keyed, "late", 1), start_stream(&keyless, "late", 1));
    for ((sim, gw), answer) in pairs.into_iter().zip([a, b]) {
        let who = sim.url();
        failed(who, answer, "no answer within 6s");
        stopped(sim, 1).await;
        let stats = sim.byoc_stats();
        assert_eq!((stats.stream_start_calls, stats.stream_starts), (1, 0), "{who}");
        paid_by_the_signer_only(sim);
        let credited = sim.payments().tickets_credited;
        assert!(credited >= MINUTE_TICKETS, "{who}: the start's tickets taken: {credited}");
        credit_within_held(gw, sim).await;
        sim.set_byoc_stream_fault(ByocStreamFault::None);
        cooled_down(gw, sim).await;
        let (status, body) = start_stream(gw, "again", 10).await;
        assert_eq!(status, 200, "{who}: {body}");
        paid_by_the_signer_only(sim);
        let more = sim.payments().tickets_credited - credited;
        assert!((1..=2).contains(&more), "{who}: {more} tickets for the 10 s, not the minute");
        credit_within_held(gw, sim).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_started_whose_answer_never_came_is_stopped_on_its_orchestrator() {
    // The orchestrator starts the stream (its worker runs, charged) and its answer never
    // comes. Left alone, the stream would run there, debiting the gateway's credit until
    // the orchestrator's balance checks end it; the gateway stops it.
    Box::pin(started_then_stopped(ByocStreamFault::HangStarted, "no answer within 6s")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_started_whose_answer_broke_off_is_stopped_on_its_orchestrator() {
    // The orchestrator starts the stream and answers 200, then a body past what the gateway
    // reads of a start's answer: the gateway cannot use the answer, and the stream runs
    // there all the same; the gateway stops it.
    let why = "answer larger than 65536 bytes";
    Box::pin(started_then_stopped(ByocStreamFault::OversizedStarted, why)).await;
}

/// A start that `fault` makes the orchestrator run without the gateway taking it up, whoever
/// signs: the client is told `why`, the stream is stopped there, and the credit view stays
/// within what is held.
async fn started_then_stopped(fault: ByocStreamFault, why: &str) {
    let (keyed_sim, remote_sim) = (priced_sim(PRICE).await, priced_sim(PRICE).await);
    let (keyed, keyless, _signer) = both_ways(&keyed_sim, &remote_sim).await;
    let pairs = [(&keyed_sim, &keyed), (&remote_sim, &keyless)];
    for (sim, gw) in pairs {
        token_held(gw, sim).await;
        sim.set_byoc_stream_fault(fault);
    }
    let (a, b) = tokio::join!(start_stream(&keyed, "lost", 1), start_stream(&keyless, "lost", 1));
    for ((sim, gw), answer) in pairs.into_iter().zip([a, b]) {
        let who = sim.url();
        failed(who, answer, why);
        assert_eq!(sim.byoc_stats().stream_starts, 1, "{who}: the stream was started there");
        stopped(sim, 1).await;
        assert_eq!(sim.byoc_stats().streams_active, 0, "{who}: and is stopped");
        credit_within_held(gw, sim).await;
        sim.set_byoc_stream_fault(ByocStreamFault::None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_sent_with_an_update_whose_creds_are_refused_are_not_counted_on_whoever_signs() {
    // go-livepeer's update handler refuses creds it cannot verify before it looks at the
    // payment (`setupOrchJob`), in its own words: `Failed to stop stream, request not valid
    // err=Could not verify job creds`. The update's tickets (its 10 s: 2 of them, the start's
    // minute being under the two that make a call go unpaid) count for nothing. Booked as an
    // update answered without a charge, their 16e9 stayed in the view as credit the
    // orchestrator does not hold.
    let (keyed_sim, remote_sim) = (priced_sim(PRICE).await, priced_sim(PRICE).await);
    let (keyed, keyless, _signer) = both_ways(&keyed_sim, &remote_sim).await;
    for (sim, gw) in [(&keyed_sim, &keyed), (&remote_sim, &keyless)] {
        let who = sim.url();
        token_held(gw, sim).await;
        let (status, started) = start_stream(gw, "refused", 10).await;
        assert_eq!(status, 200, "{who}: {started}");
        let credited = sim.payments().tickets_credited;
        sim.set_byoc_stream_fault(ByocStreamFault::RefuseCalls);
        let update = reqwest::Client::new()
            .post(started["update_url"].as_str().unwrap())
            .header("Authorization", "Bearer byoc-stream-unanswered")
            .body("{}")
            .send()
            .await
            .unwrap();
        // The gateway's payment refused: its fault, not the client's (503, not a 400).
        assert_eq!(update.status(), 503, "{who}: the update was refused");
        let body: serde_json::Value = update.json().await.unwrap();
        assert_eq!(body["error"]["type"], "payment_refused", "{who}: {body}");
        assert!(sim.byoc_stats().stream_updates.is_empty(), "{who}");
        assert_eq!(sim.payments().tickets_credited, credited, "{who}: nothing taken");
        let (booked, held) = (view(gw, sim, REVERSAL).await.unwrap(), held(sim, REVERSAL));
        assert!(booked <= held, "{who}: the refused update's tickets counted: {booked} vs {held}");
        sim.set_byoc_stream_fault(ByocStreamFault::None);
    }
}
