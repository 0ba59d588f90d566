//! The seccomp layer as the plan asks for it: the deny list always, user notification for
//! process starts, connections and raw or datagram sockets when Warden decides them.

use std::os::fd::OwnedFd;

use crate::plan::{Layer, Plan};
use crate::seccomp::Spec;

/// The installed filter.
pub(crate) struct Installed {
    /// The notification fd, to hand to Warden.
    pub(crate) listener: Option<OwnedFd>,
    /// What is in force.
    pub(crate) layers: Vec<Layer>,
}

/// The filter for `plan`.
pub fn spec(plan: &Plan) -> Spec {
    Spec {
        deny: Spec::default_deny(),
        notify_exec: plan.decide_exec,
        notify_connect: plan.decide_connect,
        notify_sockets: plan.decide_connect,
    }
}

/// Compiles and installs the filter on the calling process. Sets `no_new_privs`.
pub(crate) fn install(plan: &Plan) -> Result<Installed, String> {
    let spec = spec(plan);
    let program = spec
        .compile()
        .map_err(|e| format!("compiling the seccomp filter: {e}"))?;
    let listener = program
        .install()
        .map_err(|e| format!("installing the seccomp filter: {e}"))?;
    let mut layers = vec![Layer::Seccomp];
    if listener.is_some() {
        layers.push(Layer::SeccompNotify);
    }
    Ok(Installed { listener, layers })
}
