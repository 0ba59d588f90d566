//! `warden learn`: a least-privilege policy and a `first_seen` baseline proposed from what an
//! agent was allowed to do and did, shown as a diff for a human to review. Nothing is written
//! unless `--write-policy` or `--write-baseline` says where.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use warden_core::{ActionKind, AgentId};
use warden_journal::{JournalReader, Query};
use warden_monitor::learn::{DeclaredArguments, Learned, Recorded, ValueRule, declaration_probe};
use warden_policy::{PolicySet, SourceFile};

use crate::config::Config;

/// Records read from the journal per query.
const PAGE: usize = 1000;

#[derive(clap::Args)]
pub struct Args {
    /// The agent whose recorded behaviour to learn from.
    #[arg(long)]
    agent: String,
    /// The configuration file (default: ./warden.toml if present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The journal file (default: the one named in the configuration).
    #[arg(long)]
    journal: Option<PathBuf>,
    /// First journal record to learn from (inclusive).
    #[arg(long, value_name = "SEQ")]
    from: Option<u64>,
    /// Last journal record to learn from (inclusive).
    #[arg(long, value_name = "SEQ")]
    to: Option<u64>,
    /// Learn only from this session (repeat for several): its id, or the first characters of
    /// it as `warden audit log` shows them.
    #[arg(long = "session", value_name = "ID")]
    sessions: Vec<String>,
    /// Write the proposed policy to FILE (default: only show the diff against
    /// POLICY_DIR/learned-AGENT.cedar).
    #[arg(long, value_name = "FILE")]
    write_policy: Option<PathBuf>,
    /// Write the proposed `first_seen` baseline (a warden.toml fragment) to FILE.
    #[arg(long, value_name = "FILE")]
    write_baseline: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let agent = AgentId::new(args.agent.as_str())?;
    let config = Config::load(args.config.as_deref())?;
    let journal = args
        .journal
        .clone()
        .unwrap_or_else(|| config.journal_path());
    let policy_dir = config.policy_dir();
    let from = args.from.unwrap_or(1).max(1);
    let to = args.to.unwrap_or(u64::MAX);
    if from > to {
        bail!("--from {from} is after --to {to}: the range is empty");
    }

    let read = read_journal(&journal, &agent, from, to, &args.sessions)?;
    for (given, matched) in &read.sessions_matched {
        if matched.len() > 1 {
            let mut ids: Vec<&str> = matched.iter().map(String::as_str).collect();
            ids.sort_unstable();
            bail!(
                "--session {given} names {} sessions ({}): give more of its characters",
                ids.len(),
                ids.join(", ")
            );
        }
    }
    let learned = &read.learned;
    let (Some((first, last)), Some(times)) = (learned.seq_range(), learned.time_range()) else {
        bail!(
            "nothing to learn: the journal {} holds no allowed action of agent {agent} in \
             records #{from}..{}{} ({} records of the agent read, {} refused or asked). \
             Check --agent, widen --from/--to, or drop --session",
            journal.display(),
            if to == u64::MAX {
                "the end".to_owned()
            } else {
                format!("#{to}")
            },
            if args.sessions.is_empty() {
                String::new()
            } else {
                format!(" in sessions {}", args.sessions.join(", "))
            },
            read.records,
            learned.refused(),
        );
    };

    let schemas = read_sources(&policy_dir, "cedarschema")?;
    let declared = declared_arguments(learned, &schemas);
    let proposed = learned.policy(&agent, &declared);
    let policy_file = args
        .write_policy
        .clone()
        .unwrap_or_else(|| policy_dir.join(format!("learned-{agent}.cedar")));
    check_with_folder(&proposed, &policy_file, &policy_dir, schemas)?;

    say!(
        "warden learn: agent {agent}, journal {}, records #{first}..#{last}{}",
        journal.display(),
        if args.sessions.is_empty() {
            " (all sessions)".to_owned()
        } else {
            format!(" (sessions {})", args.sessions.join(", "))
        }
    );
    say!(
        "  records read: {} ({} decisions: {} allowed, {} refused or asked and not learned)",
        read.records,
        read.decisions,
        learned.allowed(),
        learned.refused()
    );
    say!(
        "  time range: {} .. {}",
        show_time(times.0),
        show_time(times.1)
    );
    for line in kind_summary(learned) {
        say!("  {line}");
    }
    say!("{}", arguments_summary(learned, &declared));

    say!();
    let current = read_existing(&policy_file)?;
    print_diff(&policy_file, current.as_deref(), &proposed);

    let baseline = baseline_toml(learned, &agent)?;
    say!();
    match &args.write_baseline {
        Some(file) => print_diff(file, read_existing(file)?.as_deref(), &baseline),
        None => {
            say!("first_seen baseline (a warden.toml fragment; --write-baseline FILE saves it):");
            for line in baseline.lines() {
                say!("  {line}");
            }
        }
    }

    say!();
    let mut wrote = Vec::new();
    if let Some(file) = &args.write_policy {
        std::fs::write(file, &proposed).with_context(|| format!("writing {}", file.display()))?;
        wrote.push(file.display().to_string());
    }
    if let Some(file) = &args.write_baseline {
        std::fs::write(file, &baseline).with_context(|| format!("writing {}", file.display()))?;
        wrote.push(file.display().to_string());
    }
    if wrote.is_empty() {
        say!(
            "nothing written: review the above, then run again with --write-policy FILE \
             and/or --write-baseline FILE"
        );
    } else {
        say!("wrote {}", wrote.join(" and "));
    }
    Ok(ExitCode::SUCCESS)
}

// === reading ===

struct Read {
    learned: Learned,
    /// The agent's records in the range (and sessions), of every kind.
    records: u64,
    decisions: u64,
    /// Each `--session` given, with the sessions it matched.
    sessions_matched: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
}

fn read_journal(
    path: &Path,
    agent: &AgentId,
    from: u64,
    to: u64,
    sessions: &[String],
) -> Result<Read> {
    let reader =
        JournalReader::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut query = Query {
        after_seq: from - 1,
        agent: Some(agent.clone()),
        limit: PAGE,
        ..Query::default()
    };
    let mut read = Read {
        learned: Learned::new(),
        records: 0,
        decisions: 0,
        sessions_matched: sessions
            .iter()
            .map(|s| (s.clone(), Default::default()))
            .collect(),
    };
    loop {
        let page = reader.records(&query)?;
        for record in &page {
            if record.seq > to {
                return Ok(read);
            }
            query.after_seq = record.seq;
            if !sessions.is_empty() {
                // An id as shown (its first characters) names the session it begins.
                let id = record.session.as_str();
                let mut wanted = false;
                for given in sessions
                    .iter()
                    .filter(|s| !s.is_empty() && id.starts_with(*s))
                {
                    wanted = true;
                    if let Some(matched) = read.sessions_matched.get_mut(given) {
                        matched.insert(id.to_owned());
                    }
                }
                if !wanted {
                    continue;
                }
            }
            read.records += 1;
            if record.kind == "decision" {
                read.decisions += 1;
            }
            read.learned.observe(&Recorded {
                seq: record.seq,
                time_ms: record.time_ms,
                kind: &record.kind,
                body: &record.body,
            })?;
        }
        if page.len() < PAGE {
            return Ok(read);
        }
    }
}

/// The `*.EXT` files of `dir` (not its subfolders), sorted by name; none if `dir` does not
/// exist.
fn read_sources(dir: &Path, ext: &str) -> Result<Vec<SourceFile>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|x| x == ext) {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            let name = p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            Ok(SourceFile::new(name, text))
        })
        .collect()
}

fn read_existing(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

// === checking ===

/// Which seen arguments the folder's schema lets a policy read as strings: each is probed by
/// strict validation itself.
fn declared_arguments(learned: &Learned, schemas: &[SourceFile]) -> DeclaredArguments {
    let declared = |kind| -> BTreeSet<String> {
        learned
            .argument_names(kind)
            .into_iter()
            .filter(|name| {
                declaration_probe(kind, name).is_some_and(|probe| {
                    PolicySet::from_sources(&[SourceFile::new("probe.cedar", probe)], schemas)
                        .is_ok()
                })
            })
            .collect()
    };
    DeclaredArguments {
        tool: declared(ActionKind::CallTool),
        prompt: declared(ActionKind::GetPrompt),
    }
}

/// The proposed file must load with the rest of the policy folder (in place of its current
/// version when it lives there): a proposal that would break `warden policy check` is refused.
fn check_with_folder(
    proposed: &str,
    file: &Path,
    dir: &Path,
    schemas: Vec<SourceFile>,
) -> Result<()> {
    let name = file.file_name().map_or_else(
        || "learned.cedar".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let same_dir = match (file.parent(), dir.canonicalize()) {
        (Some(parent), Ok(dir)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            parent.canonicalize().is_ok_and(|p| p == dir)
        }
        _ => false,
    };
    let mut policies: Vec<SourceFile> = read_sources(dir, "cedar")?
        .into_iter()
        .filter(|f| !(same_dir && f.name == name))
        .collect();
    policies.push(SourceFile::new(name, proposed));
    PolicySet::from_sources(&policies, &schemas).with_context(|| {
        format!(
            "the proposed policy does not load with the policies in {}",
            dir.display()
        )
    })?;
    Ok(())
}

// === showing ===

fn show_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// One line per action kind: its targets with how often each was used.
fn kind_summary(learned: &Learned) -> Vec<String> {
    let mut lines = Vec::new();
    for kind in learned.kinds() {
        let items: Vec<String> = if kind == ActionKind::Exec {
            learned
                .exec_targets()
                .into_iter()
                .map(|t| {
                    if t.is_directory() {
                        format!("{} ({} programs, {})", t.pattern, t.programs, t.count)
                    } else {
                        format!("{} ({})", t.pattern, t.count)
                    }
                })
                .collect()
        } else {
            learned
                .targets(kind)
                .map(|(target, u)| format!("{target} ({})", u.count))
                .collect()
        };
        let items: Vec<String> = items
            .iter()
            .map(|i| warden_core::escape_for_display(i).into_owned())
            .collect();
        lines.push(format!(
            "{kind}: {} {} — {}",
            items.len(),
            if items.len() == 1 {
                "target"
            } else {
                "targets"
            },
            items.join(", ")
        ));
    }
    lines
}

/// Which tool and prompt arguments the policy holds to what was seen, and which it leaves
/// free and why.
fn arguments_summary(learned: &Learned, declared: &DeclaredArguments) -> String {
    let mut held = BTreeSet::new();
    let mut free = std::collections::BTreeMap::new();
    for (kind, names) in [
        (ActionKind::CallTool, &declared.tool),
        (ActionKind::GetPrompt, &declared.prompt),
    ] {
        for (_, target) in learned.targets(kind) {
            for (name, arg) in target.arguments() {
                let shown = warden_core::escape_for_display(name).into_owned();
                match arg.rule() {
                    ValueRule::Any(why) => {
                        free.insert(shown, why);
                    }
                    _ if !names.contains(name) => {
                        free.insert(shown, "not declared as a String in the schema");
                    }
                    _ => {
                        held.insert(shown);
                    }
                }
            }
        }
    }
    let mut line = format!(
        "  arguments held to what was seen: {}",
        if held.is_empty() {
            "none".to_owned()
        } else {
            held.into_iter().collect::<Vec<_>>().join(", ")
        }
    );
    if !free.is_empty() {
        let free: Vec<String> = free.iter().map(|(n, why)| format!("{n} ({why})")).collect();
        line.push_str(&format!("; left free: {}", free.join(", ")));
    }
    line
}

/// The agent's baseline as the `[monitor.detectors.first_seen.baseline.AGENT]` table.
fn baseline_toml(learned: &Learned, agent: &AgentId) -> Result<String> {
    let table = serde_json::json!({
        "monitor": { "detectors": { "first_seen": learned.baseline_config(agent) } }
    });
    let value = toml::Value::try_from(&table).context("writing the baseline as TOML")?;
    let mut body = toml::to_string(&value).context("writing the baseline as TOML")?;
    if !body.ends_with('\n') {
        body.push('\n');
    }
    Ok(format!(
        "# first_seen baseline of agent {agent}, learned by `warden learn`. It adds first_seen\n\
         # to the detectors that run by default; it turns none of them off.\n{body}"
    ))
}

fn print_diff(path: &Path, current: Option<&str>, proposed: &str) {
    let shown = path.display();
    let old = current.unwrap_or("");
    if current.is_some() && old == proposed {
        say!("{shown}: no change");
        return;
    }
    say!(
        "--- {shown} ({})",
        if current.is_some() {
            "current"
        } else {
            "does not exist"
        }
    );
    say!("+++ {shown} (proposed)");
    for line in unified_diff(old, proposed, 3) {
        say!("{line}");
    }
}

// === line diff ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    Keep(usize, usize),
    Remove(usize),
    Add(usize),
}

/// Past this many cells the LCS table is not built: the middle is shown replaced whole.
const MAX_LCS_CELLS: usize = 4_000_000;

/// The edits turning `a` into `b`: common head and tail kept, the middle by longest common
/// subsequence of lines.
fn edits(a: &[&str], b: &[&str]) -> Vec<Edit> {
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let mut out: Vec<Edit> = (0..head).map(|i| Edit::Keep(i, i)).collect();
    if ma.len().saturating_mul(mb.len()) > MAX_LCS_CELLS {
        out.extend((0..ma.len()).map(|i| Edit::Remove(head + i)));
        out.extend((0..mb.len()).map(|j| Edit::Add(head + j)));
    } else {
        // lcs[i][j]: the LCS length of ma[i..] and mb[j..].
        let w = mb.len() + 1;
        let mut lcs = vec![0u32; (ma.len() + 1) * w];
        for i in (0..ma.len()).rev() {
            for j in (0..mb.len()).rev() {
                lcs[i * w + j] = if ma[i] == mb[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < ma.len() || j < mb.len() {
            if i < ma.len() && j < mb.len() && ma[i] == mb[j] {
                out.push(Edit::Keep(head + i, head + j));
                i += 1;
                j += 1;
            } else if j < mb.len() && (i == ma.len() || lcs[i * w + j + 1] >= lcs[(i + 1) * w + j])
            {
                out.push(Edit::Add(head + j));
                j += 1;
            } else {
                out.push(Edit::Remove(head + i));
                i += 1;
            }
        }
    }
    let (ta, tb) = (a.len() - tail, b.len() - tail);
    out.extend((0..tail).map(|k| Edit::Keep(ta + k, tb + k)));
    out
}

/// Hunks in unified format (`@@ -l,n +l,n @@`, then ` `, `-` and `+` lines) with `context`
/// lines around each change; empty when the texts are equal.
fn unified_diff(old: &str, new: &str, context: usize) -> Vec<String> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let script = edits(&a, &b);
    let changed: Vec<usize> = script
        .iter()
        .enumerate()
        .filter(|(_, e)| !matches!(e, Edit::Keep(..)))
        .map(|(i, _)| i)
        .collect();
    let mut out = Vec::new();
    let mut k = 0;
    while k < changed.len() {
        // A hunk spans changes closer than two contexts apart.
        let start = changed[k].saturating_sub(context);
        let mut end = changed[k];
        while k + 1 < changed.len() && changed[k + 1] <= end + 2 * context + 1 {
            k += 1;
            end = changed[k];
        }
        let end = (end + context + 1).min(script.len());
        k += 1;
        let hunk = &script[start..end];
        // Where the hunk starts in each file: the first line it shows there, or the line
        // before it when it shows none (unified format's convention).
        let (mut a_start, mut b_start) = (None, None);
        let (mut a_len, mut b_len) = (0, 0);
        for e in hunk {
            match *e {
                Edit::Keep(i, j) => {
                    a_start.get_or_insert(i);
                    b_start.get_or_insert(j);
                    a_len += 1;
                    b_len += 1;
                }
                Edit::Remove(i) => {
                    a_start.get_or_insert(i);
                    a_len += 1;
                }
                Edit::Add(j) => {
                    b_start.get_or_insert(j);
                    b_len += 1;
                }
            }
        }
        let position = |start: Option<usize>, len: usize, before: usize| match start {
            Some(s) if len > 0 => s + 1,
            _ => before,
        };
        let before = |side_a: bool| {
            script[..start]
                .iter()
                .filter(|e| match e {
                    Edit::Keep(..) => true,
                    Edit::Remove(_) => side_a,
                    Edit::Add(_) => !side_a,
                })
                .count()
        };
        out.push(format!(
            "@@ -{},{a_len} +{},{b_len} @@",
            position(a_start, a_len, before(true)),
            position(b_start, b_len, before(false))
        ));
        for e in hunk {
            out.push(match *e {
                Edit::Keep(i, _) => format!(" {}", a[i]),
                Edit::Remove(i) => format!("-{}", a[i]),
                Edit::Add(j) => format!("+{}", b[j]),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies a unified diff to `old`, to check that it says what changed.
    fn apply(old: &str, diff: &[String]) -> String {
        let a: Vec<&str> = old.lines().collect();
        let mut out: Vec<String> = Vec::new();
        let mut next = 0;
        for line in diff {
            if let Some(header) = line.strip_prefix("@@ -") {
                let (old_start, _) = header.split_once(',').unwrap();
                let old_start: usize = old_start.parse().unwrap();
                let old_len: usize = header
                    .split_once(',')
                    .unwrap()
                    .1
                    .split_once(' ')
                    .unwrap()
                    .0
                    .parse()
                    .unwrap();
                let first = if old_len == 0 {
                    old_start
                } else {
                    old_start - 1
                };
                out.extend(a[next..first].iter().map(|s| s.to_string()));
                next = first;
            } else if let Some(kept) = line.strip_prefix(' ') {
                assert_eq!(a[next], kept);
                out.push(kept.to_owned());
                next += 1;
            } else if let Some(removed) = line.strip_prefix('-') {
                assert_eq!(a[next], removed);
                next += 1;
            } else if let Some(added) = line.strip_prefix('+') {
                out.push(added.to_owned());
            }
        }
        out.extend(a[next..].iter().map(|s| s.to_string()));
        out.join("\n")
    }

    #[test]
    fn a_diff_applied_to_the_old_text_gives_the_new() {
        let lines = |n: usize, f: &dyn Fn(usize) -> String| -> String {
            (0..n).map(f).collect::<Vec<_>>().join("\n")
        };
        let base = lines(30, &|i| format!("line {i}"));
        let cases = [
            (String::new(), base.clone()),
            (base.clone(), String::new()),
            (
                base.clone(),
                base.replace("line 3\n", "")
                    .replace("line 20", "line twenty"),
            ),
            (base.clone(), format!("header\n{base}\nfooter")),
            (base.clone(), lines(30, &|i| format!("line {}", 29 - i))),
            ("a\nb\nc".to_owned(), "a\nx\nc".to_owned()),
        ];
        for (old, new) in cases {
            let diff = unified_diff(&old, &new, 3);
            assert!(!diff.is_empty());
            assert_eq!(apply(&old, &diff), new, "{diff:#?}");
        }
        assert!(unified_diff(&base, &base, 3).is_empty());
    }

    #[test]
    fn a_session_is_named_by_its_first_characters_and_each_match_is_counted() {
        use warden_core::{Event, EventBody, SessionId};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = warden_journal::Journal::open(&path, Default::default()).unwrap();
        for session in ["aaaa1111", "aaaa2222", "bbbb3333"] {
            journal
                .append(&Event {
                    time_ms: 1,
                    agent: AgentId::new("alice").unwrap(),
                    session: SessionId::from_raw(session),
                    body: EventBody::SessionEnded {
                        detail: "closed".into(),
                    },
                })
                .wait()
                .unwrap();
        }
        journal.close_blocking().unwrap();
        let agent = AgentId::new("alice").unwrap();
        let given = ["aaaa".to_owned(), "bbbb3".to_owned(), "cccc".to_owned()];
        let read = read_journal(&path, &agent, 1, u64::MAX, &given).unwrap();
        assert_eq!(read.records, 3);
        let count = |g: &str| read.sessions_matched[g].len();
        assert_eq!((count("aaaa"), count("bbbb3"), count("cccc")), (2, 1, 0));
    }

    #[test]
    fn hunks_are_separate_when_changes_are_far_apart() {
        let old: Vec<String> = (0..40).map(|i| format!("l{i}")).collect();
        let mut new = old.clone();
        new[2] = "changed".into();
        new[30] = "changed too".into();
        let diff = unified_diff(&old.join("\n"), &new.join("\n"), 3);
        let headers: Vec<&String> = diff.iter().filter(|l| l.starts_with("@@")).collect();
        assert_eq!(headers, ["@@ -1,6 +1,6 @@", "@@ -28,7 +28,7 @@"]);
    }
}
