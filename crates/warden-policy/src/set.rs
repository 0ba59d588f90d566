//! The loaded policy set: loading and validation, then decisions.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use cedar_policy as cedar;
use cedar_policy::{
    Authorizer, Entities, EntityUid, PolicyId, Request, SchemaFragment, ValidationMode, Validator,
};
use warden_core::{Action, ActionKind, AgentId, Decision, Effect, PromptRef, ResourceRef, ToolRef};

use crate::bounds;
use crate::error::{Diagnostics, DuplicateIdError, PolicyError, Position, SourceDiagnostic};
use crate::request::{self, ContextInput, Parts, Target, TargetType};
use crate::scope::{MODEL, RequestScope, Scope, ScopeIndex, ScopeKey};
use crate::source::{self, SourceFile};

/// Warden's base schema, shipped with the crate.
const BASE_SCHEMA: &str = include_str!("../schema/warden.cedarschema");

/// The record types the base schema leaves to the deployment, each with the definition used
/// when the policy folder declares none.
const DEPLOYMENT_TYPES: [(&str, &str); 2] = [
    ("Arguments", "type Arguments = {};"),
    ("PromptArguments", "type PromptArguments = {};"),
];

/// Sliced policy sets kept per (agent, action, target). Tool names and resource URIs come
/// from agents, so the cache is bounded: past this many entries it starts over.
const MAX_CACHED_SLICES: usize = 65_536;

/// The actions whose targets an MCP list shows or hides (see [`PolicySet::may_call`]).
const LISTED_KINDS: [ActionKind; 3] = [
    ActionKind::CallTool,
    ActionKind::ReadResource,
    ActionKind::GetPrompt,
];

/// Warden's base schema (Cedar schema syntax): the entities `Agent`, `Server`, and `Tool`,
/// `Resource` and `Prompt` in `[Server]`; the actions `call_tool`, `read_resource`,
/// `get_prompt` and `complete` (an agent on a server's entity) and `sample`, `elicit` and
/// `list_roots` (a server on an agent). The contexts of `call_tool` and `get_prompt` hold
/// the deployment-defined `Arguments` and `PromptArguments` records.
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
    /// decides the same for every request on a target, so listing can evaluate it exactly.
    reads_context: bool,
}

/// The policies that can apply to one (agent, action, target), with the entities of such a
/// request. Everything here depends only on the key, never on the context.
struct Slice {
    /// The matching policies Cedar must evaluate (shared by keys that select the same ones).
    policies: Arc<cedar::PolicySet>,
    /// Matching permits without conditions: satisfied whatever the context, so they are not
    /// evaluated. A scope never errors, so this changes no decision.
    unconditional_permits: Vec<usize>,
    entities: Entities,
    principal: EntityUid,
    action: EntityUid,
    resource: EntityUid,
    /// Whether an MCP list shows the target (see [`PolicySet::may_call`]); false for
    /// actions that are not listed.
    listed: bool,
}

type SliceKey = (AgentId, ActionKind, TargetType, String);

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
    /// Sliced Cedar sets by the policies they hold. Agents can invent tool names and URIs,
    /// but most such names select the same few policies, so the sets are shared, not rebuilt.
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
            // Bounded before Cedar reads it: too deep a text would overflow the stack.
            if let Err(d) = bounds::check(&s.text, &shown(&s.name), bounds::Kind::Schema) {
                syntax.push(d);
                continue;
            }
            match SchemaFragment::from_cedarschema_str(&s.text) {
                Ok((f, _)) => fragments.push(f),
                Err(e) => syntax.push(source::diagnostic_in(&shown(&s.name), &s.text, &e, None)),
            }
        }
        let mut parsed = Vec::new();
        for file in policy_files {
            if let Err(d) = bounds::check(&file.text, &shown(&file.name), bounds::Kind::Policy) {
                syntax.push(d);
                continue;
            }
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

    /// Each policy as an operator reads it, in load order.
    pub fn summaries(&self) -> Vec<PolicySummary> {
        self.policies
            .iter()
            .map(|p| PolicySummary {
                id: p.id.clone(),
                effect: match p.policy.effect() {
                    cedar::Effect::Permit => "permit",
                    cedar::Effect::Forbid => "forbid",
                },
                ask: p.ask.is_some(),
                agent: match p.policy.principal_constraint() {
                    cedar::PrincipalConstraint::Eq(uid) => Some(uid.id().unescaped().to_owned()),
                    _ => None,
                },
                text: p.policy.to_string(),
            })
            .collect()
    }
}

/// One policy as an operator reads it (the control plane's policy view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySummary {
    /// Its id.
    pub id: String,
    /// `permit` or `forbid`.
    pub effect: &'static str,
    /// Whether a permit needs a human's approval (`@ask`).
    pub ask: bool,
    /// The one agent it names as principal (`principal == Agent::"…"`); `None` when it
    /// applies to any agent or a group.
    pub agent: Option<String>,
    /// Its Cedar text.
    pub text: String,
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

/// Base schema + the folder's fragments (+ an empty record for each deployment type none
/// of them declares).
fn build_schema(
    mut fragments: Vec<SchemaFragment>,
    schema_files: &[SourceFile],
    shown: &dyn Fn(&str) -> String,
) -> Result<cedar::Schema, PolicyError> {
    for (name, default) in DEPLOYMENT_TYPES {
        let declared = fragments
            .iter()
            .any(|f| f.common_type_annotations(None, name).is_some());
        if declared {
            continue;
        }
        match SchemaFragment::from_cedarschema_str(default) {
            Ok((f, _)) => fragments.push(f),
            Err(e) => {
                return Err(PolicyError::Schema(Diagnostics(vec![
                    source::diagnostic_in(BASE_NAME, default, &e, None),
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
        .map(|e| {
            let missing_attribute = matches!(e, cedar::ValidationError::UnsafeAttributeAccess(_));
            (
                e.policy_id(),
                e as &dyn miette::Diagnostic,
                missing_attribute,
            )
        })
        .chain(fatal_warnings.map(|w| (w.policy_id(), w as &dyn miette::Diagnostic, false)));
    let mut found: Vec<(usize, SourceDiagnostic)> = problems
        .map(|(policy_id, e, missing_attribute)| {
            let id: &str = policy_id.as_ref();
            match position_of
                .get(id)
                .and_then(|&i| places.get(i).map(|p| (i, p)))
            {
                Some((i, (file, start))) => {
                    let mut d =
                        source::diagnostic_in(&file.shown, &file.source.text, e, Some(*start));
                    let broad = policies
                        .get(i)
                        .is_some_and(|p| admits_several_actions(&p.policy));
                    if missing_attribute && broad {
                        // Cedar checks the policy against every action its scope admits; an
                        // attribute of one action's context or resource is missing in another's.
                        d.help = Some(
                            "the policy's scope admits several actions, and this attribute \
                             exists for only some of them; name the action, e.g. \
                             `action == Action::\"call_tool\"`"
                                .to_owned(),
                        );
                    }
                    (i, d)
                }
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
    found.sort_by(|(i, a), (j, b)| (i, a.position, &a.message).cmp(&(j, b.position, &b.message)));
    found.dedup();
    Err(PolicyError::Validation(Diagnostics(
        found.into_iter().map(|(_, d)| d).collect(),
    )))
}

/// Whether the policy's action scope admits more than one action.
fn admits_several_actions(policy: &cedar::Policy) -> bool {
    match policy.action_constraint() {
        cedar::ActionConstraint::Any => true,
        cedar::ActionConstraint::In(actions) => actions.len() > 1,
        cedar::ActionConstraint::Eq(_) => false,
    }
}

// === impl PolicySet: decisions ===

impl PolicySet {
    /// Decides `action` for `agent`: allow, deny or ask, with the deciding policy ids and a
    /// reason. Default deny; any evaluation error denies (fail closed).
    ///
    /// For an action an upstream server initiates (`Sample`, `Elicit`, `ListRoots`), `agent`
    /// is the agent the request would reach: the principal is `Server::"<server>"` and the
    /// resource `Agent::"<agent>"`.
    pub fn decide(&self, agent: &AgentId, action: &Action) -> Decision {
        self.decide_tainted(agent, action, &[])
    }

    /// [`decide`](Self::decide) for a session that has read what `taint` labels
    /// (`context.taint` in policies).
    pub fn decide_tainted(&self, agent: &AgentId, action: &Action, taint: &[String]) -> Decision {
        let Some(parts) = Parts::of(action) else {
            return Decision::refuse(format!("no policy model for {} actions", action.kind()));
        };
        let slice = self.slice(agent, parts.kind, parts.target);
        let mut eval = if slice.policies.is_empty() {
            // Nothing to evaluate, but arguments Warden refuses are refused all the same.
            if let Err(d) = request::context(parts.context, taint) {
                return d;
            }
            Evaluation::default()
        } else {
            let request = match request_for(&slice, parts.context, taint) {
                Ok(r) => r,
                Err(d) => return d,
            };
            let response =
                self.authorizer
                    .is_authorized(&request, &slice.policies, &slice.entities);
            self.evaluation_of(&response)
        };
        eval.permits.extend_from_slice(&slice.unconditional_permits);
        self.decision_from(eval, agent, parts.kind, parts.target)
    }

    /// For `tools/list`: whether some call of this tool could be allowed. Policies that do not
    /// read the context (the arguments) are evaluated exactly: a forbid among them that holds
    /// hides the tool, a permit among them that holds shows it. Otherwise the tool is shown
    /// only if a permit that reads the context could apply. Listing never grants anything:
    /// every call is still decided with its arguments.
    pub fn may_call(&self, agent: &AgentId, tool: &ToolRef) -> bool {
        self.slice(agent, ActionKind::CallTool, Target::Tool(tool))
            .listed
    }

    /// For `resources/list` and `resources/templates/list`: whether `agent` may read this
    /// resource, decided as [`may_call`](Self::may_call) decides for a tool. For a resource
    /// template, pass the template as the URI.
    pub fn may_read(&self, agent: &AgentId, resource: &ResourceRef) -> bool {
        self.slice(agent, ActionKind::ReadResource, Target::Resource(resource))
            .listed
    }

    /// For `prompts/list`: whether some `prompts/get` of this prompt could be allowed,
    /// decided as [`may_call`](Self::may_call) decides for a tool.
    pub fn may_get_prompt(&self, agent: &AgentId, prompt: &PromptRef) -> bool {
        self.slice(agent, ActionKind::GetPrompt, Target::Prompt(prompt))
            .listed
    }

    /// The policies that can apply to this (agent, action, target), from the cache or built.
    fn slice(&self, agent: &AgentId, kind: ActionKind, target: Target<'_>) -> Arc<Slice> {
        let (target_type, id) = target.key();
        let key: SliceKey = (agent.clone(), kind, target_type, id);
        if let Some(s) = self
            .slices
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Arc::clone(s);
        }
        let slice = Arc::new(self.build_slice(agent, kind, target));
        let mut cache = self.slices.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.slice_cap.load(Ordering::Relaxed) {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&slice));
        slice
    }

    fn build_slice(&self, agent: &AgentId, kind: ActionKind, target: Target<'_>) -> Slice {
        let parties = request::parties(agent, target);
        let action = MODEL.action_uid(kind);
        let selected = self.index.select(
            &self.scopes,
            &RequestScope {
                principal: &parties.principal,
                action: &action,
                resource: &parties.resource,
                resource_parent: parties.resource_parent.as_ref(),
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
        let mut slice = Slice {
            policies,
            unconditional_permits,
            entities: parties.entities,
            principal: parties.principal,
            action,
            resource: parties.resource,
            listed: false,
        };
        if LISTED_KINDS.contains(&kind) {
            slice.listed = self.listable(&slice, kind, context_free, some_permit_reads_context);
        }
        slice
    }

    /// Evaluates the policies that do not read the context, once per slice.
    fn listable(
        &self,
        slice: &Slice,
        kind: ActionKind,
        context_free: Vec<usize>,
        fallback: bool,
    ) -> bool {
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
        let Ok(request) = request_for(slice, request::listing_context(kind), &[]) else {
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
        target: Target<'_>,
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
            [] => return Decision::refuse(target.default_deny(agent, kind)),
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
        self.decide_unsliced_tainted(agent, action, &[])
    }

    /// [`decide_unsliced`](Self::decide_unsliced) with the session's taint.
    #[doc(hidden)]
    pub fn decide_unsliced_tainted(
        &self,
        agent: &AgentId,
        action: &Action,
        taint: &[String],
    ) -> Decision {
        let Some(parts) = Parts::of(action) else {
            return Decision::refuse(format!("no policy model for {} actions", action.kind()));
        };
        let parties = request::parties(agent, parts.target);
        let whole = Slice {
            policies: Arc::new(self.full.clone()),
            entities: parties.entities,
            principal: parties.principal,
            action: MODEL.action_uid(parts.kind),
            resource: parties.resource,
            unconditional_permits: Vec::new(),
            listed: false,
        };
        let request = match request_for(&whole, parts.context, taint) {
            Ok(r) => r,
            Err(d) => return d,
        };
        let response = self
            .authorizer
            .is_authorized(&request, &whole.policies, &whole.entities);
        let eval = self.evaluation_of(&response);
        self.decision_from(eval, agent, parts.kind, parts.target)
    }
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
    input: ContextInput<'_>,
    taint: &[String],
) -> Result<Request, Decision> {
    let context = request::context(input, taint)?;
    Request::new(
        slice.principal.clone(),
        slice.action.clone(),
        slice.resource.clone(),
        context,
        None,
    )
    .map_err(|e| Decision::refuse(format!("request cannot be built: {e}")))
}
