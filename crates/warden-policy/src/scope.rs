//! The entity model every request is built on, and the scope index that picks, for one
//! request, the policies whose scope can match it.
//!
//! Pruning by scope is exact, not a heuristic: in Cedar a policy is `scope && conditions`, and
//! a scope that does not match makes the whole policy false without evaluating (or erroring
//! on) its conditions. So evaluating only the matching policies gives the same answer as
//! evaluating all of them.

use std::collections::HashMap;
use std::sync::LazyLock;

use cedar_policy::{
    ActionConstraint, EntityId, EntityTypeName, EntityUid, PrincipalConstraint, ResourceConstraint,
};
use warden_core::{
    ActionKind, AgentId, HostRef, ProgramRef, PromptRef, ResourceRef, ServerName, ToolRef,
};

/// The entity types and the action of the base schema, parsed once.
pub(crate) struct Model {
    agent: EntityTypeName,
    server: EntityTypeName,
    tool: EntityTypeName,
    resource: EntityTypeName,
    prompt: EntityTypeName,
    host: EntityTypeName,
    program: EntityTypeName,
    action: EntityTypeName,
}

pub(crate) static MODEL: LazyLock<Model> = LazyLock::new(Model::new);

fn type_name(name: &str) -> EntityTypeName {
    // The names are constants of the base schema, valid Cedar identifiers.
    #[allow(clippy::expect_used)]
    name.parse().expect("constant entity type name parses")
}

impl Model {
    fn new() -> Self {
        Self {
            agent: type_name("Agent"),
            server: type_name("Server"),
            tool: type_name("Tool"),
            resource: type_name("Resource"),
            prompt: type_name("Prompt"),
            host: type_name("Host"),
            program: type_name("Program"),
            action: type_name("Action"),
        }
    }

    fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }

    /// `Agent::"<name>"`.
    pub(crate) fn agent_uid(&self, agent: &AgentId) -> EntityUid {
        Self::uid(&self.agent, agent.as_str())
    }

    /// `Server::"<server>"`.
    pub(crate) fn server_uid(&self, server: &ServerName) -> EntityUid {
        Self::uid(&self.server, server.as_str())
    }

    /// `Tool::"<server>/<name>"`.
    pub(crate) fn tool_uid(&self, tool: &ToolRef) -> EntityUid {
        Self::uid(&self.tool, &tool.id())
    }

    /// `Resource::"<server>/<uri>"`.
    pub(crate) fn resource_uid(&self, resource: &ResourceRef) -> EntityUid {
        Self::uid(&self.resource, &resource.id())
    }

    /// `Prompt::"<server>/<name>"`.
    pub(crate) fn prompt_uid(&self, prompt: &PromptRef) -> EntityUid {
        Self::uid(&self.prompt, &prompt.id())
    }

    /// `Host::"<name or address>"`.
    pub(crate) fn host_uid(&self, host: &HostRef) -> EntityUid {
        Self::uid(&self.host, host.as_str())
    }

    /// `Program::"<path>"`.
    pub(crate) fn program_uid(&self, program: &ProgramRef) -> EntityUid {
        Self::uid(&self.program, program.as_str())
    }

    /// `Action::"call_tool"` and its kin.
    pub(crate) fn action_uid(&self, kind: ActionKind) -> EntityUid {
        Self::uid(&self.action, kind.as_str())
    }
}

/// What a principal or resource scope requires of the request's entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScopeKey {
    /// Any entity.
    Any,
    /// Exactly this entity (`== uid`).
    Exactly(EntityUid),
    /// This entity or one of its descendants (`in uid`).
    Within(EntityUid),
    /// Any entity of this type (`is T`).
    Is(EntityTypeName),
    /// An entity of this type that is this entity or one of its descendants (`is T in uid`).
    IsWithin(EntityTypeName, EntityUid),
}

impl ScopeKey {
    /// The key of a principal scope.
    pub(crate) fn of_principal(c: PrincipalConstraint) -> Self {
        match c {
            PrincipalConstraint::Any => ScopeKey::Any,
            PrincipalConstraint::Eq(uid) => ScopeKey::Exactly(uid),
            PrincipalConstraint::In(uid) => ScopeKey::Within(uid),
            PrincipalConstraint::Is(t) => ScopeKey::Is(t),
            PrincipalConstraint::IsIn(t, uid) => ScopeKey::IsWithin(t, uid),
        }
    }

    /// The key of a resource scope.
    pub(crate) fn of_resource(c: ResourceConstraint) -> Self {
        match c {
            ResourceConstraint::Any => ScopeKey::Any,
            ResourceConstraint::Eq(uid) => ScopeKey::Exactly(uid),
            ResourceConstraint::In(uid) => ScopeKey::Within(uid),
            ResourceConstraint::Is(t) => ScopeKey::Is(t),
            ResourceConstraint::IsIn(t, uid) => ScopeKey::IsWithin(t, uid),
        }
    }

    /// Whether an entity `uid` with these `ancestors` satisfies the scope.
    ///
    /// `ancestors` must be all of the entity's ancestors in the request's entities: in
    /// Warden's model a tool, resource or prompt has exactly one, its server; agents and
    /// servers have none.
    pub(crate) fn matches(&self, uid: &EntityUid, ancestors: &[&EntityUid]) -> bool {
        let within = |u: &EntityUid| u == uid || ancestors.contains(&u);
        match self {
            ScopeKey::Any => true,
            ScopeKey::Exactly(u) => u == uid,
            ScopeKey::Within(u) => within(u),
            ScopeKey::Is(t) => uid.type_name() == t,
            ScopeKey::IsWithin(t, u) => uid.type_name() == t && within(u),
        }
    }

    /// The entity a request must be (or descend from) to match, if the scope names one.
    fn bucket(&self) -> Option<&EntityUid> {
        match self {
            ScopeKey::Exactly(u) | ScopeKey::Within(u) | ScopeKey::IsWithin(_, u) => Some(u),
            ScopeKey::Any | ScopeKey::Is(_) => None,
        }
    }
}

/// Whether an action scope admits `action`. Actions have no groups in Warden's schema (each
/// is declared in the base schema with no parents), so `in [..]` is membership.
pub(crate) fn action_matches(c: &ActionConstraint, action: &EntityUid) -> bool {
    match c {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(u) => u == action,
        ActionConstraint::In(us) => us.contains(action),
    }
}

/// The scope of one policy, reduced to what the index needs.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub(crate) principal: ScopeKey,
    pub(crate) action: ActionConstraint,
    pub(crate) resource: ScopeKey,
}

/// The request's entities, as scopes see them.
pub(crate) struct RequestScope<'a> {
    /// An agent, or for a server-initiated action a server; neither has parents.
    pub(crate) principal: &'a EntityUid,
    pub(crate) action: &'a EntityUid,
    /// A tool, resource or prompt, or for a server-initiated action the agent.
    pub(crate) resource: &'a EntityUid,
    /// The resource's one parent (its server), if it has one.
    pub(crate) resource_parent: Option<&'a EntityUid>,
}

impl Scope {
    pub(crate) fn matches(&self, r: &RequestScope<'_>) -> bool {
        self.principal.matches(r.principal, &[])
            && action_matches(&self.action, r.action)
            && self
                .resource
                .matches(r.resource, r.resource_parent.as_slice())
    }
}

/// Policies grouped by one scope slot: those that take any entity, and those naming one.
#[derive(Debug, Default)]
struct Buckets {
    any: Vec<usize>,
    by_uid: HashMap<EntityUid, Vec<usize>>,
}

impl Buckets {
    fn insert(&mut self, key: &ScopeKey, i: usize) {
        match key.bucket() {
            Some(uid) => self.by_uid.entry(uid.clone()).or_default().push(i),
            // `is T` scopes are few; they are checked against each request's types.
            None => self.any.push(i),
        }
    }

    fn lists<'a>(&'a self, uids: &[&EntityUid]) -> Vec<&'a [usize]> {
        let mut lists = vec![self.any.as_slice()];
        lists.extend(
            uids.iter()
                .filter_map(|u| self.by_uid.get(*u).map(Vec::as_slice)),
        );
        lists
    }
}

/// Policies indexed by principal and by resource scope.
#[derive(Debug, Default)]
pub(crate) struct ScopeIndex {
    principal: Buckets,
    resource: Buckets,
}

impl ScopeIndex {
    /// Indexes `scopes` (position = policy index).
    pub(crate) fn new<'a>(scopes: impl IntoIterator<Item = &'a Scope>) -> Self {
        let mut index = Self::default();
        for (i, s) in scopes.into_iter().enumerate() {
            index.principal.insert(&s.principal, i);
            index.resource.insert(&s.resource, i);
        }
        index
    }

    /// Indexes (ascending) of the policies whose scope matches the request.
    pub(crate) fn select(&self, scopes: &[Scope], r: &RequestScope<'_>) -> Vec<usize> {
        let by_principal = self.principal.lists(&[r.principal]);
        let by_resource = match r.resource_parent {
            Some(parent) => self.resource.lists(&[r.resource, parent]),
            None => self.resource.lists(&[r.resource]),
        };
        let total = |ls: &[&[usize]]| ls.iter().map(|l| l.len()).sum::<usize>();
        // Walk the shorter side and check the full scope of each candidate.
        let lists = if total(&by_principal) <= total(&by_resource) {
            by_principal
        } else {
            by_resource
        };
        // INVARIANT: each policy sits in at most one bucket per slot, and the lists of one
        // slot are disjoint buckets, so no index appears twice.
        let mut selected: Vec<usize> = lists
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| scopes.get(i).is_some_and(|s| s.matches(r)))
            .collect();
        selected.sort_unstable();
        selected
    }
}
