//! Load shedding: at most so many requests are worked on at once; one more is answered
//! `503 Service Unavailable` with `Retry-After` at once, never queued without bound.
//!
//! A request's permit is held by a task of its own until its handler is done, so a client
//! that hangs up early frees no room while the journal read it started still runs. Operator
//! actions (quarantine, release, kill, answers to held calls) have room of their own, so a
//! flood of reads never keeps an admin from containing an agent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
// Tokio's clock, so tests can let time pass without waiting.
use tokio::time::Instant;

use super::refuse;

/// Read requests (pages, verification, the fleet, policy validation…) worked on at once by
/// default; `warden up` takes `[control] max_concurrent_requests`.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 16;

/// Operator actions worked on at once, apart from the reads.
pub const MAX_CONCURRENT_ACTIONS: usize = 4;

/// What a shed request is told to wait before it tries again, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Requests per second the control plane starts by default (operator actions apart);
/// `warden up` takes `[control] max_requests_per_second`.
pub const DEFAULT_MAX_REQUESTS_PER_SECOND: u32 = 200;

/// The longest a request waits for its turn under [`Pace`] before it is refused.
const MAX_PACE_WAIT: Duration = Duration::from_secs(2);

/// Requests (in ordinary ones) that may start at once, above the rate, after a quiet spell:
/// the dashboard's first load and an operator's script go unpaced; a flood is paced after
/// its first so many.
pub const PACE_BURST: u32 = 32;

/// At most so many requests a second start, evenly spaced once a burst of [`PACE_BURST`] is
/// spent; one over the rate waits for its turn (up to [`MAX_PACE_WAIT`]) instead of being
/// refused at once, so a client that floods the API is slowed to the rate rather than
/// answered ever faster. Answering thousands of refusals a second costs CPU the agents'
/// gateway needs (parsing, the kernel's TCP work), which a lower thread priority does not
/// reach.
#[derive(Clone)]
pub(super) struct Pace {
    /// When the requests started so far would all have started at the rate, the burst
    /// unused (the "theoretical arrival time" of a cell-rate limiter).
    paced_until: Arc<Mutex<Instant>>,
    interval: Duration,
    /// How far `paced_until` may run ahead of now before a request waits.
    burst: Duration,
}

impl Pace {
    /// `per_second` requests a second (at least one), after a burst of `burst`.
    pub(super) fn new(per_second: u32, burst: u32) -> Self {
        let interval = Duration::from_secs(1) / per_second.max(1);
        Self {
            paced_until: Arc::new(Mutex::new(Instant::now())),
            interval,
            burst: interval * burst,
        }
    }

    /// The turn of a request that costs `cost` ordinary ones: how long it must wait, or
    /// `None` when that is beyond the bound (then no turn is taken). The next request waits
    /// `cost` intervals longer.
    fn turns(&self, cost: u32) -> Option<Duration> {
        let now = Instant::now();
        // A poisoned lock only means a panic between two plain stores; the time is valid.
        let mut paced_until = self.paced_until.lock().unwrap_or_else(|e| e.into_inner());
        let at_rate = (*paced_until).max(now);
        let wait = (at_rate - now).saturating_sub(self.burst);
        if wait > MAX_PACE_WAIT {
            return None;
        }
        *paced_until = at_rate + self.interval * cost.max(1);
        Some(wait)
    }
}

/// What a request costs, in ordinary requests: a page of the journal counts one per hundred
/// records it may hold, a verification of the whole chain ten.
fn cost(request: &Request) -> u32 {
    let uri = request.uri();
    match uri.path() {
        "/api/v1/journal/verify" => 10,
        "/api/v1/journal" | "/api/v1/alerts" => uri
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|pair| pair.strip_prefix("limit="))
            .and_then(|n| n.parse::<u32>().ok())
            .map_or(1, |n| n.div_ceil(100).clamp(1, 10)),
        _ => 1,
    }
}

/// Starts the request at its turn under the pace; refuses it (503, after [`MAX_PACE_WAIT`])
/// when its turn is too far.
pub(super) async fn pace(State(pace): State<Pace>, request: Request, next: Next) -> Response {
    match pace.turns(cost(&request)) {
        None => {
            // Refused only after the longest wait: refusing at once would let a client
            // that ignores Retry-After ask again at once, thousands of times a second.
            tokio::time::sleep(MAX_PACE_WAIT).await;
            busy("requests")
        }
        Some(wait) => {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            next.run(request).await
        }
    }
}

/// Room for requests of one kind.
#[derive(Clone)]
pub(super) struct Admission {
    permits: Arc<Semaphore>,
    kind: &'static str,
}

impl Admission {
    /// Room for `max` requests at once (at least one: a limit of zero would refuse all).
    pub(super) fn new(max: usize, kind: &'static str) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            kind,
        }
    }
}

/// Runs the request if there is room; otherwise answers 503 at once.
pub(super) async fn admit(
    State(admission): State<Admission>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(permit) = admission.permits.clone().try_acquire_owned() else {
        return busy(admission.kind);
    };
    // The handler runs to its end even if the client leaves, holding the permit, so the
    // permits count the work actually going on.
    let work = tokio::spawn(async move {
        let response = next.run(request).await;
        drop(permit);
        response
    });
    match work.await {
        Ok(response) => response,
        Err(err) => {
            tracing::error!(%err, "a control plane request failed");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "the request failed").into_response()
        }
    }
}

/// The answer to a request beyond the limit.
fn busy(kind: &str) -> Response {
    let mut response = refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the control plane is busy with other {kind}; retry in {RETRY_AFTER_SECS} s \
             (Retry-After)"
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

#[cfg(test)]
mod tests {

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    /// How long a test waits for something that should happen at once: a guard against
    /// hanging, not a performance assertion.
    const HANG_GUARD: Duration = Duration::from_secs(10);

    /// A router with room for `max` whose one route says it `entered`, then waits for a
    /// permit of `gate`.
    fn gated(max: usize, gate: Arc<Semaphore>, entered: Arc<Semaphore>) -> Router {
        Router::new()
            .route(
                "/slow",
                get(move || {
                    let (gate, entered) = (gate.clone(), entered.clone());
                    async move {
                        entered.add_permits(1);
                        gate.acquire().await.unwrap().forget();
                        "done"
                    }
                }),
            )
            .route_layer(axum::middleware::from_fn_with_state(
                Admission::new(max, "reads"),
                admit,
            ))
    }

    fn slow() -> Request {
        Request::get("/slow").body(Body::empty()).unwrap()
    }

    async fn wait_entered(entered: &Semaphore, n: u32) {
        tokio::time::timeout(HANG_GUARD, entered.acquire_many(n))
            .await
            .expect("the requests never reached their handler")
            .unwrap()
            .forget();
    }

    #[tokio::test]
    async fn requests_beyond_the_limit_are_shed_with_retry_after_then_served_again() {
        let (gate, entered) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
        let app = gated(2, gate.clone(), entered.clone());
        let first = tokio::spawn(app.clone().oneshot(slow()));
        let second = tokio::spawn(app.clone().oneshot(slow()));
        wait_entered(&entered, 2).await;
        let third = app.clone().oneshot(slow()).await.unwrap();
        assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(third.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(third.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(body["error"].as_str().unwrap().contains("busy"), "{body}");
        gate.add_permits(2);
        for done in [first, second] {
            assert_eq!(done.await.unwrap().unwrap().status(), StatusCode::OK);
        }
        // Their permits were given back before they answered: the next one is served.
        gate.add_permits(1);
        let next = app.oneshot(slow()).await.unwrap();
        assert_eq!(next.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_client_that_leaves_keeps_its_room_until_the_handler_is_done() {
        let (gate, entered) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
        let app = gated(1, gate.clone(), entered.clone());
        let leaving = tokio::spawn(app.clone().oneshot(slow()));
        wait_entered(&entered, 1).await;
        leaving.abort();
        assert!(leaving.await.unwrap_err().is_cancelled());
        // Its handler still runs: there is no room yet.
        let shed = app.clone().oneshot(slow()).await.unwrap();
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        // Once the handler is done, the room comes back.
        gate.add_permits(Semaphore::MAX_PERMITS / 2);
        let deadline = tokio::time::Instant::now() + HANG_GUARD;
        loop {
            let answer = app.clone().oneshot(slow()).await.unwrap();
            if answer.status() == StatusCode::OK {
                break;
            }
            assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(
                tokio::time::Instant::now() < deadline,
                "the room never came back"
            );
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn requests_over_the_rate_wait_their_turn_and_far_turns_are_refused() {
        let pace = Pace::new(10, 0); // one every 100 ms, no burst
        let first = pace.turns(1).expect("a turn");
        assert_eq!(first, Duration::ZERO, "the first request starts at once");
        let waits: Vec<Duration> = (0..19).map(|_| pace.turns(1).expect("a turn")).collect();
        // Evenly spaced: the n-th request after the first waits n × 100 ms.
        for (n, wait) in waits.iter().enumerate() {
            assert_eq!(*wait, Duration::from_millis(100) * (n as u32 + 1));
        }
        // The 21st would wait 2.0 s: still within the bound; the next ones are refused.
        assert_eq!(pace.turns(1), Some(Duration::from_secs(2)));
        assert_eq!(pace.turns(1), None, "a turn beyond 2 s is refused");
        // Time passing frees turns again.
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(pace.turns(1), Some(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_starts_at_once_then_the_rate_holds() {
        let pace = Pace::new(10, 5); // one every 100 ms after five at once
        let waits: Vec<Duration> = (0..8).map(|_| pace.turns(1).expect("a turn")).collect();
        let ms = |n: u64| Duration::from_millis(n);
        assert_eq!(waits, [0, 0, 0, 0, 0, 0, 100, 200].map(ms));
        // Quiet again long enough, the whole burst is back; a little, only part of it.
        tokio::time::advance(ms(2_000)).await;
        assert!((0..6).all(|_| pace.turns(1) == Some(Duration::ZERO)));
        assert_eq!(pace.turns(1), Some(ms(100)));
        tokio::time::advance(ms(300)).await;
        let after: Vec<Duration> = (0..4).map(|_| pace.turns(1).expect("a turn")).collect();
        assert_eq!(after, [0, 0, 100, 200].map(ms));
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_router_answers_in_order_and_refuses_with_retry_after() {
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(Pace::new(1, 0), pace));
        let get_root = || {
            app.clone()
                .oneshot(axum::http::Request::get("/").body(Body::empty()).unwrap())
        };
        assert_eq!(get_root().await.unwrap().status(), StatusCode::OK);
        // The second waits a second (paused time runs ahead), then is served.
        assert_eq!(get_root().await.unwrap().status(), StatusCode::OK);
        // Three more queued at once: turns 1, 2 and 3 s away; the third is refused.
        let (a, b, c) = tokio::join!(get_root(), get_root(), get_root());
        let answers = [a.unwrap(), b.unwrap(), c.unwrap()];
        let served = answers
            .iter()
            .filter(|r| r.status() == StatusCode::OK)
            .count();
        assert_eq!(served, 2);
        let refused = answers
            .iter()
            .find(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE)
            .expect("the turn 3 s away is refused");
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn journal_pages_cost_by_their_size_and_verification_most() {
        let cost_of = |uri: &str| cost(&axum::http::Request::get(uri).body(Body::empty()).unwrap());
        assert_eq!(cost_of("/api/v1/me"), 1);
        assert_eq!(cost_of("/api/v1/journal"), 1);
        assert_eq!(cost_of("/api/v1/journal?limit=100"), 1);
        assert_eq!(cost_of("/api/v1/journal?order=newest&limit=1000"), 10);
        assert_eq!(cost_of("/api/v1/alerts?limit=250"), 3);
        assert_eq!(cost_of("/api/v1/journal?limit=ten"), 1);
        assert_eq!(cost_of("/api/v1/journal/verify"), 10);
    }
}
