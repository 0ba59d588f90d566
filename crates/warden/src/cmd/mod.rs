//! One module per subcommand.

pub mod agent;
pub mod agents;
pub mod alerts;
pub mod approvals;
pub mod audit;
pub mod demo;
pub mod doctor;
pub mod events;
pub mod init;
pub mod journal_source;
pub mod kill;
pub mod learn;
pub mod mcp;
pub mod policy;
pub mod quarantine;
pub mod run;
pub mod up;
pub mod user;

/// The stack of every thread that decides or validates policies. Cedar goes one call deeper
/// per level of an expression. Warden bounds policies (warden-policy's `bounds`), and within
/// those bounds a 2 MiB thread is not always enough: parts of Cedar that watch their stack give
/// up near its end (its type checker can then pass what it would refuse with more room). So
/// these threads get 8 MiB, as the main thread has. Untouched stack costs no memory.
pub const POLICY_STACK_BYTES: usize = 8 << 20;

use warden_journal::Journal;

use crate::config::Config;

/// The policy set in force for `config`; a missing policy folder says how to make one.
pub fn load_policies(config: &Config) -> anyhow::Result<warden_policy::PolicySet> {
    use anyhow::Context as _;
    let dir = config.policy_dir();
    let loaded = warden_policy::PolicySet::load_dir(&dir);
    let hint = match &loaded {
        Err(warden_policy::PolicyError::MissingFolder { .. }) => {
            " (`warden init` writes a starter policy folder and configuration)"
        }
        _ => "",
    };
    loaded.with_context(|| format!("loading policies from {}{hint}", dir.display()))
}

/// A quarantined agent's token is revoked: its HTTP sessions end, and a release needs a new
/// token (`warden agent add NAME --rotate`), issued by a human.
pub fn revoke_on_quarantine(monitor: &warden_monitor::Monitor, config: &Config, journal: &Journal) {
    let store = warden_gateway::identity::AgentStore::new(config.agents_file());
    let journal = journal.clone();
    monitor.on_quarantine(Box::new(move |entry| {
        let result = store.revoke_recorded(&entry.agent, |agent, change| {
            // Queued: the hook runs on the action's path and must not wait for a commit.
            let event = warden_core::Event {
                time_ms: warden_gateway::guard::now_ms(),
                agent: agent.clone(),
                session: warden_core::SessionId::from_raw("quarantine"),
                body: warden_core::EventBody::AgentChanged {
                    change: change.as_str().to_owned(),
                },
            };
            drop(journal.append_queued(&event));
            Ok::<(), std::convert::Infallible>(())
        });
        match result {
            // Agents that never had a token (stdio, sandboxes), or already lost it.
            Ok(())
            | Err(
                warden_gateway::identity::IdentityError::UnknownAgent(_)
                | warden_gateway::identity::IdentityError::AlreadyRevoked(_),
            ) => {}
            Err(err) => {
                tracing::warn!(agent = %entry.agent, %err, "could not revoke the quarantined agent's token");
            }
        }
    }));
}
