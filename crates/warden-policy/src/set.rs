//! The loaded policy set: loading and validation, then decisions.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use cedar_policy as cedar;
use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityUid, PolicyId, Request, RestrictedExpression,
    SchemaFragment, ValidationMode, Validator,
};
use warden_core::{Action, ActionKind, AgentId, Decision, Effect, ToolRef};

use crate::arguments;
use crate::error::{Diagnostics, DuplicateIdError, PolicyError, Position, SourceDiagnostic};
use crate::scope::{MODEL, RequestScope, Scope, ScopeIndex, ScopeKey};
use crate::source::{self, SourceFile};

/// Warden's base schema, shipped with the crate.
const BASE_SCHEMA: &str = include_str!("../schema/warden.cedarschema");

/// The `Arguments` type used when the policy folder declares none.
const DEFAULT_ARGUMENTS: &str = "type Arguments = {};";

/// Sliced policy sets kept per (agent, action, tool). Tool names come from agents, so the
/// cache is bounded: past this many entries it starts over.
const MAX_CACHED_SLICES: usize = 65_536;

/// Warden's base schema (Cedar schema syntax): `Agent`, `Server`, `Tool in [Server]` and the
/// `call_tool` action, whose context holds the deployment-defined `Arguments` record.
pub fn schema_text() -> &'static str {
    BASE_SCHEMA
}

/// One loaded policy with what decisions need to know about it.
#[derive(Debug)]
struct LoadedPolicy {
    id: String,
    policy: cedar::Policy,
    /// `Some("")` for a bare `@ask`.
    ask: Option<String>,
    reason: Option<String>,
    /// True when the policy has no `when`/`unless` condition.
    unconditional: bool,
    /// True when a condition reads `context` (the call's arguments). A policy that does not
    /// decides the same for every call of a tool, so listing can evaluate it exactly.
    reads_context: bool,
}

/// The policies that can apply to one (agent, action, tool), with the entities of such a
/// request. Everything here depends only on the key, never on the arguments.
struct Slice {
    /// The matching policies Cedar must evaluate (shared by keys that select the same ones).
    policies: Arc<cedar::PolicySet>,
    /// Matching permits without conditions: satisfied whatever the arguments, so they are
    /// not evaluated. A scope never errors, so this changes no decision.
    unconditional_permits: Vec<usize>,
    entities: Entities,
    principal: EntityUid,
    action: EntityUid,
    resource: EntityUid,
    /// Whether `tools/list` shows the tool (see [`PolicySet::may_call`]).
    may_call: bool,
}

type SliceKey = (AgentId, ActionKind, String);

/// What evaluation found, as indexes into [`PolicySet::policies`].
#[derive(Default)]
struct Evaluation {
    /// Policies that could not be evaluated, with the error.
    errors: Vec<(usize, String)>,
    /// Satisfied permits.
    permits: Vec<usize>,
    /// Satisfied forbids.
    forbids: Vec<usize>,
}

/// A validated, immutable set of Cedar policies, ready to decide actions.
///
/// Cheap to share: wrap it in an `Arc`; it is `Send + Sync`. A reload builds a new one.
pub struct PolicySet {
    /// In load order: files sorted by name, policies in file order.
    policies: Vec<LoadedPolicy>,
    scopes: Vec<Scope>,
    position_of: HashMap<String, usize>,
    full: cedar::PolicySet,
    index: ScopeIndex,
    slices: RwLock<HashMap<SliceKey, Arc<Slice>>>,
    /// Sliced Cedar sets by the policies they hold. Agents can invent tool names, but most
    /// such names select the same few policies, so the sets are shared, not rebuilt.
    sliced_sets: RwLock<HashMap<Vec<usize>, Arc<cedar::PolicySet>>>,
    /// [`MAX_CACHED_SLICES`], lowered by tests.
    slice_cap: AtomicUsize,
    authorizer: Authorizer,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field(
                "policies",
                &self.policies.iter().map(|p| &p.id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

// === impl PolicySet: loading ===

/// A policy file after parsing, before ids are checked.
struct ParsedFile<'a> {
    shown: String,
    source: &'a SourceFile,
    policies: Vec<(cedar::Policy, Position)>,
}

impl PolicySet {
    /// Loads `*.cedar` policies and `*.cedarschema` schema fragments from `dir` (not its
    /// subfolders), each sorted by name, and validates every policy (strict mode).
    pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
        let (policies, schemas) = source::read_dir(dir)?;
        Self::build(&policies, &schemas, Some(dir))
    }

    /// Loads policies and schema fragments given as text, in the order given.
    pub fn from_sources(
        policies: &[SourceFile],
        schemas: &[SourceFile],
    ) -> Result<PolicySet, PolicyError> {
        Self::build(policies, schemas, None)
    }

    fn build(
        policy_files: &[SourceFile],
        schema_files: &[SourceFile],
        dir: Option<&Path>,
    ) -> Result<PolicySet, PolicyError> {
        let shown = |name: &str| match dir {
            Some(d) => d.join(name).display().to_string(),
            None => name.to_owned(),
        };
        if policy_files.is_empty() {
            return Err(PolicyError::NoPolicies {
                origin: dir.map_or_else(|| "the given sources".to_owned(), shown_dir),
            });
        }

        // Parse everything first, so one load reports every syntax error.
        let mut syntax = Vec::new();
        let mut fragments = Vec::new();
        match SchemaFragment::from_cedarschema_str(BASE_SCHEMA) {
            Ok((f, _)) => fragments.push(f),
            Err(e) => syntax.push(source::diagnostic_in(BASE_NAME, BASE_SCHEMA, &e, None)),
        }
        for s in schema_files {
            match SchemaFragment::from_cedarschema_str(&s.text) {
                Ok((f, _)) => fragments.push(f),
                Err(e) => syntax.push(source::diagnostic_in(&shown(&s.name), &s.text, &e, None)),
            }
        }
        let mut parsed = Vec::new();
        for file in policy_files {
            match parse_policy_file(file, &shown(&file.name)) {
                Ok(p) => parsed.push(p),
                Err(mut d) => syntax.append(&mut d),
            }
        }
        if !syntax.is_empty() {
            return Err(PolicyError::Parse(Diagnostics(syntax)));
        }

        let schema = build_schema(fragments, schema_files, &shown)?;
        let policies = assign_ids(&parsed)?;

        let mut full = cedar::PolicySet::new();
        for p in &policies {
            full.add(p.policy.clone()).map_err(|e| {
                PolicyError::Validation(Diagnostics(vec![SourceDiagnostic {
                    file: p.id.clone(),
                    position: None,
                    message: e.to_string(),
                    help: None,
                }]))
            })?;
        }

        let position_of: HashMap<String, usize> = policies
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        validate(&schema, &full, &parsed, &policies, &position_of)?;

        let scopes: Vec<Scope> = policies
            .iter()
            .map(|p| Scope {
                principal: ScopeKey::of_principal(p.policy.principal_constraint()),
                action: p.policy.action_constraint(),
                resource: ScopeKey::of_resource(p.policy.resource_constraint()),
            })
            .collect();
        let index = ScopeIndex::new(&scopes);
        Ok(PolicySet {
            policies,
            scopes,
            position_of,
            full,
            index,
            slices: RwLock::new(HashMap::new()),
            sliced_sets: RwLock::new(HashMap::new()),
            slice_cap: AtomicUsize::new(MAX_CACHED_SLICES),
            authorizer: Authorizer::new(),
        })
    }

    /// How many policies the set holds.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether the set holds no policy (a loaded set always holds at least one).
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The policy ids, in load order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| p.id.as_str())
    }
}

const BASE_NAME: &str = "<warden base schema>";

fn shown_dir(d: &Path) -> String {
    d.display().to_string()
}

/// Parses one policy file, keeping each policy's start position. Templates are refused:
/// Warden policies are static.
fn parse_policy_file<'a>(
    file: &'a SourceFile,
    shown: &str,
) -> Result<ParsedFile<'a>, Vec<SourceDiagnostic>> {
    let set: cedar::PolicySet = file.text.parse().map_err(|errs: cedar::ParseErrors| {
        errs.iter()
            .map(|e| source::diagnostic_in(shown, &file.text, e, None))
            .collect::<Vec<_>>()
    })?;
    let mut templates: Vec<_> = set.templates().collect();
    if !templates.is_empty() {
        templates.sort_by_key(|t| generated_number(t.id()));
        let texts: Vec<String> = templates.iter().map(|t| t.to_cedar()).collect();
        return Err(source::policy_offsets(&file.text, &texts)
            .into_iter()
            .map(|offset| SourceDiagnostic {
                file: shown.to_owned(),
                position: Some(Position::of_offset(&file.text, offset)),
                message:
                    "templates (policies with ?principal or ?resource slots) are not supported"
                        .to_owned(),
                help: Some("name the principal and resource in the policy itself".to_owned()),
            })
            .collect());
    }
    // Cedar numbers the policies of a text policy0, policy1, ... in source order.
    let mut policies: Vec<&cedar::Policy> = set.policies().collect();
    policies.sort_by_key(|p| generated_number(p.id()));
    let texts: Vec<String> = policies
        .iter()
        .map(|p| p.to_cedar().unwrap_or_else(|| p.to_string()))
        .collect();
    let offsets = source::policy_offsets(&file.text, &texts);
    Ok(ParsedFile {
        shown: shown.to_owned(),
        source: file,
        policies: policies
            .into_iter()
            .zip(offsets)
            .map(|(p, o)| (p.clone(), Position::of_offset(&file.text, o)))
            .collect(),
    })
}

fn generated_number(id: &PolicyId) -> usize {
    let id: &str = id.as_ref();
    id.strip_prefix("policy")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

/// Base schema + the folder's fragments (+ the empty `Arguments` when none declares it).
fn build_schema(
    mut fragments: Vec<SchemaFragment>,
    schema_files: &[SourceFile],
    shown: &dyn Fn(&str) -> String,
) -> Result<cedar::Schema, PolicyError> {
    let declares_arguments = fragments
        .iter()
        .any(|f| f.common_type_annotations(None, "Arguments").is_some());
    if !declares_arguments {
        match SchemaFragment::from_cedarschema_str(DEFAULT_ARGUMENTS) {
            Ok((f, _)) => fragments.push(f),
            Err(e) => {
                return Err(PolicyError::Schema(Diagnostics(vec![
                    source::diagnostic_in(BASE_NAME, DEFAULT_ARGUMENTS, &e, None),
                ])));
            }
        }
    }
    cedar::Schema::from_schema_fragments(fragments).map_err(|e| {
        let mut files: Vec<(String, &str)> = vec![(BASE_NAME.to_owned(), BASE_SCHEMA)];
        files.extend(
            schema_files
                .iter()
                .map(|s| (shown(&s.name), s.text.as_str())),
        );
        PolicyError::Schema(Diagnostics(vec![source::diagnostic_among(
            &files, &e, "schema",
        )]))
    })
}

/// Gives each policy its id: `@id("...")`, else `<file name>:<line>` (with `:<column>` when
/// two policies of a file start on the same line). Refuses duplicates.
fn assign_ids(parsed: &[ParsedFile<'_>]) -> Result<Vec<LoadedPolicy>, PolicyError> {
    let mut out = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for file in parsed {
        let mut per_line: HashMap<usize, usize> = HashMap::new();
        for (_, pos) in &file.policies {
            *per_line.entry(pos.line).or_default() += 1;
        }
        for (policy, pos) in &file.policies {
            let id = match policy.annotation("id") {
                Some(id) => id.to_owned(),
                None if per_line.get(&pos.line).copied().unwrap_or(0) > 1 => {
                    format!("{}:{}:{}", file.source.name, pos.line, pos.column)
                }
                None => format!("{}:{}", file.source.name, pos.line),
            };
            let place = format!("{}:{}", file.shown, pos);
            if let Some(first) = seen.insert(id.clone(), place.clone()) {
                return Err(PolicyError::DuplicateId(DuplicateIdError {
                    id,
                    first,
                    second: place,
                }));
            }
            out.push(LoadedPolicy {
                policy: policy.new_id(PolicyId::new(&id)),
                ask: policy.annotation("ask").map(str::to_owned),
                reason: policy.annotation("reason").map(str::to_owned),
                unconditional: !policy.has_non_scope_constraint(),
                reads_context: reads_context(policy),
                id,
            });
        }
    }
    Ok(out)
}

/// Strict validation of every policy; all errors, located in their files.
fn validate(
    schema: &cedar::Schema,
    full: &cedar::PolicySet,
    parsed: &[ParsedFile<'_>],
    policies: &[LoadedPolicy],
    position_of: &HashMap<String, usize>,
) -> Result<(), PolicyError> {
    // Policy index → (file, start position), in load order.
    let places: Vec<(&ParsedFile<'_>, Position)> = parsed
        .iter()
        .flat_map(|f| f.policies.iter().map(move |(_, pos)| (f, *pos)))
        .collect();
    let result = Validator::new(schema.clone()).validate(full, ValidationMode::Strict);
    // Some of Cedar's warnings are errors for Warden: a policy that can never apply (a forbid
    // with a misspelt scope protects nothing, silently) and bidirectional-control characters
    // (text that reads differently than it evaluates).
    let fatal_warnings = result.validation_warnings().filter(|w| {
        matches!(
            w,
            cedar::ValidationWarning::ImpossiblePolicy(_)
                | cedar::ValidationWarning::InvalidActionApplication(_)
                | cedar::ValidationWarning::BidiCharsInString(_)
                | cedar::ValidationWarning::BidiCharsInIdentifier(_)
        )
    });
    let problems = result
        .validation_errors()
        .map(|e| (e.policy_id(), e as &dyn miette::Diagnostic))
        .chain(fatal_warnings.map(|w| (w.policy_id(), w as &dyn miette::Diagnostic)));
    let mut found: Vec<(usize, SourceDiagnostic)> = problems
        .map(|(policy_id, e)| {
            let id: &str = policy_id.as_ref();
            match position_of
                .get(id)
                .and_then(|&i| places.get(i).map(|p| (i, p)))
            {
                Some((i, (file, start))) => (
                    i,
                    source::diagnostic_in(&file.shown, &file.source.text, e, Some(*start)),
                ),
                None => (
                    policies.len(),
                    SourceDiagnostic {
                        file: id.to_owned(),
                        position: None,
                        message: e.to_string(),
                        help: None,
                    },
                ),
            }
        })
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    found.sort_by_key(|(i, d)| (*i, d.position));
    Err(PolicyError::Validation(Diagnostics(
        found.into_iter().map(|(_, d)| d).collect(),
    )))
}

// === impl PolicySet: decisions ===

impl PolicySet {
    /// Decides `action` for `agent`: allow, deny or ask, with the deciding policy ids and a
    /// reason. Default deny; any evaluation error denies (fail closed).
    pub fn decide(&self, agent: &AgentId, action: &Action) -> Decision {
        #[allow(unreachable_patterns)]
        let (tool, args) = match action {
            Action::CallTool { tool, arguments } => (tool, arguments),
            other => {
                return Decision::refuse(format!("no policy model for {} actions", other.kind()));
            }
        };
        let slice = self.slice(agent, action.kind(), tool);
        let mut eval = if slice.policies.is_empty() {
            // Nothing to evaluate, but arguments Warden refuses are refused all the same.
            if let Err(e) = arguments::to_cedar(args) {
                return Decision::refuse(e.to_string());
            }
            Evaluation::default()
        } else {
            let request = match request_for(&slice, args) {
                Ok(r) => r,
                Err(d) => return d,
            };
            let response =
                self.authorizer
                    .is_authorized(&request, &slice.policies, &slice.entities);
            self.evaluation_of(&response)
        };
        eval.permits.extend_from_slice(&slice.unconditional_permits);
        self.decision_from(eval, agent, action.kind(), tool)
    }

    /// For `tools/list`: whether some call of this tool could be allowed. Policies that do not
    /// read the arguments are evaluated exactly: a forbid among them that holds hides the
    /// tool, a permit among them that holds shows it. Otherwise the tool is shown only if a
    /// permit that reads the arguments could apply. Listing never grants anything: every call
    /// is still decided with its arguments.
    pub fn may_call(&self, agent: &AgentId, tool: &ToolRef) -> bool {
        self.slice(agent, ActionKind::CallTool, tool).may_call
    }

    /// The policies that can apply to this (agent, action, tool), from the cache or built.
    fn slice(&self, agent: &AgentId, kind: ActionKind, tool: &ToolRef) -> Arc<Slice> {
        let key: SliceKey = (agent.clone(), kind, tool.id());
        if let Some(s) = self
            .slices
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Arc::clone(s);
        }
        let slice = Arc::new(self.build_slice(agent, kind, tool));
        let mut cache = self.slices.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.slice_cap.load(Ordering::Relaxed) {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&slice));
        slice
    }

    fn build_slice(&self, agent: &AgentId, kind: ActionKind, tool: &ToolRef) -> Slice {
        let m = &*MODEL;
        let principal = m.agent_uid(agent);
        let action = m.action_uid(kind);
        let resource = m.tool_uid(tool);
        let server = m.server_uid(tool);
        let selected = self.index.select(
            &self.scopes,
            &RequestScope {
                principal: &principal,
                action: &action,
                tool: &resource,
                server: &server,
            },
        );
        let is_permit = |i: &usize| {
            self.policies
                .get(*i)
                .is_some_and(|p| p.policy.effect() == cedar::Effect::Permit)
        };
        let is_unconditional = |i: &usize| self.policies.get(*i).is_some_and(|p| p.unconditional);
        let reads_context = |i: &usize| self.policies.get(*i).is_some_and(|p| p.reads_context);
        let context_free: Vec<usize> = selected
            .iter()
            .copied()
            .filter(|i| !reads_context(i))
            .collect();
        let some_permit_reads_context = selected.iter().any(|i| is_permit(i) && reads_context(i));
        let (unconditional_permits, evaluated): (Vec<usize>, Vec<usize>) = selected
            .into_iter()
            .partition(|i| is_permit(i) && is_unconditional(i));
        let policies = self.sliced_set(evaluated);
        let entities = request_entities(&principal, &resource, &server, tool);
        let mut slice = Slice {
            policies,
            unconditional_permits,
            entities,
            principal,
            action,
            resource,
            may_call: false,
        };
        slice.may_call = self.listable(&slice, context_free, some_permit_reads_context);
        slice
    }

    /// Evaluates the policies that do not read the arguments, once per slice.
    fn listable(&self, slice: &Slice, context_free: Vec<usize>, fallback: bool) -> bool {
        if context_free.is_empty() {
            return fallback;
        }
        let set = match cedar::PolicySet::from_policies(
            context_free
                .iter()
                .filter_map(|&i| self.policies.get(i))
                .map(|p| p.policy.clone()),
        ) {
            Ok(set) => set,
            Err(_) => return fallback,
        };
        let Ok(request) = request_for(slice, &serde_json::Map::new()) else {
            return fallback;
        };
        let response = self
            .authorizer
            .is_authorized(&request, &set, &slice.entities);
        let eval = self.evaluation_of(&response);
        if !eval.forbids.is_empty() {
            return false;
        }
        !eval.permits.is_empty() || fallback
    }

    /// The Cedar set holding exactly the policies at `selected`, shared when already built.
    fn sliced_set(&self, selected: Vec<usize>) -> Arc<cedar::PolicySet> {
        if let Some(set) = self
            .sliced_sets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&selected)
        {
            return Arc::clone(set);
        }
        let chosen = selected.iter().filter_map(|&i| self.policies.get(i));
        // INVARIANT: ids are unique in `self.policies`, so adding a subset cannot collide.
        let set = Arc::new(
            cedar::PolicySet::from_policies(chosen.map(|p| p.policy.clone()))
                .unwrap_or_else(|_| self.full.clone()),
        );
        let mut sets = self
            .sliced_sets
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if sets.len() >= self.slice_cap.load(Ordering::Relaxed) {
            sets.clear();
        }
        sets.insert(selected, Arc::clone(&set));
        set
    }

    /// What Cedar found, by policy index.
    fn evaluation_of(&self, response: &cedar::Response) -> Evaluation {
        let diag = response.diagnostics();
        let index_of = |id: &PolicyId| self.order_of(id.as_ref());
        let errors = diag
            .errors()
            .map(|e| match e {
                cedar::AuthorizationError::PolicyEvaluationError(e) => {
                    (index_of(e.policy_id()), e.inner().to_string())
                }
            })
            .collect();
        // Cedar names the satisfied permits when it allows, the satisfied forbids when it
        // denies (none when nothing permitted).
        let reasons = diag.reason().map(index_of).collect();
        match response.decision() {
            cedar::Decision::Allow => Evaluation {
                errors,
                permits: reasons,
                forbids: Vec::new(),
            },
            cedar::Decision::Deny => Evaluation {
                errors,
                permits: Vec::new(),
                forbids: reasons,
            },
        }
    }

    /// Turns what was found into Warden's decision: errors deny (fail closed), then
    /// forbids, then `@ask` permits, then permits; nothing satisfied denies by default.
    fn decision_from(
        &self,
        mut eval: Evaluation,
        agent: &AgentId,
        kind: ActionKind,
        tool: &ToolRef,
    ) -> Decision {
        let id_of = |i: usize| {
            self.policies
                .get(i)
                .map_or_else(|| "<unknown policy>".to_owned(), |p| p.id.clone())
        };
        if !eval.errors.is_empty() {
            eval.errors.sort();
            eval.errors.dedup_by_key(|e| e.0);
            let reason = eval
                .errors
                .iter()
                .map(|(i, err)| format!("policy {} could not be evaluated: {err}", id_of(*i)))
                .collect::<Vec<_>>()
                .join("; ");
            return Decision {
                effect: Effect::Deny,
                policies: eval.errors.iter().map(|(i, _)| id_of(*i)).collect(),
                reason,
            };
        }
        for list in [&mut eval.forbids, &mut eval.permits] {
            list.sort_unstable();
            list.dedup();
        }
        if let Some(&first) = eval.forbids.first() {
            let reason = self
                .policies
                .get(first)
                .and_then(|p| p.reason.clone())
                .unwrap_or_else(|| format!("forbidden by policy {}", id_of(first)));
            return Decision {
                effect: Effect::Deny,
                policies: eval.forbids.into_iter().map(id_of).collect(),
                reason,
            };
        }
        let asking: Vec<(usize, &str)> = eval
            .permits
            .iter()
            .filter_map(|&i| Some((i, self.policies.get(i)?.ask.as_deref()?)))
            .collect();
        if let Some(&(_, why)) = asking.first() {
            return Decision {
                effect: Effect::Ask,
                policies: asking.iter().map(|&(i, _)| id_of(i)).collect(),
                reason: if why.is_empty() {
                    "approval required".to_owned()
                } else {
                    format!("approval required: {why}")
                },
            };
        }
        let ids: Vec<String> = eval.permits.into_iter().map(id_of).collect();
        let reason = match ids.as_slice() {
            [] => {
                return Decision::refuse(format!(
                    "no policy permits agent \"{agent}\" to {kind} on \"{}\"",
                    tool.id()
                ));
            }
            [one] => format!("permitted by policy {one}"),
            many => format!("permitted by policies {}", many.join(", ")),
        };
        Decision {
            effect: Effect::Allow,
            policies: ids,
            reason,
        }
    }

    #[cfg(test)]
    pub(crate) fn cached_slices(&self) -> usize {
        self.slices
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    #[cfg(test)]
    pub(crate) fn sliced_set_count(&self) -> usize {
        self.sliced_sets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    #[cfg(test)]
    pub(crate) fn set_slice_cap(&self, cap: usize) {
        self.slice_cap.store(cap, Ordering::Relaxed);
    }

    fn order_of(&self, id: &str) -> usize {
        self.position_of.get(id).copied().unwrap_or(usize::MAX)
    }

    /// The decision plain Cedar gives over the whole set, mapped the same way. The
    /// reference the sliced path is tested and measured against.
    #[doc(hidden)]
    pub fn decide_unsliced(&self, agent: &AgentId, action: &Action) -> Decision {
        #[allow(unreachable_patterns)]
        let (tool, args) = match action {
            Action::CallTool { tool, arguments } => (tool, arguments),
            other => {
                return Decision::refuse(format!("no policy model for {} actions", other.kind()));
            }
        };
        let m = &*MODEL;
        let principal = m.agent_uid(agent);
        let resource = m.tool_uid(tool);
        let server = m.server_uid(tool);
        let whole = Slice {
            policies: Arc::new(self.full.clone()),
            entities: request_entities(&principal, &resource, &server, tool),
            principal,
            action: m.action_uid(action.kind()),
            resource,
            unconditional_permits: Vec::new(),
            may_call: false,
        };
        let request = match request_for(&whole, args) {
            Ok(r) => r,
            Err(d) => return d,
        };
        let response = self
            .authorizer
            .is_authorized(&request, &whole.policies, &whole.entities);
        let eval = self.evaluation_of(&response);
        self.decision_from(eval, agent, action.kind(), tool)
    }
}

/// The agent, the tool (attributes `name` and `server`, parent its server) and the server.
fn request_entities(
    principal: &EntityUid,
    resource: &EntityUid,
    server: &EntityUid,
    tool: &ToolRef,
) -> Entities {
    let attrs = HashMap::from([
        (
            "name".to_owned(),
            RestrictedExpression::new_string(tool.name.clone()),
        ),
        (
            "server".to_owned(),
            RestrictedExpression::new_string(tool.server.as_str().to_owned()),
        ),
    ]);
    let tool_entity = Entity::new(
        resource.clone(),
        attrs,
        std::collections::HashSet::from([server.clone()]),
    );
    let entities = tool_entity.map_err(|e| e.to_string()).and_then(|t| {
        Entities::from_entities(
            [
                Entity::with_uid(principal.clone()),
                t,
                Entity::with_uid(server.clone()),
            ],
            None,
        )
        .map_err(|e| e.to_string())
    });
    // String attributes and fresh uids cannot fail to evaluate or collide; should it happen,
    // an empty store makes every attribute read an error, and errors deny.
    entities.unwrap_or_else(|_| Entities::empty())
}

/// Whether any condition of `policy` reads the `context` variable.
fn reads_context(policy: &cedar::Policy) -> bool {
    fn mentions(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(m) => {
                m.get("Var").and_then(serde_json::Value::as_str) == Some("context")
                    || m.values().any(mentions)
            }
            serde_json::Value::Array(a) => a.iter().any(mentions),
            _ => false,
        }
    }
    // The JSON form shows variables as {"Var": "..."}; if it cannot be had, assume the
    // policy reads the arguments, which only makes listing show more.
    policy
        .to_json()
        .map_or(true, |json| json.get("conditions").is_some_and(mentions))
}

fn request_for(
    slice: &Slice,
    args: &serde_json::Map<String, serde_json::Value>,
) -> Result<Request, Decision> {
    let arguments = arguments::to_cedar(args).map_err(|e| Decision::refuse(e.to_string()))?;
    let context = Context::from_pairs([("arguments".to_owned(), arguments)])
        .map_err(|e| Decision::refuse(format!("arguments cannot be given to policy: {e}")))?;
    Request::new(
        slice.principal.clone(),
        slice.action.clone(),
        slice.resource.clone(),
        context,
        None,
    )
    .map_err(|e| Decision::refuse(format!("request cannot be built: {e}")))
}
