//! The agent's filesystem view, built by the sandbox's PID 1 inside its own mount namespace.
//!
//! A fresh tmpfs becomes the root; the host's root stays reachable at `/oldroot` only while the
//! view is assembled. Each path of the plan is bind-mounted from there, read-only unless the
//! plan says otherwise, always `nosuid` and `nodev` (recursively, submounts included). Paths
//! Warden keeps for itself are covered with empty read-only mounts. `/tmp` is private, `/dev`
//! holds only harmless devices, `/proc` shows only the sandbox's processes. At the end the
//! host's root is detached: nothing outside the view has a path any more.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::inside::{cstr, under};
use crate::plan::Plan;

type Step<T> = Result<T, String>;

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// The kernel's `struct mount_attr` (not in every libc version).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn os(what: impl std::fmt::Display) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Step<()> {
    let source = source.map(cstr).transpose()?;
    let target_c = cstr(target)?;
    let fstype = fstype
        .map(|f| CString::new(f).map_err(|e| e.to_string()))
        .transpose()?;
    let data = data
        .map(|d| CString::new(d).map_err(|e| e.to_string()))
        .transpose()?;
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is a valid NUL-terminated string or null, alive for the call.
    let rc = unsafe {
        libc::mount(
            ptr(&source),
            target_c.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    if rc != 0 {
        return Err(os(format_args!("mounting {}", target.display())));
    }
    Ok(())
}

/// Sets mount attributes on `target` and, with `recursive`, on every mount below it.
fn set_attrs(target: &Path, set: u64, recursive: bool) -> Step<()> {
    let path = cstr(target)?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: `path` is a valid C string and `attr` a valid mount_attr of the size given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(os(format_args!(
            "restricting the mount {}",
            target.display()
        )));
    }
    Ok(())
}

fn pivot_root(new_root: &Path, put_old: &Path) -> Step<()> {
    let (a, b) = (cstr(new_root)?, cstr(put_old)?);
    // SAFETY: two valid C strings.
    if unsafe { libc::syscall(libc::SYS_pivot_root, a.as_ptr(), b.as_ptr()) } != 0 {
        return Err(os("changing the root (pivot_root)"));
    }
    Ok(())
}

fn umount_detach(target: &Path) -> Step<()> {
    let t = cstr(target)?;
    // SAFETY: a valid C string.
    if unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(os(format_args!("detaching {}", target.display())));
    }
    Ok(())
}

fn chdir(path: &Path) -> Step<()> {
    std::env::set_current_dir(path).map_err(|e| format!("entering {}: {e}", path.display()))
}

fn mkdir_all(path: &Path) -> Step<()> {
    fs::create_dir_all(path).map_err(|e| format!("creating {}: {e}", path.display()))
}

/// Creates what a bind needs to be mounted on: a directory for a directory, an empty file
/// otherwise.
fn mount_point_like(source: &Path, target: &Path) -> Step<()> {
    if let Some(parent) = target.parent() {
        mkdir_all(parent)?;
    }
    let meta = fs::metadata(source).map_err(|e| format!("{}: {e}", source.display()))?;
    if meta.is_dir() {
        mkdir_all(target)
    } else if !target.exists() {
        fs::write(target, b"").map_err(|e| format!("creating {}: {e}", target.display()))
    } else {
        Ok(())
    }
}

/// Builds the view and makes it the root. Runs as PID 1 of the sandbox, with capabilities in
/// the sandbox's user namespace and before dropping to the agent's user.
pub(crate) fn build_root(plan: &Plan) -> Step<()> {
    // Nothing done here may reach the host's mount table.
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    // A tmpfs on /tmp of this namespace is the staging area; after the first pivot it is
    // `/`, with the host's root (its real /tmp included) at /oldroot.
    let base = Path::new("/tmp");
    mount(
        Some(Path::new("tmpfs")),
        base,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=0755"),
    )?;
    chdir(base)?;
    mkdir_all(Path::new("newroot"))?;
    mkdir_all(Path::new("oldroot"))?;
    mount(
        Some(Path::new("newroot")),
        Path::new("newroot"),
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )?;
    pivot_root(base, Path::new("oldroot"))?;
    chdir(Path::new("/"))?;
    let old = Path::new("/oldroot");
    let new = Path::new("/newroot");

    // The private /tmp first: binds may lie below it (a workspace under /tmp).
    let tmp = new.join("tmp");
    mkdir_all(&tmp)?;
    mount(
        Some(Path::new("tmpfs")),
        &tmp,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=1777,size=256m"),
    )?;
    for bind in &plan.binds {
        let source = under(old, &bind.source);
        let target = under(new, &bind.target);
        mount_point_like(&source, &target)?;
        mount(
            Some(&source),
            &target,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?;
        let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        if !bind.writable {
            attrs |= MOUNT_ATTR_RDONLY;
        }
        set_attrs(&target, attrs, true)?;
    }

    let etc = new.join("etc");
    for (name, content) in &plan.etc {
        if name.contains('/') || name.starts_with('.') {
            return Err(format!("file name {name:?} for /etc is not a plain name"));
        }
        mkdir_all(&etc)?;
        let path = etc.join(name);
        fs::write(&path, content).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    for (link, to) in &plan.symlinks {
        let at = under(new, link);
        if let Some(parent) = at.parent() {
            mkdir_all(parent)?;
        }
        symlink(to, &at).map_err(|e| format!("creating the link {}: {e}", link.display()))?;
    }

    // Warden's own files, if a bind included them: covered by empty read-only mounts.
    fs::write("/empty", b"").map_err(|e| format!("creating /empty: {e}"))?;
    for hidden in &plan.hidden {
        let target = under(new, hidden);
        let Ok(meta) = fs::symlink_metadata(&target) else {
            continue; // not in the view at all
        };
        if meta.is_dir() {
            mount(
                Some(Path::new("tmpfs")),
                &target,
                Some("tmpfs"),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY,
                Some("mode=0000,size=4k"),
            )?;
        } else {
            mount(
                Some(Path::new("/empty")),
                &target,
                None,
                libc::MS_BIND,
                None,
            )?;
            set_attrs(
                &target,
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
                false,
            )?;
        }
    }

    build_dev(old, &new.join("dev"))?;
    build_run(plan, &new.join("run/warden"))?;

    let proc = new.join("proc");
    mkdir_all(&proc)?;
    mount(
        Some(Path::new("proc")),
        &proc,
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )?;

    umount_detach(old)?;
    chdir(new)?;
    pivot_root(Path::new("."), Path::new("."))?;
    umount_detach(Path::new("."))?;
    chdir(Path::new("/"))?;
    // The root itself: nothing may be created beside the binds.
    set_attrs(
        Path::new("/"),
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        false,
    )?;
    Ok(())
}

/// A minimal `/dev`: the harmless character devices, a private devpts, `/dev/shm`.
fn build_dev(old: &Path, dev: &Path) -> Step<()> {
    mkdir_all(dev)?;
    mount(
        Some(Path::new("tmpfs")),
        dev,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("mode=0755,size=64k"),
    )?;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let source = old.join("dev").join(name);
        if !source.exists() {
            continue;
        }
        let target = dev.join(name);
        fs::write(&target, b"").map_err(|e| format!("creating {}: {e}", target.display()))?;
        mount(Some(&source), &target, None, libc::MS_BIND, None)?;
        set_attrs(&target, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false)?;
    }
    let pts = dev.join("pts");
    mkdir_all(&pts)?;
    // A private devpts instance: the host's terminals are not in it.
    mount(
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    let shm = dev.join("shm");
    mkdir_all(&shm)?;
    mount(
        Some(Path::new("tmpfs")),
        &shm,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("mode=1777,size=64m"),
    )?;
    let links = [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ];
    for (name, to) in links {
        symlink(to, dev.join(name)).map_err(|e| format!("creating /dev/{name}: {e}"))?;
    }
    Ok(())
}

/// `/run/warden`: the files Warden hands the agent (its MCP client configuration), read-only.
fn build_run(plan: &Plan, dir: &Path) -> Step<()> {
    mkdir_all(dir)?;
    mount(
        Some(Path::new("tmpfs")),
        dir,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("mode=0755,size=1m"),
    )?;
    for (name, content) in &plan.files {
        if name.contains('/') || name.starts_with('.') {
            return Err(format!(
                "file name {name:?} for /run/warden is not a plain name"
            ));
        }
        let path: PathBuf = dir.join(name);
        fs::write(&path, content).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    set_attrs(
        dir,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        false,
    )
}
