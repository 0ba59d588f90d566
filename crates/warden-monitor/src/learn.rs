//! Learning least privilege from recorded behaviour: what an agent was *allowed* to do, and
//! did, over a known-good stretch of the journal, turned into a Cedar policy that grants
//! exactly that and a `first_seen` baseline that flags anything else.
//!
//! Pure: the caller reads the journal and hands over its decision records; nothing here does
//! I/O. Refused and asked actions teach nothing (the agent never did them), so a learned
//! policy never grants what was refused during learning.
//!
//! The rules, so a reviewer can predict the output:
//! - One permit per target (tool, resource, prompt, host, program), scoped to that target.
//! - A string argument with at most [`MAX_VALUES`] distinct values is held to that set.
//!   With more, it is held to the values' common path prefix (cut back to its last `/`,
//!   `reports/`), and, when no value climbed with `..`, kept from climbing; without such a
//!   prefix it is not constrained. An argument seen only in some calls may stay absent.
//!   Values the journal redacted, and arguments not always strings, are not constrained.
//! - Tool and prompt arguments are constrained only when the deployment's schema declares
//!   them as `String` (Cedar records are closed); the caller says which are.
//! - HTTP requests: the ports and methods seen, and the path by the string rule (a `CONNECT`
//!   tunnel's path is `""`). Connections: the ports seen. Up to [`MAX_VALUES`] ports.
//! - Programs: each path exactly, except that a directory from which at least
//!   [`EXEC_COLLAPSE_AT`] distinct programs were started is granted whole (`/usr/bin/*`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{Map, Value, json};
use warden_core::{ActionKind, AgentId, EventBody};

/// Distinct values of an argument kept as an explicit set; more become a prefix.
pub const MAX_VALUES: usize = 8;

/// Distinct programs of one directory from which the whole directory is granted.
pub const EXEC_COLLAPSE_AT: usize = 4;

/// Why a record could not be learned from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LearnError {
    /// A decision record whose body Warden cannot read.
    #[error("journal record #{seq} is not a decision Warden can read: {detail}")]
    Malformed {
        /// The record.
        seq: u64,
        /// What is wrong with it.
        detail: String,
    },
}

/// One journal record, as much of it as learning needs.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    /// Its sequence number.
    pub seq: u64,
    /// When it was observed, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The record kind (`decision`, `outcome`, ...); only decisions are learned from.
    pub kind: &'a str,
    /// The event body.
    pub body: &'a Value,
}

/// The tool and prompt arguments the deployment's schema declares as `String`: only those
/// can be read by a policy.
#[derive(Debug, Default, Clone)]
pub struct DeclaredArguments {
    /// Names in `Arguments` (tool calls).
    pub tool: BTreeSet<String>,
    /// Names in `PromptArguments` (prompts).
    pub prompt: BTreeSet<String>,
}

/// What one agent was allowed to do and did.
#[derive(Debug, Default, Clone)]
pub struct Learned {
    /// By position of the kind in [`ActionKind::ALL`], then target.
    uses: BTreeMap<usize, BTreeMap<String, TargetUse>>,
    allowed: u64,
    refused: u64,
    seqs: Option<(u64, u64)>,
    times: Option<(i64, i64)>,
}

/// How one target was used.
#[derive(Debug, Clone)]
pub struct TargetUse {
    /// Allowed actions on it.
    pub count: u64,
    /// The first of them.
    pub first_seq: u64,
    /// The last of them.
    pub last_seq: u64,
    arguments: BTreeMap<String, ArgumentUse>,
}

impl TargetUse {
    fn new(seq: u64) -> Self {
        Self {
            count: 0,
            first_seq: seq,
            last_seq: seq,
            arguments: BTreeMap::new(),
        }
    }

    /// The arguments seen, by name.
    pub fn arguments(&self) -> impl Iterator<Item = (&str, &ArgumentUse)> {
        self.arguments.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// The values one argument of one target took. Bounded: past [`MAX_VALUES`] distinct
/// values only the common prefix is kept.
#[derive(Debug, Default, Clone)]
pub struct ArgumentUse {
    /// Calls that carried it.
    pub present: u64,
    distinct: BTreeSet<String>,
    /// More than [`MAX_VALUES`] distinct strings were seen.
    overflow: bool,
    /// Common prefix of the non-empty strings.
    prefix: Option<String>,
    empty: bool,
    climbs: bool,
    redacted: bool,
    numbers: BTreeSet<i64>,
    numbers_overflow: bool,
    /// A value that is neither a string nor an integer.
    other: bool,
}

/// What a policy may require of a string argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueRule {
    /// One of these values.
    OneOf(Vec<String>),
    /// A value under this prefix; `""` too when `or_empty`; never `..` when `no_climbing`.
    Prefix {
        /// The prefix, ending in `/`.
        prefix: String,
        /// The empty string was seen too.
        or_empty: bool,
        /// No value seen contained `..`.
        no_climbing: bool,
    },
    /// Anything: the reason why nothing narrower was learned.
    Any(&'static str),
}

impl ArgumentUse {
    fn observe(&mut self, value: &Value) {
        self.present += 1;
        match value {
            Value::String(s) => self.observe_str(s),
            Value::Number(n) => match n.as_i64() {
                Some(i) => {
                    if self.numbers.len() <= MAX_VALUES {
                        self.numbers.insert(i);
                    }
                    self.numbers_overflow |= self.numbers.len() > MAX_VALUES;
                }
                None => self.other = true,
            },
            _ => self.other = true,
        }
    }

    fn observe_str(&mut self, s: &str) {
        // "[REDACTED]", or "[REDACTED:kind]" in place of a credential.
        let marker = warden_core::redact::REDACTED.trim_end_matches(']');
        self.redacted |= s.contains(marker);
        self.climbs |= s.contains("..");
        if s.is_empty() {
            self.empty = true;
        } else {
            self.prefix = Some(match self.prefix.take() {
                None => s.to_owned(),
                Some(p) => common_prefix(&p, s).to_owned(),
            });
        }
        if !self.overflow {
            self.distinct.insert(s.to_owned());
            if self.distinct.len() > MAX_VALUES {
                self.overflow = true;
                self.distinct.clear();
            }
        }
    }

    fn strings_only(&self) -> bool {
        !self.other && self.numbers.is_empty()
    }

    /// What a policy may require of this argument as a string.
    pub fn rule(&self) -> ValueRule {
        if !self.strings_only() {
            let some_strings = self.overflow || !self.distinct.is_empty();
            return ValueRule::Any(if some_strings {
                "not always a string"
            } else {
                "not a string"
            });
        }
        if self.redacted {
            return ValueRule::Any("values redacted in the journal");
        }
        if !self.overflow {
            return ValueRule::OneOf(self.distinct.iter().cloned().collect());
        }
        let prefix = self
            .prefix
            .as_deref()
            .and_then(|p| p.rfind('/').map(|i| &p[..=i]))
            .unwrap_or("");
        if prefix.is_empty() {
            return ValueRule::Any("more than 8 values with no common path prefix");
        }
        ValueRule::Prefix {
            prefix: prefix.to_owned(),
            or_empty: self.empty,
            no_climbing: !self.climbs,
        }
    }

    /// The integers seen (ports), when they are all this argument held and few.
    pub fn numbers(&self) -> Option<Vec<i64>> {
        let only_numbers =
            !self.other && !self.numbers_overflow && self.distinct.is_empty() && !self.overflow;
        (only_numbers && !self.numbers.is_empty()).then(|| self.numbers.iter().copied().collect())
    }
}

/// The longest common prefix, on a character boundary.
fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let end = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or_else(|| a.len().min(b.len()), |((i, _), _)| i);
    &a[..end]
}

/// A program grant: one path, or a whole directory (`/usr/bin/*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecTarget {
    /// The path, or the directory followed by `*`.
    pub pattern: String,
    /// Distinct programs it covers.
    pub programs: usize,
    /// Allowed starts.
    pub count: u64,
    /// The first of them.
    pub first_seq: u64,
    /// The last of them.
    pub last_seq: u64,
    /// Some covered path contains `..`.
    climbs: bool,
}

impl ExecTarget {
    /// Whether it grants a directory rather than one program.
    pub fn is_directory(&self) -> bool {
        self.pattern.ends_with("/*")
    }
}

fn kind_index(kind: ActionKind) -> usize {
    ActionKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(ActionKind::ALL.len())
}

// === impl Learned: observing ===

impl Learned {
    /// Nothing learned yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Learns from records in journal order; records other than decisions are skipped.
    pub fn from_records<'a>(
        records: impl IntoIterator<Item = Recorded<'a>>,
    ) -> Result<Self, LearnError> {
        let mut learned = Self::new();
        for r in records {
            learned.observe(&r)?;
        }
        Ok(learned)
    }

    /// Learns from one record: an allowed decision is counted as a use of its target.
    pub fn observe(&mut self, record: &Recorded<'_>) -> Result<(), LearnError> {
        if record.kind != "decision" {
            return Ok(());
        }
        let malformed = |detail: String| LearnError::Malformed {
            seq: record.seq,
            detail,
        };
        let body: EventBody =
            serde_json::from_value(record.body.clone()).map_err(|e| malformed(e.to_string()))?;
        let EventBody::Decision {
            action,
            target,
            args,
            effect,
            ..
        } = body
        else {
            return Err(malformed("its body is not a decision".into()));
        };
        if !effect.permits() {
            self.refused += 1;
            return Ok(());
        }
        self.allowed += 1;
        let seq = record.seq;
        self.seqs = Some(
            self.seqs
                .map_or((seq, seq), |(a, b)| (a.min(seq), b.max(seq))),
        );
        let t = record.time_ms;
        self.times = Some(self.times.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
        let use_ = self
            .uses
            .entry(kind_index(action))
            .or_default()
            .entry(target)
            .or_insert_with(|| TargetUse::new(seq));
        use_.count += 1;
        use_.first_seq = use_.first_seq.min(seq);
        use_.last_seq = use_.last_seq.max(seq);
        let empty = Map::new();
        let args = args.as_object().unwrap_or(&empty);
        for (name, value) in args {
            if value.is_null() {
                // Null is an absent attribute to policy.
                continue;
            }
            use_.arguments
                .entry(name.clone())
                .or_default()
                .observe(value);
        }
        // A tunnel's path is "" to policy, though the journal leaves it out.
        if action == ActionKind::HttpRequest && !args.contains_key("path") {
            use_.arguments
                .entry("path".into())
                .or_default()
                .observe(&Value::String(String::new()));
        }
        Ok(())
    }
}

// === impl Learned: what was learned ===

impl Learned {
    /// Allowed actions learned from.
    pub fn allowed(&self) -> u64 {
        self.allowed
    }

    /// Decisions that refused or asked: skipped.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Whether no allowed action was seen.
    pub fn is_empty(&self) -> bool {
        self.allowed == 0
    }

    /// First and last seq of the allowed actions.
    pub fn seq_range(&self) -> Option<(u64, u64)> {
        self.seqs
    }

    /// First and last time (ms since the epoch) of the allowed actions.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        self.times
    }

    /// The kinds used, in the schema's order.
    pub fn kinds(&self) -> impl Iterator<Item = ActionKind> + '_ {
        self.uses
            .keys()
            .filter_map(|i| ActionKind::ALL.get(*i).copied())
    }

    /// The targets of one kind, sorted.
    pub fn targets(&self, kind: ActionKind) -> impl Iterator<Item = (&str, &TargetUse)> {
        self.uses
            .get(&kind_index(kind))
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v))
    }

    /// Every argument name seen on targets of `kind` (which of them the schema declares
    /// decides what the policy can constrain).
    pub fn argument_names(&self, kind: ActionKind) -> BTreeSet<String> {
        self.targets(kind)
            .flat_map(|(_, t)| t.arguments.keys().cloned())
            .collect()
    }

    /// The programs, collapsed by directory (see the module's rules).
    pub fn exec_targets(&self) -> Vec<ExecTarget> {
        let mut by_dir: BTreeMap<&str, Vec<(&str, &TargetUse)>> = BTreeMap::new();
        for (path, use_) in self.targets(ActionKind::Exec) {
            let dir = path.rfind('/').map_or("", |i| &path[..=i]);
            by_dir.entry(dir).or_default().push((path, use_));
        }
        let mut out = Vec::new();
        for (dir, programs) in by_dir {
            // "/" is never granted whole: that would be every program.
            let collapse = programs.len() >= EXEC_COLLAPSE_AT && dir.len() > 1;
            if collapse {
                out.push(ExecTarget {
                    pattern: format!("{dir}*"),
                    programs: programs.len(),
                    count: programs.iter().map(|(_, u)| u.count).sum(),
                    first_seq: programs.iter().map(|(_, u)| u.first_seq).min().unwrap_or(0),
                    last_seq: programs.iter().map(|(_, u)| u.last_seq).max().unwrap_or(0),
                    climbs: programs.iter().any(|(p, _)| p.contains("..")),
                });
            } else {
                out.extend(programs.into_iter().map(|(path, u)| ExecTarget {
                    pattern: path.to_owned(),
                    programs: 1,
                    count: u.count,
                    first_seq: u.first_seq,
                    last_seq: u.last_seq,
                    climbs: path.contains(".."),
                }));
            }
        }
        out
    }

    /// The `first_seen` baseline of this agent: action kind → targets, with `dir/*` for a
    /// collapsed program directory; the value of `baseline.<agent>` in the detector's table.
    /// Actions servers initiate are left out: `first_seen` does not judge them.
    pub fn baseline(&self) -> Value {
        let mut out = Map::new();
        for kind in self.kinds() {
            if kind.is_server_initiated() {
                continue;
            }
            let targets: Vec<Value> = if kind == ActionKind::Exec {
                self.exec_targets()
                    .into_iter()
                    .map(|t| Value::String(t.pattern))
                    .collect()
            } else {
                self.targets(kind)
                    .map(|(t, _)| Value::String(t.to_owned()))
                    .collect()
            };
            out.insert(kind.as_str().to_owned(), Value::Array(targets));
        }
        Value::Object(out)
    }

    /// The whole `first_seen` table for this agent: `{"baseline": {agent: …}}`.
    pub fn baseline_config(&self, agent: &AgentId) -> Value {
        json!({ "baseline": { agent.as_str(): self.baseline() } })
    }
}

// === impl Learned: the policy ===

impl Learned {
    /// A Cedar policy file granting `agent` exactly what was learned: one permit per target,
    /// `@id("learned-<agent>-<n>")`, each with a comment giving its evidence. Tool and prompt
    /// arguments are constrained only when `declared` says the schema lets policy read them.
    pub fn policy(&self, agent: &AgentId, declared: &DeclaredArguments) -> String {
        let mut w = PolicyWriter {
            agent,
            out: String::new(),
            n: 0,
        };
        let (first, last) = self.seqs.unwrap_or((0, 0));
        let _ = writeln!(
            w.out,
            "// Least privilege for agent {}, learned by `warden learn` from {} allowed \
             actions\n// (journal records #{first}..#{last}). Review before applying: each \
             permit grants one\n// target as it was used; everything else stays refused.",
            cedar_str(agent.as_str()),
            self.allowed,
        );
        for kind in self.kinds() {
            match kind {
                ActionKind::Exec => {
                    for t in self.exec_targets() {
                        w.exec(&t);
                    }
                }
                _ => {
                    for (target, use_) in self.targets(kind) {
                        w.target(self, kind, target, use_, declared);
                    }
                }
            }
        }
        w.out
    }

    /// The entity type of a `complete` target: a prompt, or a resource template. The
    /// journal does not say which; what else the agent did with it does, and otherwise a
    /// URI has a scheme and a prompt name usually has no `:`.
    fn complete_entity(&self, target: &str) -> &'static str {
        let seen = |k| self.targets(k).any(|(t, _)| t == target);
        if seen(ActionKind::GetPrompt) {
            return "Prompt";
        }
        if seen(ActionKind::ReadResource) {
            return "Resource";
        }
        let name = target.split_once('/').map_or(target, |(_, n)| n);
        if name.contains(':') {
            "Resource"
        } else {
            "Prompt"
        }
    }
}

struct PolicyWriter<'a> {
    agent: &'a AgentId,
    out: String,
    n: usize,
}

impl PolicyWriter<'_> {
    fn next_id(&mut self) -> String {
        self.n += 1;
        cedar_str(&format!("learned-{}-{}", self.agent.as_str(), self.n))
    }

    fn target(
        &mut self,
        learned: &Learned,
        kind: ActionKind,
        target: &str,
        use_: &TargetUse,
        declared: &DeclaredArguments,
    ) {
        let agent = format!("Agent::{}", cedar_str(self.agent.as_str()));
        let mut notes = Vec::new();
        let mut conditions = Vec::new();
        let (principal, resource) = match kind {
            ActionKind::CallTool => {
                argument_conditions(use_, &declared.tool, &mut conditions, &mut notes);
                (agent, format!("Tool::{}", cedar_str(target)))
            }
            ActionKind::GetPrompt => {
                argument_conditions(use_, &declared.prompt, &mut conditions, &mut notes);
                (agent, format!("Prompt::{}", cedar_str(target)))
            }
            ActionKind::ReadResource => (agent, format!("Resource::{}", cedar_str(target))),
            ActionKind::Complete => {
                let names: Vec<String> = use_.arguments.keys().cloned().collect();
                if !names.is_empty() && names.len() <= MAX_VALUES {
                    conditions.push(format!("{}.contains(context.argument)", cedar_set(&names)));
                }
                let entity = learned.complete_entity(target);
                (agent, format!("{entity}::{}", cedar_str(target)))
            }
            ActionKind::HttpRequest | ActionKind::Connect => {
                if let Some(ports) = use_.arguments.get("port").and_then(ArgumentUse::numbers) {
                    let list: Vec<String> = ports.iter().map(i64::to_string).collect();
                    conditions.push(format!("[{}].contains(context.port)", list.join(", ")));
                }
                if kind == ActionKind::HttpRequest {
                    for name in ["method", "path"] {
                        if let Some(arg) = use_.arguments.get(name) {
                            let access = format!("context.{name}");
                            match rule_condition(&arg.rule(), &access) {
                                Ok(c) => conditions.push(c),
                                Err(why) => notes.push(format!("{name}: any ({why})")),
                            }
                        }
                    }
                }
                (agent, format!("Host::{}", cedar_str(target)))
            }
            // Requests a server makes of the agent: the server is the principal.
            _ => (
                format!("Server::{}", cedar_str(target)),
                format!("Agent::{}", cedar_str(self.agent.as_str())),
            ),
        };
        let _ = writeln!(
            self.out,
            "\n// {kind} {}: used {} {}, records #{}..#{}.",
            comment_text(target),
            use_.count,
            if use_.count == 1 { "time" } else { "times" },
            use_.first_seq,
            use_.last_seq
        );
        for note in notes {
            let _ = writeln!(self.out, "// {}", comment_text(&note));
        }
        self.permit(
            &principal,
            kind,
            &format!("resource == {resource}"),
            &conditions,
        );
    }

    fn exec(&mut self, t: &ExecTarget) {
        let _ = writeln!(
            self.out,
            "\n// exec {}: {} {}, records #{}..#{}.",
            comment_text(&t.pattern),
            t.count,
            if t.count == 1 { "start" } else { "starts" },
            t.first_seq,
            t.last_seq
        );
        let principal = format!("Agent::{}", cedar_str(self.agent.as_str()));
        if let Some(dir) = t.pattern.strip_suffix('*').filter(|_| t.is_directory()) {
            let _ = writeln!(
                self.out,
                "// {} programs of this directory were started, so it is granted whole.",
                t.programs
            );
            let mut conditions = vec![format!("resource.path like {}", cedar_like_prefix(dir))];
            if !t.climbs {
                conditions.push(r#"!(resource.path like "*..*")"#.to_owned());
            }
            self.permit(&principal, ActionKind::Exec, "resource", &conditions);
        } else {
            let resource = format!("resource == Program::{}", cedar_str(&t.pattern));
            self.permit(&principal, ActionKind::Exec, &resource, &[]);
        }
    }

    fn permit(&mut self, principal: &str, kind: ActionKind, resource: &str, when: &[String]) {
        let id = self.next_id();
        let _ = write!(
            self.out,
            "@id({id})\npermit (\n  principal == {principal},\n  action == Action::{},\n  \
             {resource}\n)",
            cedar_str(kind.as_str())
        );
        if when.is_empty() {
            self.out.push_str(";\n");
        } else {
            let _ = write!(self.out, "\nwhen {{\n  {}\n}};\n", when.join(" &&\n  "));
        }
    }
}

/// A one-permit policy file that validates only when the schema declares `name` as a
/// `String` argument of `kind` (`call_tool` or `get_prompt`); `None` for other kinds. How a
/// caller holding the deployment's schema builds [`DeclaredArguments`]: strict validation
/// is the judge of what a policy may read.
pub fn declaration_probe(kind: ActionKind, name: &str) -> Option<String> {
    if !matches!(kind, ActionKind::CallTool | ActionKind::GetPrompt) {
        return None;
    }
    let (has, access) = attribute("context.arguments", name);
    Some(format!(
        "permit (principal, action == Action::{}, resource)\nwhen {{ {has} && {access} == \"\" }};\n",
        cedar_str(kind.as_str())
    ))
}

/// Conditions on the declared string arguments of a tool call or prompt; notes on the rest.
fn argument_conditions(
    use_: &TargetUse,
    declared: &BTreeSet<String>,
    conditions: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    for (name, arg) in &use_.arguments {
        let rule = arg.rule();
        if let ValueRule::Any(why) = rule {
            notes.push(format!("argument {name:?}: any ({why})"));
            continue;
        }
        if !declared.contains(name) {
            notes.push(format!(
                "argument {name:?}: any (the schema does not declare it as a String; \
                 declare `{name}?: String` to hold it to what was seen)"
            ));
            continue;
        }
        let (has, access) = attribute("context.arguments", name);
        let Ok(test) = rule_condition(&rule, &access) else {
            continue;
        };
        conditions.push(if arg.present == use_.count {
            format!("{has} && {test}")
        } else {
            // Sometimes left out: absent stays allowed, as it was.
            format!("(if {has} then {test} else true)")
        });
    }
}

/// The Cedar test of `rule` on the string at `access`, or why there is none.
fn rule_condition(rule: &ValueRule, access: &str) -> Result<String, &'static str> {
    match rule {
        ValueRule::OneOf(values) if values.len() == 1 => {
            Ok(format!("{access} == {}", cedar_str(&values[0])))
        }
        ValueRule::OneOf(values) => Ok(format!("{}.contains({access})", cedar_set(values))),
        ValueRule::Prefix {
            prefix,
            or_empty,
            no_climbing,
        } => {
            let mut test = format!("{access} like {}", cedar_like_prefix(prefix));
            if *no_climbing {
                test = format!("{test} && !({access} like \"*..*\")");
            }
            if *or_empty {
                test = format!("({access} == \"\" || ({test}))");
            }
            Ok(test)
        }
        ValueRule::Any(why) => Err(why),
    }
}

/// `has` test and access for a record attribute; names that are not identifiers are quoted.
fn attribute(record: &str, name: &str) -> (String, String) {
    const RESERVED: [&str; 10] = [
        "true", "false", "if", "then", "else", "in", "is", "like", "has", "__cedar",
    ];
    let mut chars = name.chars();
    let ident = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !RESERVED.contains(&name);
    if ident {
        (format!("{record} has {name}"), format!("{record}.{name}"))
    } else {
        let q = cedar_str(name);
        (format!("{record} has {q}"), format!("{record}[{q}]"))
    }
}

/// A Cedar string literal. Anything that could hide text is written as an escape, so the
/// policy file holds no character `warden policy check` refuses.
fn cedar_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    push_escaped(&mut out, s, false);
    out.push('"');
    out
}

/// A `like` pattern matching every string that starts with `prefix`.
fn cedar_like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 3);
    out.push('"');
    push_escaped(&mut out, prefix, true);
    out.push_str("*\"");
    out
}

fn push_escaped(out: &mut String, s: &str, pattern: bool) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '*' if pattern => out.push_str("\\*"),
            c if warden_core::action::is_deceptive_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

fn cedar_set(values: &[String]) -> String {
    let items: Vec<String> = values.iter().map(|v| cedar_str(v)).collect();
    format!("[{}]", items.join(", "))
}

/// Text safe inside a `//` comment: one line, nothing hidden.
fn comment_text(s: &str) -> String {
    warden_core::escape_for_display(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use warden_core::{
        Action, CompletionRef, Effect, Event, HostRef, ProgramRef, PromptRef, ResourceRef,
        ServerName, SessionId, ToolRef,
    };
    use warden_policy::{PolicySet, SourceFile};

    use crate::detector::{Detector, Observation};
    use crate::detectors::first_seen::FirstSeen;

    /// A journal of decisions as (kind, target, args, effect), numbered from 1.
    struct Journal(Vec<Value>);

    impl Journal {
        fn new() -> Self {
            Self(Vec::new())
        }

        fn push(&mut self, kind: ActionKind, target: &str, args: Value, effect: Effect) {
            let body = EventBody::Decision {
                action: kind,
                target: target.into(),
                args_digest: String::new(),
                args,
                effect,
                policies: vec![],
                reason: String::new(),
            };
            self.0.push(serde_json::to_value(body).unwrap());
        }

        fn allow(&mut self, kind: ActionKind, target: &str, args: Value) {
            self.push(kind, target, args, Effect::Allow);
        }

        fn learn(&self) -> Learned {
            Learned::from_records(self.0.iter().enumerate().map(|(i, body)| Recorded {
                seq: i as u64 + 1,
                time_ms: 1_000 * (i as i64 + 1),
                kind: "decision",
                body,
            }))
            .unwrap()
        }

        /// The allowed decisions as actions to decide again.
        fn replay(&self) -> Vec<Action> {
            self.0
                .iter()
                .filter(|b| b["effect"] == "allow")
                .map(|b| {
                    let kind: ActionKind = serde_json::from_value(b["action"].clone()).unwrap();
                    action(kind, b["target"].as_str().unwrap(), &b["args"])
                })
                .collect()
        }
    }

    fn split(target: &str) -> (ServerName, &str) {
        let (server, name) = target.split_once('/').unwrap();
        (ServerName::new(server).unwrap(), name)
    }

    fn action(kind: ActionKind, target: &str, args: &Value) -> Action {
        let object = args.as_object().cloned().unwrap_or_default();
        let port = || args["port"].as_u64().unwrap() as u16;
        match kind {
            ActionKind::CallTool => {
                let (s, n) = split(target);
                Action::CallTool {
                    tool: ToolRef::new(s, n).unwrap(),
                    arguments: object,
                }
            }
            ActionKind::GetPrompt => {
                let (s, n) = split(target);
                Action::GetPrompt {
                    prompt: PromptRef::new(s, n).unwrap(),
                    arguments: object,
                }
            }
            ActionKind::ReadResource => {
                let (s, n) = split(target);
                Action::ReadResource {
                    resource: ResourceRef::new(s, n).unwrap(),
                }
            }
            ActionKind::Complete => {
                let (s, n) = split(target);
                let (argument, value) = object.into_iter().next().unwrap();
                Action::Complete {
                    target: CompletionRef::Prompt(PromptRef::new(s, n).unwrap()),
                    argument,
                    value: value.as_str().unwrap().to_owned(),
                }
            }
            ActionKind::ListRoots => Action::ListRoots {
                server: ServerName::new(target).unwrap(),
            },
            ActionKind::HttpRequest => Action::HttpRequest {
                host: HostRef::new(target).unwrap(),
                port: port(),
                method: args["method"].as_str().unwrap().to_owned(),
                path: args["path"].as_str().map(str::to_owned),
            },
            ActionKind::Connect => Action::Connect {
                host: HostRef::new(target).unwrap(),
                port: port(),
            },
            ActionKind::Exec => Action::Exec {
                program: ProgramRef::new(target).unwrap(),
                argv: vec!["x".into()],
            },
            other => panic!("no replay for {other}"),
        }
    }

    fn alice() -> AgentId {
        AgentId::new("alice").unwrap()
    }

    const SCHEMA: &str = "type Arguments = { path?: String, to?: String, amount?: Long };\n\
                          type PromptArguments = { style?: String };";

    fn declared() -> DeclaredArguments {
        DeclaredArguments {
            tool: ["path", "to"].map(String::from).into(),
            prompt: ["style".to_owned()].into(),
        }
    }

    fn load(policy: &str, schema: &str) -> PolicySet {
        let schemas = if schema.is_empty() {
            vec![]
        } else {
            vec![SourceFile::new("arguments.cedarschema", schema)]
        };
        PolicySet::from_sources(&[SourceFile::new("learned.cedar", policy)], &schemas)
            .unwrap_or_else(|e| panic!("{e}\n{policy}"))
    }

    fn effect(set: &PolicySet, agent: &AgentId, action: &Action) -> Effect {
        set.decide(agent, action).effect
    }

    /// Every kind of action an agent can be seen doing.
    fn everything() -> Journal {
        let mut j = Journal::new();
        for path in ["notes.txt", "todo.txt", "notes.txt"] {
            j.allow(
                ActionKind::CallTool,
                "files/read_file",
                json!({"path": path}),
            );
        }
        for i in 0..10 {
            j.allow(
                ActionKind::CallTool,
                "files/write_file",
                json!({"path": format!("reports/2025/r{i}.md"), "content": format!("body {i}")}),
            );
        }
        j.allow(
            ActionKind::CallTool,
            "files/send_message",
            json!({"to": "team@example.com", "body": "hi"}),
        );
        j.allow(ActionKind::CallTool, "files/list_dir", json!({}));
        j.allow(
            ActionKind::CallTool,
            "files/list_dir",
            json!({"path": "reports"}),
        );
        j.push(
            ActionKind::CallTool,
            "files/delete_file",
            json!({"path": "notes.txt"}),
            Effect::Deny,
        );
        j.allow(
            ActionKind::ReadResource,
            "files/file:///srv/handbook.md",
            json!({}),
        );
        j.allow(
            ActionKind::GetPrompt,
            "files/summarise",
            json!({"style": "short"}),
        );
        j.allow(
            ActionKind::Complete,
            "files/summarise",
            json!({"style": "sh"}),
        );
        j.allow(ActionKind::ListRoots, "files", json!({}));
        j.allow(
            ActionKind::HttpRequest,
            "api.github.com",
            json!({"port": 443, "method": "CONNECT"}),
        );
        j.allow(
            ActionKind::HttpRequest,
            "docs.example.com",
            json!({"port": 80, "method": "GET", "path": "/v1/intro"}),
        );
        j.allow(ActionKind::Connect, "10.0.0.5", json!({"port": 5432}));
        for p in ["git", "ls", "cat", "grep"] {
            j.allow(
                ActionKind::Exec,
                &format!("/usr/bin/{p}"),
                json!({"argv": [p]}),
            );
        }
        j.allow(ActionKind::Exec, "/opt/tool/run", json!({"argv": ["run"]}));
        j
    }

    #[test]
    fn only_allowed_decisions_are_learned() {
        let mut j = Journal::new();
        j.allow(
            ActionKind::CallTool,
            "files/read_file",
            json!({"path": "a"}),
        );
        j.push(
            ActionKind::CallTool,
            "files/delete_file",
            json!({}),
            Effect::Deny,
        );
        j.push(
            ActionKind::CallTool,
            "files/transfer",
            json!({}),
            Effect::Ask,
        );
        j.allow(
            ActionKind::CallTool,
            "files/read_file",
            json!({"path": "b"}),
        );
        let outcome = json!({"kind": "outcome", "decision_seq": 1, "outcome": "ok", "detail": ""});
        let mut learned = j.learn();
        learned
            .observe(&Recorded {
                seq: 9,
                time_ms: 0,
                kind: "outcome",
                body: &outcome,
            })
            .unwrap();
        assert_eq!((learned.allowed(), learned.refused()), (2, 2));
        assert_eq!(learned.seq_range(), Some((1, 4)));
        assert_eq!(learned.time_range(), Some((1_000, 4_000)));
        let tools: Vec<_> = learned.targets(ActionKind::CallTool).collect();
        assert_eq!(tools.len(), 1, "refused and asked targets teach nothing");
        let (name, use_) = tools[0];
        assert_eq!(name, "files/read_file");
        assert_eq!((use_.count, use_.first_seq, use_.last_seq), (2, 1, 4));
        let (arg, values) = use_.arguments().next().unwrap();
        assert_eq!(arg, "path");
        assert_eq!(
            values.rule(),
            ValueRule::OneOf(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn a_malformed_decision_is_an_error_naming_its_record() {
        let body = json!({"kind": "decision", "action": "fly"});
        let err = Learned::from_records([Recorded {
            seq: 42,
            time_ms: 0,
            kind: "decision",
            body: &body,
        }])
        .unwrap_err();
        assert!(err.to_string().contains("#42"), "{err}");
    }

    fn rule_of(values: &[Value]) -> ValueRule {
        let mut arg = ArgumentUse::default();
        for v in values {
            arg.observe(v);
        }
        arg.rule()
    }

    fn strings(values: impl IntoIterator<Item = String>) -> Vec<Value> {
        values.into_iter().map(Value::String).collect()
    }

    #[test]
    fn small_value_sets_are_kept_and_large_ones_become_a_path_prefix() {
        let eight = strings((0..8).map(|i| format!("v{i}")));
        assert!(matches!(rule_of(&eight), ValueRule::OneOf(v) if v.len() == 8));
        // Nine values under reports/: the prefix is cut back to its last '/'.
        let nine = strings((0..9).map(|i| format!("reports/a{i}.md")));
        assert_eq!(
            rule_of(&nine),
            ValueRule::Prefix {
                prefix: "reports/".into(),
                or_empty: false,
                no_climbing: true
            }
        );
        let mut climbing = nine.clone();
        climbing.push(json!("reports/../x"));
        climbing.push(json!(""));
        assert_eq!(
            rule_of(&climbing),
            ValueRule::Prefix {
                prefix: "reports/".into(),
                or_empty: true,
                no_climbing: false
            }
        );
        let unrelated = strings((0..9).map(|i| format!("x{i}")));
        assert!(matches!(rule_of(&unrelated), ValueRule::Any(_)));
        let slashless = strings((0..9).map(|i| format!("report{i}")));
        assert!(matches!(rule_of(&slashless), ValueRule::Any(_)));
        assert!(matches!(
            rule_of(&[json!("a"), json!(3)]),
            ValueRule::Any("not always a string")
        ));
        assert!(matches!(
            rule_of(&[json!(5), json!(7)]),
            ValueRule::Any("not a string")
        ));
        assert!(matches!(
            rule_of(&[json!("a"), json!("[REDACTED:aws-key]")]),
            ValueRule::Any("values redacted in the journal")
        ));
        // Multi-byte characters: the prefix stays on a character boundary.
        let accents = strings((0..9).map(|i| format!("é/é{i}")));
        assert!(matches!(rule_of(&accents), ValueRule::Prefix { prefix, .. } if prefix == "é/"));
    }

    #[test]
    fn programs_collapse_to_their_directory_only_when_many_are_used() {
        let mut j = Journal::new();
        for p in ["a", "b", "c", "d"] {
            j.allow(ActionKind::Exec, &format!("/usr/bin/{p}"), json!({}));
        }
        for p in ["a", "b", "c"] {
            j.allow(ActionKind::Exec, &format!("/usr/local/bin/{p}"), json!({}));
        }
        for p in ["a", "b", "c", "d", "e"] {
            j.allow(ActionKind::Exec, &format!("/{p}"), json!({}));
        }
        let patterns: Vec<String> = j
            .learn()
            .exec_targets()
            .into_iter()
            .map(|t| t.pattern)
            .collect();
        assert_eq!(
            patterns,
            [
                "/a",
                "/b",
                "/c",
                "/d",
                "/e",
                "/usr/bin/*",
                "/usr/local/bin/a",
                "/usr/local/bin/b",
                "/usr/local/bin/c"
            ]
        );
    }

    #[test]
    fn the_policy_validates_and_permits_exactly_what_was_seen() {
        let j = everything();
        let learned = j.learn();
        let text = learned.policy(&alice(), &declared());
        let set = load(&text, SCHEMA);
        for a in j.replay() {
            assert_eq!(effect(&set, &alice(), &a), Effect::Allow, "{a:?}\n{text}");
        }
        let ids: Vec<&str> = set.ids().collect();
        assert!(
            ids.iter().all(|id| id.starts_with("learned-alice-")),
            "{ids:?}"
        );
        assert!(text.contains("records #"), "{text}");
        // Another agent gets nothing.
        let bob = AgentId::new("bob").unwrap();
        for a in j.replay() {
            if a.kind().is_server_initiated() {
                continue;
            }
            assert_eq!(effect(&set, &bob, &a), Effect::Deny, "{a:?}");
        }
    }

    #[test]
    fn the_policy_refuses_the_neighbours_of_what_was_seen() {
        let learned = everything().learn();
        let set = load(&learned.policy(&alice(), &declared()), SCHEMA);
        let neighbours = [
            (
                ActionKind::CallTool,
                "files/delete_file",
                json!({"path": "notes.txt"}),
            ),
            (
                ActionKind::CallTool,
                "files/read_file",
                json!({"path": "secret.txt"}),
            ),
            (ActionKind::CallTool, "files/read_file", json!({})),
            (
                ActionKind::CallTool,
                "files/write_file",
                json!({"path": "notes.md"}),
            ),
            (
                ActionKind::CallTool,
                "files/write_file",
                json!({"path": "reports/../x"}),
            ),
            (
                ActionKind::CallTool,
                "files/send_message",
                json!({"to": "x@evil.example"}),
            ),
            (
                ActionKind::ReadResource,
                "files/file:///srv/other.md",
                json!({}),
            ),
            (
                ActionKind::GetPrompt,
                "files/summarise",
                json!({"style": "long"}),
            ),
            (
                ActionKind::Complete,
                "files/summarise",
                json!({"tone": "x"}),
            ),
            (ActionKind::ListRoots, "web", json!({})),
            (
                ActionKind::HttpRequest,
                "api.github.com",
                json!({"port": 80, "method": "CONNECT"}),
            ),
            (
                ActionKind::HttpRequest,
                "api.github.com",
                json!({"port": 443, "method": "GET", "path": "/"}),
            ),
            (
                ActionKind::HttpRequest,
                "docs.example.com",
                json!({"port": 80, "method": "POST", "path": "/v1/intro"}),
            ),
            (
                ActionKind::HttpRequest,
                "docs.example.com",
                json!({"port": 80, "method": "GET", "path": "/admin"}),
            ),
            (
                ActionKind::HttpRequest,
                "evil.example",
                json!({"port": 443, "method": "CONNECT"}),
            ),
            (ActionKind::Connect, "10.0.0.5", json!({"port": 22})),
            (ActionKind::Connect, "10.0.0.6", json!({"port": 5432})),
            (ActionKind::Exec, "/usr/sbin/useradd", json!({})),
            (ActionKind::Exec, "/usr/bin/../sbin/useradd", json!({})),
            (ActionKind::Exec, "/opt/tool/other", json!({})),
        ];
        for (kind, target, args) in neighbours {
            let a = action(kind, target, &args);
            assert_eq!(effect(&set, &alice(), &a), Effect::Deny, "{a:?}");
        }
        // A directory granted whole covers its other programs: that is the rule.
        let sibling = action(ActionKind::Exec, "/usr/bin/sed", &json!({}));
        assert_eq!(effect(&set, &alice(), &sibling), Effect::Allow);
    }

    #[test]
    fn undeclared_arguments_are_noted_and_not_constrained() {
        let mut j = Journal::new();
        j.allow(
            ActionKind::CallTool,
            "files/read_file",
            json!({"path": "a.txt"}),
        );
        let learned = j.learn();
        let text = learned.policy(&alice(), &DeclaredArguments::default());
        assert!(text.contains("does not declare"), "{text}");
        // Loads against the base schema alone, where `Arguments` is empty.
        let set = load(&text, "");
        let other = action(
            ActionKind::CallTool,
            "files/read_file",
            &json!({"path": "b"}),
        );
        assert_eq!(effect(&set, &alice(), &other), Effect::Allow);
    }

    #[test]
    fn an_argument_sometimes_absent_may_stay_absent_but_not_vary() {
        let mut j = Journal::new();
        j.allow(ActionKind::CallTool, "files/list_dir", json!({}));
        j.allow(
            ActionKind::CallTool,
            "files/list_dir",
            json!({"path": "reports"}),
        );
        let set = load(&j.learn().policy(&alice(), &declared()), SCHEMA);
        for (args, expect) in [
            (json!({}), Effect::Allow),
            (json!({"path": "reports"}), Effect::Allow),
            (json!({"path": "secrets"}), Effect::Deny),
        ] {
            let a = action(ActionKind::CallTool, "files/list_dir", &args);
            assert_eq!(effect(&set, &alice(), &a), expect, "{args}");
        }
    }

    #[test]
    fn awkward_names_and_values_are_escaped() {
        let mut j = Journal::new();
        let tool = "files/we\"ird\\*tool";
        for i in 0..9 {
            j.allow(
                ActionKind::CallTool,
                tool,
                json!({"path": format!("a*\"b\\/{i}\u{202e}"), "odd-name": "x"}),
            );
        }
        let mut declared = declared();
        declared.tool.insert("odd-name".into());
        let text = j.learn().policy(&alice(), &declared);
        assert!(!text.contains('\u{202e}'), "{text}");
        let schema = "type Arguments = { path?: String, \"odd-name\"?: String };";
        let set = load(&text, schema);
        for a in j.replay() {
            assert_eq!(effect(&set, &alice(), &a), Effect::Allow, "{a:?}\n{text}");
        }
        // The `*` of the value is literal in the pattern, not a wildcard.
        let a = action(
            ActionKind::CallTool,
            tool,
            &json!({"path": "aXY\"b\\/1", "odd-name": "x"}),
        );
        assert_eq!(effect(&set, &alice(), &a), Effect::Deny, "{text}");
        let a = action(
            ActionKind::CallTool,
            tool,
            &json!({"path": "a*\"b\\/1", "odd-name": "y"}),
        );
        assert_eq!(effect(&set, &alice(), &a), Effect::Deny, "{text}");
    }

    #[test]
    fn a_probe_validates_only_for_declared_string_arguments() {
        let valid = |kind, name| {
            let probe = declaration_probe(kind, name).unwrap();
            PolicySet::from_sources(
                &[SourceFile::new("probe.cedar", probe)],
                &[SourceFile::new("a.cedarschema", SCHEMA)],
            )
            .is_ok()
        };
        assert!(valid(ActionKind::CallTool, "path"));
        assert!(!valid(ActionKind::CallTool, "amount"), "a Long");
        assert!(!valid(ActionKind::CallTool, "style"), "a prompt argument");
        assert!(valid(ActionKind::GetPrompt, "style"));
        assert!(!valid(ActionKind::CallTool, "odd \"name"));
        assert!(declaration_probe(ActionKind::Exec, "argv").is_none());
    }

    #[test]
    fn the_baseline_is_what_first_seen_reads() {
        let j = everything();
        let learned = j.learn();
        let baseline = learned.baseline();
        assert_eq!(baseline["exec"], json!(["/opt/tool/run", "/usr/bin/*"]));
        assert_eq!(baseline["connect"], json!(["10.0.0.5"]));
        assert!(
            baseline.get("list_roots").is_none(),
            "not judged by first_seen"
        );
        let detector = FirstSeen::from_config(learned.baseline_config(&alice())).unwrap();
        let observe = |seq, body: &Value| {
            let event = Event {
                time_ms: 0,
                agent: alice(),
                session: SessionId::from_raw("s"),
                body: serde_json::from_value(body.clone()).unwrap(),
            };
            let mut alerts = Vec::new();
            detector.observe(
                &Observation {
                    seq,
                    event: &event,
                    action: None,
                },
                &mut alerts,
            );
            alerts.len()
        };
        for (i, body) in j.0.iter().enumerate() {
            assert_eq!(observe(i as u64, body), 0, "{body}");
        }
        let mut new = Journal::new();
        new.allow(ActionKind::CallTool, "files/transfer", json!({}));
        new.allow(ActionKind::Exec, "/usr/sbin/useradd", json!({}));
        for body in &new.0 {
            assert_eq!(observe(99, body), 1, "{body}");
        }
    }
}
