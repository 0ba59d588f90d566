//! The open HTTP sessions, each bound to the agent that opened it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use warden_core::AgentId;

use crate::mcp::hub::HubSession;

/// How many sessions may be open, and for how long idle.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// Sessions one agent may hold open at once.
    pub per_agent: usize,
    /// Sessions open in all.
    pub total: usize,
    /// A session unused for this long is closed.
    pub idle: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            per_agent: 1_000,
            total: 20_000,
            idle: Duration::from_secs(3600),
        }
    }
}

pub(super) struct SessionTable {
    limits: SessionLimits,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Entry>,
    /// Sessions open or being opened, per agent.
    per_agent: HashMap<AgentId, usize>,
    /// Sessions being opened (reserved, not yet in `by_id`).
    opening: usize,
    /// Set when Warden stops ([`SessionTable::drain`]): no session is opened after.
    closed: bool,
}

/// Why a session is not opened while Warden stops.
pub(super) const STOPPING: &str = "Warden is stopping; try again once it is back";

/// A place for a session being opened, taken before its first record is journaled so that
/// concurrent `initialize` requests cannot all pass the limits; given back if it is dropped
/// before [`SessionTable::insert`].
pub(super) struct Reservation<'a> {
    table: &'a SessionTable,
    agent: AgentId,
    used: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.used {
            let mut inner = self.table.lock();
            inner.opening = inner.opening.saturating_sub(1);
            release(&mut inner, &self.agent);
        }
    }
}

struct Entry {
    session: Arc<HubSession>,
    token: TokenPrint,
    last_used: Instant,
}

/// The SHA-256 of the bearer token a session was opened with.
pub(super) type TokenPrint = [u8; 32];

/// What a presented session id turned out to be.
pub(super) enum Lookup {
    Found(Arc<HubSession>),
    Unknown,
    OtherAgent,
    /// The agent's, but opened with a token that is no longer the one presented.
    TokenChanged(Arc<HubSession>),
}

impl SessionTable {
    pub(super) fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more session of `agent`, unless that would pass a limit.
    pub(super) fn reserve(&self, agent: &AgentId) -> Result<Reservation<'_>, String> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(STOPPING.to_owned());
        }
        if inner.by_id.len() + inner.opening >= self.limits.total {
            return Err(format!(
                "Warden already serves {} sessions, its limit; try again later",
                self.limits.total
            ));
        }
        if inner.per_agent.get(agent).copied().unwrap_or(0) >= self.limits.per_agent {
            return Err(format!(
                "agent \"{agent}\" already holds {} sessions, its limit; end one (HTTP DELETE) first",
                self.limits.per_agent
            ));
        }
        *inner.per_agent.entry(agent.clone()).or_default() += 1;
        inner.opening += 1;
        Ok(Reservation {
            table: self,
            agent: agent.clone(),
            used: false,
        })
    }

    /// Puts the session opened in `reservation`'s place; gives it back when Warden began to
    /// stop meanwhile (the caller then closes it: nothing else would).
    pub(super) fn insert(
        &self,
        mut reservation: Reservation<'_>,
        session: Arc<HubSession>,
        token: TokenPrint,
    ) -> Result<(), Arc<HubSession>> {
        reservation.used = true;
        let mut inner = self.lock();
        inner.opening = inner.opening.saturating_sub(1);
        if inner.closed {
            return Err(session);
        }
        if session.agent() != &reservation.agent {
            // Not the agent the place was taken for: count it where it belongs.
            release(&mut inner, &reservation.agent);
            *inner.per_agent.entry(session.agent().clone()).or_default() += 1;
        }
        inner.by_id.insert(
            session.id().as_str().to_owned(),
            Entry {
                session,
                token,
                last_used: Instant::now(),
            },
        );
        Ok(())
    }

    pub(super) fn lookup(&self, id: &str, agent: &AgentId, token: &TokenPrint) -> Lookup {
        let mut inner = self.lock();
        match inner.by_id.get_mut(id) {
            None => Lookup::Unknown,
            Some(entry) if entry.session.agent() != agent => Lookup::OtherAgent,
            Some(entry) if &entry.token != token => Lookup::TokenChanged(entry.session.clone()),
            Some(entry) => {
                entry.last_used = Instant::now();
                Lookup::Found(entry.session.clone())
            }
        }
    }

    pub(super) fn remove(&self, id: &str) -> Option<Arc<HubSession>> {
        let mut inner = self.lock();
        let entry = inner.by_id.remove(id)?;
        release(&mut inner, entry.session.agent());
        Some(entry.session)
    }

    pub(super) fn take_idle(&self) -> Vec<Arc<HubSession>> {
        let now = Instant::now();
        self.take_where(|e| {
            now.duration_since(e.last_used) >= self.limits.idle
                // A call still being answered (held for a human, a long tool) is not idleness.
                && !e.session.busy()
        })
    }

    /// The distinct tokens (as prints) open sessions were opened with.
    pub(super) fn token_prints(&self) -> Vec<TokenPrint> {
        let inner = self.lock();
        let mut prints: Vec<TokenPrint> = inner.by_id.values().map(|e| e.token).collect();
        prints.sort_unstable();
        prints.dedup();
        prints
    }

    /// Removes and returns the sessions opened with any of `prints`.
    pub(super) fn take_opened_with(&self, prints: &[TokenPrint]) -> Vec<Arc<HubSession>> {
        if prints.is_empty() {
            return Vec::new();
        }
        self.take_where(|e| prints.contains(&e.token))
    }

    /// Removes and returns the sessions whose entry satisfies `pick`.
    fn take_where(&self, pick: impl Fn(&Entry) -> bool) -> Vec<Arc<HubSession>> {
        let mut inner = self.lock();
        let ids: Vec<String> = inner
            .by_id
            .iter()
            .filter(|(_, e)| pick(e))
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(entry) = inner.by_id.remove(&id) {
                release(&mut inner, entry.session.agent());
                out.push(entry.session);
            }
        }
        out
    }

    pub(super) fn drain(&self) -> Vec<Arc<HubSession>> {
        let mut inner = self.lock();
        inner.closed = true;
        inner.per_agent.clear();
        inner.by_id.drain().map(|(_, e)| e.session).collect()
    }

    pub(super) fn len(&self) -> usize {
        self.lock().by_id.len()
    }
}

fn release(inner: &mut Inner, agent: &AgentId) {
    if let Some(n) = inner.per_agent.get_mut(agent) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            inner.per_agent.remove(agent);
        }
    }
}
