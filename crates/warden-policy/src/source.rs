//! Policy and schema sources: reading a folder, and turning Cedar's byte spans into places a
//! human can find.

use std::path::Path;

use crate::error::{PolicyError, Position, SourceDiagnostic};

/// One source file: its name (as used in policy ids and messages) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The file name, e.g. `agents.cedar`.
    pub name: String,
    /// The file's text.
    pub text: String,
}

impl SourceFile {
    /// A source from a name and a text.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// The `*.cedar` and `*.cedarschema` files of a folder (not its subfolders), each list
/// sorted by name.
pub(crate) fn read_dir(dir: &Path) -> Result<(Vec<SourceFile>, Vec<SourceFile>), PolicyError> {
    let entries = std::fs::read_dir(dir).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            PolicyError::MissingFolder {
                path: dir.to_path_buf(),
            }
        } else {
            PolicyError::Unreadable {
                path: dir.to_path_buf(),
                source,
            }
        }
    })?;
    let mut policies = Vec::new();
    let mut schemas = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| PolicyError::Unreadable {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let list = match path.extension().and_then(|e| e.to_str()) {
            Some("cedar") => &mut policies,
            Some("cedarschema") => &mut schemas,
            _ if looks_like_policy(&path, &name) => {
                return Err(PolicyError::NotLoaded { path });
            }
            _ => continue,
        };
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|source| PolicyError::Unreadable { path, source })?;
        list.push(SourceFile { name, text });
    }
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    schemas.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((policies, schemas))
}

/// A name with `.cedar` in it, in any case, or a subfolder holding `*.cedar` files.
fn looks_like_policy(path: &Path, name: &str) -> bool {
    if path.is_dir() {
        return std::fs::read_dir(path).is_ok_and(|mut entries| {
            entries.any(|e| {
                e.is_ok_and(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.to_ascii_lowercase().contains(".cedar"))
                })
            })
        });
    }
    name.to_ascii_lowercase().contains(".cedar")
}

/// `text` with every `//` comment replaced by spaces, byte for byte, so offsets still agree
/// with the original.
fn blank_comments(text: &str) -> String {
    let mut out = text.as_bytes().to_vec();
    let mut in_string = false;
    let mut i = 0;
    while i < out.len() {
        let b = out[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b'/' && out.get(i + 1) == Some(&b'/') {
            while i < out.len() && out[i] != b'\n' {
                out[i] = b' ';
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    // INVARIANT: only whole comments (up to a newline) were replaced, so every multi-byte
    // character was replaced entirely or not at all and the bytes are still UTF-8.
    String::from_utf8_lossy(&out).into_owned()
}

/// The byte offset where each policy starts in `file_text`, given the policies' own texts in
/// source order (as Cedar reports them). Each text is a slice of the file; searching in order,
/// outside comments, finds each one where it really is.
pub(crate) fn policy_offsets(file_text: &str, policy_texts: &[String]) -> Vec<usize> {
    let haystack = blank_comments(file_text);
    let mut cursor = 0;
    policy_texts
        .iter()
        .map(|p| {
            let needle = blank_comments(p);
            let at = haystack
                .get(cursor..)
                .and_then(|rest| rest.find(needle.as_str()))
                .map_or(cursor, |i| cursor + i);
            cursor = at + needle.len();
            at
        })
        .collect()
}

/// A Cedar diagnostic located in `file` (whose text its labels index into).
pub(crate) fn diagnostic_in(
    file: &str,
    text: &str,
    diag: &dyn miette::Diagnostic,
    fallback: Option<Position>,
) -> SourceDiagnostic {
    let position = first_label_offset(diag)
        .map(|offset| Position::of_offset(text, offset))
        .or(fallback);
    SourceDiagnostic {
        file: file.to_owned(),
        position,
        message: diag.to_string(),
        help: diag.help().map(|h| h.to_string()),
    }
}

/// A Cedar diagnostic whose file is not known in advance: the file is the one (among
/// `files`) whose text under the diagnostic's first label is what the diagnostic shows.
pub(crate) fn diagnostic_among(
    files: &[(String, &str)],
    diag: &dyn miette::Diagnostic,
    default_file: &str,
) -> SourceDiagnostic {
    let shown = diag
        .labels()
        .and_then(|mut labels| labels.next())
        .and_then(|label| {
            let source = diag.source_code()?;
            let contents = source.read_span(label.inner(), 0, 0).ok()?;
            Some((label.offset(), contents.data().to_vec()))
        });
    if let Some((offset, bytes)) = shown {
        for (name, text) in files {
            let end = offset + bytes.len();
            if text.as_bytes().get(offset..end) == Some(bytes.as_slice()) {
                return diagnostic_in(name, text, diag, None);
            }
        }
    }
    SourceDiagnostic {
        file: default_file.to_owned(),
        position: None,
        message: diag.to_string(),
        help: diag.help().map(|h| h.to_string()),
    }
}

fn first_label_offset(diag: &dyn miette::Diagnostic) -> Option<usize> {
    diag.labels()?.next().map(|l| l.offset())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_blanked_but_strings_kept() {
        let text = "a // x \"y\"\n\"// not\" // é\nb";
        let blank = blank_comments(text);
        assert_eq!(blank.len(), text.len());
        assert_eq!(
            blank,
            format!("a{}\n\"// not\" {}\nb", " ".repeat(9), " ".repeat(5))
        );
    }

    #[test]
    fn policy_offsets_skip_copies_in_comments() {
        let p = "permit(principal, action, resource);".to_owned();
        let text = format!("// {p}\n{p}\n\n{p}");
        let offsets = policy_offsets(&text, &[p.clone(), p.clone()]);
        assert_eq!(offsets, vec![p.len() + 4, 2 * p.len() + 6]);
    }
}
