//! Load shedding: at most so many requests are worked on at once; one more is answered
//! `503 Service Unavailable` with `Retry-After` at once, never queued without bound.
//!
//! A request's permit is held by a task of its own until its handler is done, so a client
//! that hangs up early frees no room while the journal read it started still runs. Operator
//! actions (quarantine, release, kill, answers to held calls) have room of their own, so a
//! flood of reads never keeps an admin from containing an agent.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::refuse;

/// Read requests (pages, verification, the fleet, policy validation…) worked on at once by
/// default; `warden up` takes `[control] max_concurrent_requests`.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 16;

/// Operator actions worked on at once, apart from the reads.
pub const MAX_CONCURRENT_ACTIONS: usize = 4;

/// What a shed request is told to wait before it tries again, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

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
    use std::time::Duration;

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
}
