//! Confinement of every requested path to the served directory.
//!
//! The check is lexical first (`..` may not climb above the root, absolute paths must lie
//! inside it), then physical (the deepest existing ancestor, symbolic links resolved, must
//! still lie inside the root). It is defence in depth and not race-free against someone
//! swapping directories for links while a call runs; Warden's policy is the real gate.

use std::io;
use std::path::{Component, Path, PathBuf};

/// Why a path was refused, or why the root itself cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The root directory does not exist, is not a directory, or cannot be resolved.
    #[error("cannot serve {}: {source}", path.display())]
    RootUnusable {
        /// The directory that was asked for.
        path: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// An absolute path that does not lie inside the root.
    #[error("path {path:?} is outside the served directory")]
    OutsideRoot {
        /// The path as requested.
        path: String,
    },
    /// A relative path whose `..` components climb above the root.
    #[error("path {path:?} climbs out of the served directory")]
    Escape {
        /// The path as requested.
        path: String,
    },
    /// A path that leaves the root through a symbolic link.
    #[error("path {path:?} leads out of the served directory through a symbolic link")]
    LinkEscape {
        /// The path as requested.
        path: String,
    },
}

/// The directory this server serves; every path a tool touches lies inside it.
#[derive(Debug, Clone)]
pub struct Root {
    // INVARIANT: canonical (absolute, no `..`, no symbolic links), so `starts_with` on
    // canonical paths is a real containment test.
    dir: PathBuf,
}

impl Root {
    /// Opens `dir` as the served root; it must be an existing directory.
    pub fn open(dir: &Path) -> Result<Self, PathError> {
        let unusable = |source| PathError::RootUnusable {
            path: dir.to_path_buf(),
            source,
        };
        let canonical = dir.canonicalize().map_err(unusable)?;
        if !canonical.is_dir() {
            return Err(unusable(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            )));
        }
        Ok(Self { dir: canonical })
    }

    /// The canonical path of the root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Resolves a path requested by a client to a path inside the root.
    ///
    /// Relative paths are taken from the root; `""` and `"."` are the root itself. The result
    /// need not exist yet (`write_file` creates files).
    pub fn resolve(&self, requested: &str) -> Result<PathBuf, PathError> {
        let as_given = Path::new(requested);
        let relative = if as_given.is_absolute() {
            as_given
                .strip_prefix(&self.dir)
                .map_err(|_| PathError::OutsideRoot {
                    path: requested.to_owned(),
                })?
        } else {
            as_given
        };

        let mut clean = PathBuf::new();
        for component in relative.components() {
            match component {
                Component::Normal(part) => clean.push(part),
                Component::CurDir => {}
                Component::ParentDir => {
                    if !clean.pop() {
                        return Err(PathError::Escape {
                            path: requested.to_owned(),
                        });
                    }
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(PathError::OutsideRoot {
                        path: requested.to_owned(),
                    });
                }
            }
        }
        let full = self.dir.join(&clean);
        self.check_links(&full, requested)?;
        Ok(full)
    }

    /// Refuses a path whose deepest existing ancestor resolves outside the root.
    fn check_links(&self, full: &Path, requested: &str) -> Result<(), PathError> {
        let escape = || PathError::LinkEscape {
            path: requested.to_owned(),
        };
        let mut probe = Some(full);
        while let Some(candidate) = probe {
            match candidate.canonicalize() {
                Ok(real) if real.starts_with(&self.dir) => return Ok(()),
                Ok(_) => return Err(escape()),
                Err(_) => {
                    // A dangling link would let a write land wherever it points.
                    if candidate.symlink_metadata().is_ok() {
                        return Err(escape());
                    }
                    probe = candidate.parent();
                }
            }
        }
        // INVARIANT: the root itself exists and is canonical, so the walk ends above.
        Err(escape())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn root() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn relative_paths_stay_inside() {
        let (_guard, root) = root();
        assert_eq!(root.resolve("a/b.txt").unwrap(), root.dir().join("a/b.txt"));
        assert_eq!(root.resolve("a/../b").unwrap(), root.dir().join("b"));
        assert_eq!(root.resolve("").unwrap(), root.dir());
        assert_eq!(root.resolve(".").unwrap(), root.dir());
    }

    #[test]
    fn dot_dot_escape_is_refused() {
        let (_guard, root) = root();
        assert!(matches!(
            root.resolve("../etc/passwd"),
            Err(PathError::Escape { .. })
        ));
        assert!(matches!(
            root.resolve("a/../../x"),
            Err(PathError::Escape { .. })
        ));
    }

    #[test]
    fn absolute_paths_must_be_inside() {
        let (_guard, root) = root();
        assert!(matches!(
            root.resolve("/etc/passwd"),
            Err(PathError::OutsideRoot { .. })
        ));
        let inside = root.dir().join("x.txt");
        assert_eq!(root.resolve(inside.to_str().unwrap()).unwrap(), inside);
        let sneaky = format!("{}/../x", root.dir().display());
        assert!(matches!(
            root.resolve(&sneaky),
            Err(PathError::Escape { .. })
        ));
    }

    #[test]
    fn symbolic_links_out_are_refused() {
        let (_guard, root) = root();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.dir().join("out")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("missing"), root.dir().join("dangling"))
            .unwrap();
        assert!(matches!(
            root.resolve("out/secret"),
            Err(PathError::LinkEscape { .. })
        ));
        assert!(matches!(
            root.resolve("dangling"),
            Err(PathError::LinkEscape { .. })
        ));
    }

    #[test]
    fn missing_root_is_unusable() {
        let (guard, _root) = root();
        let missing = guard.path().join("nope");
        assert!(matches!(
            Root::open(&missing),
            Err(PathError::RootUnusable { .. })
        ));
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("..".to_owned()),
            Just(".".to_owned()),
            "[a-c]{1,2}".prop_map(|s| s),
        ]
    }

    proptest! {
        #[test]
        fn resolved_paths_never_leave_the_root(parts in proptest::collection::vec(segment(), 0..8)) {
            let (_guard, root) = root();
            let requested = parts.join("/");
            // Track depth by hand: the path escapes exactly when depth goes below zero.
            let mut depth: i64 = 0;
            let mut escapes = false;
            for part in &parts {
                match part.as_str() {
                    ".." => depth -= 1,
                    "." => {}
                    _ => depth += 1,
                }
                escapes |= depth < 0;
            }
            match root.resolve(&requested) {
                Ok(path) => {
                    prop_assert!(!escapes);
                    prop_assert!(path.starts_with(root.dir()));
                }
                Err(PathError::Escape { .. }) => prop_assert!(escapes),
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
        }
    }
}
