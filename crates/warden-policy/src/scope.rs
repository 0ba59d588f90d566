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
use warden_core::{ActionKind, AgentId, ToolRef};

/// The entity types and the action of the base schema, parsed once.
pub(crate) struct Model {
    agent: EntityTypeName,
    server: EntityTypeName,
    tool: EntityTypeName,
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
            action: type_name("Action"),
        }
    }

    /// `Agent::"<name>"`.
    pub(crate) fn agent_uid(&self, agent: &AgentId) -> EntityUid {
        EntityUid::from_type_name_and_id(self.agent.clone(), EntityId::new(agent.as_str()))
    }

    /// `Tool::"<server>/<name>"`.
    pub(crate) fn tool_uid(&self, tool: &ToolRef) -> EntityUid {
        EntityUid::from_type_name_and_id(self.tool.clone(), EntityId::new(tool.id()))
    }

    /// `Server::"<server>"`.
    pub(crate) fn server_uid(&self, tool: &ToolRef) -> EntityUid {
        EntityUid::from_type_name_and_id(self.server.clone(), EntityId::new(tool.server.as_str()))
    }

    /// `Action::"call_tool"` and its kin.
    pub(crate) fn action_uid(&self, kind: ActionKind) -> EntityUid {
        EntityUid::from_type_name_and_id(self.action.clone(), EntityId::new(kind.as_str()))
    }
}

/// What a principal or resource scope requires of the request's entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScopeKey {
    /// Any entity of the slot's type.
    Any,
    /// Exactly this entity (`== uid`).
    Exactly(EntityUid),
    /// This entity or one of its descendants (`in uid`).
    Within(EntityUid),
    /// Nothing this model can produce (a type that never fills the slot).
    Never,
}

impl ScopeKey {
    /// The key of a principal scope. Principals are agents, which have no parents.
    pub(crate) fn of_principal(c: PrincipalConstraint) -> Self {
        let m = &*MODEL;
        match c {
            PrincipalConstraint::Any => ScopeKey::Any,
            PrincipalConstraint::Eq(uid) => ScopeKey::Exactly(uid),
            PrincipalConstraint::In(uid) => ScopeKey::Within(uid),
            PrincipalConstraint::Is(t) if t == m.agent => ScopeKey::Any,
            PrincipalConstraint::IsIn(t, uid) if t == m.agent => ScopeKey::Within(uid),
            PrincipalConstraint::Is(_) | PrincipalConstraint::IsIn(..) => ScopeKey::Never,
        }
    }

    /// The key of a resource scope. Resources are tools, whose one parent is their server.
    pub(crate) fn of_resource(c: ResourceConstraint) -> Self {
        let m = &*MODEL;
        match c {
            ResourceConstraint::Any => ScopeKey::Any,
            ResourceConstraint::Eq(uid) => ScopeKey::Exactly(uid),
            ResourceConstraint::In(uid) => ScopeKey::Within(uid),
            ResourceConstraint::Is(t) if t == m.tool => ScopeKey::Any,
            ResourceConstraint::IsIn(t, uid) if t == m.tool => ScopeKey::Within(uid),
            ResourceConstraint::Is(_) | ResourceConstraint::IsIn(..) => ScopeKey::Never,
        }
    }

    /// Whether an entity `uid` with these `ancestors` satisfies the scope.
    ///
    /// `Any` relies on the request always putting an entity of the slot's type there (an
    /// Agent as principal, a Tool as resource); `of_principal`/`of_resource` turned
    /// `is OtherType` into `Never`.
    pub(crate) fn matches(&self, uid: &EntityUid, ancestors: &[&EntityUid]) -> bool {
        match self {
            ScopeKey::Any => true,
            ScopeKey::Exactly(u) => u == uid,
            ScopeKey::Within(u) => u == uid || ancestors.contains(&u),
            ScopeKey::Never => false,
        }
    }

    fn bucket(&self) -> Option<&EntityUid> {
        match self {
            ScopeKey::Exactly(u) | ScopeKey::Within(u) => Some(u),
            ScopeKey::Any | ScopeKey::Never => None,
        }
    }
}

/// Whether an action scope admits `action`. Actions have no groups in Warden's schema
/// (`call_tool` is declared in the base schema with no parents), so `in [..]` is membership.
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
    pub(crate) principal: &'a EntityUid,
    pub(crate) action: &'a EntityUid,
    pub(crate) tool: &'a EntityUid,
    pub(crate) server: &'a EntityUid,
}

impl Scope {
    pub(crate) fn matches(&self, r: &RequestScope<'_>) -> bool {
        self.principal.matches(r.principal, &[])
            && action_matches(&self.action, r.action)
            && self.resource.matches(r.tool, &[r.server])
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
            None if *key == ScopeKey::Any => self.any.push(i),
            None => {}
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
        let by_resource = self.resource.lists(&[r.tool, r.server]);
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
