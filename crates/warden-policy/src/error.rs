//! Load errors, each pointing at the file (and where known the line and column) at fault.

use std::fmt;
use std::path::PathBuf;

/// A place in a source file: line and column, both counted from 1; columns count characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, in characters.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text` (clamped to the text, floored to a character).
    pub(crate) fn of_offset(text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Self { line, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One problem in a policy, schema or cases file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDiagnostic {
    /// The file as the operator knows it (`policies/agents.cedar`).
    pub file: String,
    /// Where in the file, when the problem has a place.
    pub position: Option<Position>,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when the checker knows.
    pub help: Option<String>,
}

impl fmt::Display for SourceDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(f, "{}:{}: {}", self.file, p, self.message)?,
            None => write!(f, "{}: {}", self.file, self.message)?,
        }
        if let Some(help) = &self.help {
            write!(f, " (help: {help})")?;
        }
        Ok(())
    }
}

/// Every problem found in one pass over the sources, in file order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<SourceDiagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Two policies that claim the same id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateIdError {
    /// The id both claim.
    pub id: String,
    /// Where the first one starts (`file:line:column`).
    pub first: String,
    /// Where the second one starts.
    pub second: String,
}

/// Why a policy folder, a set of sources, or a cases file could not be loaded.
///
/// A failed load changes nothing: the caller keeps whatever policy it had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The policy folder does not exist.
    #[error("policy folder {} does not exist", path.display())]
    MissingFolder {
        /// The folder.
        path: PathBuf,
    },
    /// Something in the policy folder looks like policy but would not be loaded (a subfolder
    /// with `.cedar` files, `x.Cedar`, `x.cedar.bak`). Refused, because a forbid that is
    /// silently not loaded protects nothing.
    #[error(
        "{} looks like policy but would not be loaded (only *.cedar and *.cedarschema files \
         directly in the folder are); move or rename it",
        path.display()
    )]
    NotLoaded {
        /// The file or folder.
        path: PathBuf,
    },
    /// A folder or file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The folder or file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// There is no `*.cedar` file to load.
    #[error("no policy files (*.cedar) in {origin}")]
    NoPolicies {
        /// The folder (or "the given sources").
        origin: String,
    },
    /// Policy or schema files that do not parse.
    #[error("syntax errors:\n{0}")]
    Parse(Diagnostics),
    /// Schema files that parse but do not form a schema together with Warden's base schema.
    #[error("schema errors:\n{0}")]
    Schema(Diagnostics),
    /// Policies that do not validate against the schema (strict mode).
    #[error("policies do not validate against the schema:\n{0}")]
    Validation(Diagnostics),
    /// Two policies with the same id.
    #[error("duplicate policy id {:?}: at {} and at {}", .0.id, .0.first, .0.second)]
    DuplicateId(DuplicateIdError),
    /// A policy test cases file that is not valid.
    #[error("bad cases file: {0}")]
    Cases(SourceDiagnostic),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let text = "ab\ncdé\nf";
        assert_eq!(
            Position::of_offset(text, 0),
            Position { line: 1, column: 1 }
        );
        assert_eq!(
            Position::of_offset(text, 3),
            Position { line: 2, column: 1 }
        );
        // 'é' is two bytes; the offset after it is column 4.
        assert_eq!(
            Position::of_offset(text, 7),
            Position { line: 2, column: 4 }
        );
        assert_eq!(
            Position::of_offset(text, 100),
            Position { line: 3, column: 2 }
        );
    }
}
