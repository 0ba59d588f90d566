//! Landlock: the filesystem view enforced a second time, by the kernel's access control rather
//! than by what is mounted, plus TCP connect rules and scoping of signals and abstract sockets.
//!
//! The ruleset asks for everything the crate knows and the kernel enforces what its ABI offers
//! (best effort); the layers actually in force are returned, so a configuration that requires
//! one the kernel lacks refuses to start instead of running with less.

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};

use crate::plan::{Layer, Plan};

type Step<T> = Result<T, String>;

/// The Landlock ABI version of the running kernel, `None` when Landlock is unavailable.
pub fn abi_version() -> Option<i32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the documented probe: a null attribute with size 0 and the VERSION flag.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    (v > 0).then(|| i32::try_from(v).unwrap_or(i32::MAX))
}

/// The layers a kernel with this ABI version can enforce.
pub fn layers_for(abi: Option<i32>) -> Vec<Layer> {
    let mut layers = Vec::new();
    if let Some(v) = abi {
        layers.push(Layer::Landlock);
        if v >= 4 {
            layers.push(Layer::LandlockNet);
        }
        if v >= 6 {
            layers.push(Layer::LandlockScope);
        }
    }
    layers
}

fn ll(what: &str) -> impl FnOnce(landlock::RulesetError) -> String + '_ {
    move |e| format!("Landlock ({what}): {e}")
}

/// Restricts the calling process (and everything it will start) to the plan's view. Runs in the
/// agent's process after the mounts, before seccomp and exec.
pub(crate) fn restrict(plan: &Plan) -> Step<Vec<Layer>> {
    let abi = ABI::V6;
    let read = AccessFs::from_read(abi);
    let all = AccessFs::from_all(abi);
    let ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(ll("filesystem rights"))?
        .handle_access(AccessNet::ConnectTcp)
        .map_err(ll("network rights"))?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)
        .map_err(ll("scopes"))?;
    let mut created = ruleset.create().map_err(ll("creating the ruleset"))?;
    let dev = read | AccessFs::WriteFile | AccessFs::IoctlDev;
    // Inside the view, binds sit at their targets.
    let mut grants: Vec<(&std::path::Path, _)> = plan
        .binds
        .iter()
        .map(|b| (b.target.as_path(), if b.writable { all } else { read }))
        .collect();
    grants.extend([
        // Listing directories reveals nothing the mount view has not already chosen to show.
        (std::path::Path::new("/"), AccessFs::ReadDir.into()),
        (std::path::Path::new("/tmp"), all),
        (std::path::Path::new("/dev/shm"), all),
        // Devices: read, write (/dev/null), terminal ioctls; nothing else there is writable.
        (std::path::Path::new("/dev"), dev),
        (std::path::Path::new("/proc"), read | AccessFs::WriteFile),
        (std::path::Path::new("/run/warden"), read),
    ]);
    let etc: Vec<std::path::PathBuf> = plan
        .etc
        .iter()
        .map(|(name, _)| std::path::Path::new("/etc").join(name))
        .collect();
    grants.extend(etc.iter().map(|p| (p.as_path(), AccessFs::ReadFile.into())));
    for (path, access) in grants {
        let fd = PathFd::new(path).map_err(|e| format!("Landlock ({}): {e}", path.display()))?;
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(ll("adding a path"))?;
    }
    let ports = plan
        .listeners
        .iter()
        .map(|l| l.port)
        .chain(plan.local_ports.iter().copied());
    for port in ports {
        created = created
            .add_rule(NetPort::new(port, AccessNet::ConnectTcp))
            .map_err(ll("adding a port"))?;
    }
    let status = created.restrict_self().map_err(ll("enforcing"))?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Ok(Vec::new());
    }
    Ok(layers_for(abi_version()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_versions_map_to_layers() {
        assert!(layers_for(None).is_empty());
        assert_eq!(layers_for(Some(3)), [Layer::Landlock]);
        assert_eq!(
            layers_for(Some(7)),
            [Layer::Landlock, Layer::LandlockNet, Layer::LandlockScope]
        );
    }
}
