//! The live stream: every journal record as it is committed, as server-sent events.
//!
//! It follows the journal file, so it carries what every Warden process sharing the journal
//! records; commits of this process wake it at once, others within [`POLL`]. A client that
//! reconnects passes the last seq it saw (`after`, or the `Last-Event-ID` header) and misses
//! nothing. The operator's token is checked again while the stream is open: a revoked token
//! ends it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use warden_journal::{JournalReader, Query as JournalQuery};

use super::journal::{page_request, shown};
use super::{ControlState, Recorder, Refusal, authorize, reading, unavailable};
use crate::operators::Role;

/// How often the stream looks for records other processes appended.
const POLL: Duration = Duration::from_millis(250);

/// Records sent per read.
const BATCH: usize = 500;

/// How often an idle stream re-checks the operator's token.
const REAUTHORIZE: Duration = Duration::from_secs(5);

struct Follow<R> {
    state: Arc<ControlState<R>>,
    headers: HeaderMap,
    reader: Arc<Mutex<JournalReader>>,
    query: JournalQuery,
    commits: Option<tokio::sync::watch::Receiver<u64>>,
    checked: tokio::time::Instant,
}

pub(super) async fn stream<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Refusal> {
    authorize(&state, &headers, Role::Viewer)?;
    let request = page_request(&params, &["after", "agent", "kind"])?;
    let path = state.journal_path.clone();
    let reader = reading(move || JournalReader::open(&path)).await?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Without a cursor the stream starts at the journal's end: what happens from now on.
    let after = match (params.contains_key("after"), resume) {
        (true, _) => request.after,
        (false, Some(seq)) => seq,
        (false, None) => reader.last_seq().map_err(unavailable)?,
    };
    let follow = Follow {
        commits: state.journal.commits(),
        state,
        headers,
        reader: Arc::new(Mutex::new(reader)),
        query: JournalQuery {
            after_seq: after,
            agent: request.agent,
            kind: request.kind,
            limit: BATCH,
            ..JournalQuery::default()
        },
        checked: tokio::time::Instant::now(),
    };
    let events = stream::unfold(follow, next_batch)
        .flat_map(|batch: Vec<SseEvent>| stream::iter(batch.into_iter().map(Ok)));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The next records to send, waiting until there are some; `None` ends the stream.
async fn next_batch<R: Recorder>(mut follow: Follow<R>) -> Option<(Vec<SseEvent>, Follow<R>)> {
    loop {
        if follow.checked.elapsed() >= REAUTHORIZE {
            authorize(&follow.state, &follow.headers, Role::Viewer).ok()?;
            follow.checked = tokio::time::Instant::now();
        }
        let reader = follow.reader.clone();
        let query = follow.query.clone();
        let records = tokio::task::spawn_blocking(move || {
            let reader = reader.lock().unwrap_or_else(|e| e.into_inner());
            reader.records(&query)
        })
        .await
        .ok()?;
        let records = match records {
            Ok(r) => r,
            Err(err) => {
                tracing::warn!(%err, "the live stream could not read the journal");
                return None;
            }
        };
        if let Some(last) = records.last() {
            follow.query.after_seq = last.seq;
            let batch = records
                .iter()
                .map(|r| {
                    SseEvent::default()
                        .id(r.seq.to_string())
                        .event("record")
                        .data(shown(r).to_string())
                })
                .collect();
            return Some((batch, follow));
        }
        let closed = match &mut follow.commits {
            Some(commits) => tokio::select! {
                changed = commits.changed() => changed.is_err(),
                () = tokio::time::sleep(POLL) => false,
            },
            None => {
                tokio::time::sleep(POLL).await;
                false
            }
        };
        if closed {
            // The journal handle is gone: polling alone still follows the file.
            follow.commits = None;
        }
    }
}
