//! The kinds kube-sim serves and their per-kind rules (scope, status split, update rules,
//! field selectors, generation, delete response, discovery names).

/// How names of a kind are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain (most kinds).
    Subdomain,
    /// DNS-1035 label (Services).
    Label1035,
    /// DNS-1123 label (Namespaces).
    Label1123,
    /// Anything usable as a URL path segment (RBAC kinds: `system:cloud-controller-manager`).
    PathSegment,
}

/// Everything the server needs to know about one served resource.
#[derive(Debug)]
pub struct ResourceDef {
    /// Storage key; two defs with the same storage share objects (the two Event APIs).
    pub storage: &'static str,
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    /// Has a `/status` subresource: main writes keep the old status, status writes keep the rest.
    pub status: bool,
    /// PUT without a resourceVersion is allowed.
    pub unconditional_update: bool,
    /// PUT of a missing object creates it.
    pub create_on_update: bool,
    /// Field selectors beyond `metadata.name` (and `metadata.namespace` for namespaced kinds).
    pub field_selectors: &'static [&'static str],
    /// `metadata.generation` is kept (starts at 1, bumps on non-metadata or label changes).
    pub generation: bool,
    /// DELETE answers with the deleted object rather than a Status.
    pub return_deleted_object: bool,
    pub name_rule: NameRule,
    /// Has a `/scale` subresource (autoscaling/v1 `Scale` over `spec.replicas`).
    pub scale: bool,
    /// A review: only `create`, answered from what is stored and never stored itself
    /// (SelfSubjectAccessReview and SelfSubjectRulesReview).
    pub review: bool,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The group used in Status details (`""` for core).
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn supports_field(&self, field: &str) -> bool {
        field == "metadata.name"
            || (self.namespaced && field == "metadata.namespace")
            || self.field_selectors.contains(&field)
    }
}

pub const NAMESPACES: &str = "namespaces";
pub const NODES: &str = "nodes";
pub const SERVICES: &str = "services";
pub const ENDPOINTSLICES: &str = "endpointslices.discovery.k8s.io";
pub const LEASES: &str = "leases.coordination.k8s.io";
pub const EVENTS: &str = "events";
pub const CONFIGMAPS: &str = "configmaps";
pub const PODS: &str = "pods";
pub const SERVICEACCOUNTS: &str = "serviceaccounts";
pub const SECRETS: &str = "secrets";
pub const DEPLOYMENTS: &str = "deployments.apps";
pub const CLUSTERROLES: &str = "clusterroles.rbac.authorization.k8s.io";
pub const CLUSTERROLEBINDINGS: &str = "clusterrolebindings.rbac.authorization.k8s.io";
pub const ROLES: &str = "roles.rbac.authorization.k8s.io";
pub const ROLEBINDINGS: &str = "rolebindings.rbac.authorization.k8s.io";
pub const SELF_SUBJECT_ACCESS_REVIEWS: &str = "selfsubjectaccessreviews.authorization.k8s.io";
pub const SELF_SUBJECT_RULES_REVIEWS: &str = "selfsubjectrulesreviews.authorization.k8s.io";

const BASE: ResourceDef = ResourceDef {
    storage: "",
    group: "",
    version: "v1",
    kind: "",
    plural: "",
    singular: "",
    short_names: &[],
    categories: &[],
    namespaced: true,
    status: false,
    unconditional_update: true,
    create_on_update: false,
    field_selectors: &[],
    generation: false,
    return_deleted_object: false,
    name_rule: NameRule::Subdomain,
    scale: false,
    review: false,
};

/// Every served resource.
pub static RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        storage: NAMESPACES,
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        short_names: &["ns"],
        namespaced: false,
        status: true,
        field_selectors: &["status.phase"],
        name_rule: NameRule::Label1123,
        ..BASE
    },
    ResourceDef {
        storage: NODES,
        kind: "Node",
        plural: "nodes",
        singular: "node",
        short_names: &["no"],
        namespaced: false,
        status: true,
        field_selectors: &["spec.unschedulable"],
        ..BASE
    },
    ResourceDef {
        storage: SERVICES,
        kind: "Service",
        plural: "services",
        singular: "service",
        short_names: &["svc"],
        categories: &["all"],
        status: true,
        create_on_update: true,
        field_selectors: &["spec.clusterIP", "spec.type"],
        return_deleted_object: true,
        name_rule: NameRule::Label1035,
        ..BASE
    },
    ResourceDef {
        storage: PODS,
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        short_names: &["po"],
        categories: &["all"],
        status: true,
        field_selectors: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ..BASE
    },
    ResourceDef {
        storage: CONFIGMAPS,
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        short_names: &["cm"],
        create_on_update: false,
        ..BASE
    },
    // Stored and served so that the manifests we ship (RBAC, the ccm's Deployment, its
    // cloud-config Secret) apply; no controller acts on them (no pods from Deployments, no
    // authorization from RBAC).
    ResourceDef {
        storage: SERVICEACCOUNTS,
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        short_names: &["sa"],
        ..BASE
    },
    ResourceDef {
        storage: SECRETS,
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        field_selectors: &["type"],
        ..BASE
    },
    ResourceDef {
        storage: EVENTS,
        kind: "Event",
        plural: "events",
        singular: "event",
        short_names: &["ev"],
        create_on_update: true,
        field_selectors: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ..BASE
    },
    ResourceDef {
        storage: ENDPOINTSLICES,
        group: "discovery.k8s.io",
        kind: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        generation: true,
        ..BASE
    },
    ResourceDef {
        storage: LEASES,
        group: "coordination.k8s.io",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        unconditional_update: false,
        create_on_update: true,
        ..BASE
    },
    ResourceDef {
        storage: DEPLOYMENTS,
        group: "apps",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        short_names: &["deploy"],
        categories: &["all"],
        status: true,
        scale: true,
        generation: true,
        ..BASE
    },
    ResourceDef {
        storage: CLUSTERROLES,
        group: "rbac.authorization.k8s.io",
        kind: "ClusterRole",
        plural: "clusterroles",
        singular: "clusterrole",
        name_rule: NameRule::PathSegment,
        namespaced: false,
        ..BASE
    },
    ResourceDef {
        storage: CLUSTERROLEBINDINGS,
        group: "rbac.authorization.k8s.io",
        kind: "ClusterRoleBinding",
        plural: "clusterrolebindings",
        singular: "clusterrolebinding",
        name_rule: NameRule::PathSegment,
        namespaced: false,
        ..BASE
    },
    ResourceDef {
        storage: ROLES,
        group: "rbac.authorization.k8s.io",
        kind: "Role",
        plural: "roles",
        singular: "role",
        name_rule: NameRule::PathSegment,
        ..BASE
    },
    ResourceDef {
        storage: ROLEBINDINGS,
        group: "rbac.authorization.k8s.io",
        kind: "RoleBinding",
        plural: "rolebindings",
        singular: "rolebinding",
        name_rule: NameRule::PathSegment,
        ..BASE
    },
    ResourceDef {
        storage: SELF_SUBJECT_ACCESS_REVIEWS,
        group: "authorization.k8s.io",
        kind: "SelfSubjectAccessReview",
        plural: "selfsubjectaccessreviews",
        singular: "selfsubjectaccessreview",
        namespaced: false,
        review: true,
        ..BASE
    },
    ResourceDef {
        storage: SELF_SUBJECT_RULES_REVIEWS,
        group: "authorization.k8s.io",
        kind: "SelfSubjectRulesReview",
        plural: "selfsubjectrulesreviews",
        singular: "selfsubjectrulesreview",
        namespaced: false,
        review: true,
        ..BASE
    },
    ResourceDef {
        storage: EVENTS,
        group: "events.k8s.io",
        kind: "Event",
        plural: "events",
        singular: "event",
        short_names: &["ev"],
        create_on_update: true,
        field_selectors: &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "reason",
            "reportingController",
            "type",
        ],
        ..BASE
    },
];

/// The resource served at `group`/`version`/`plural`.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The def whose storage form is canonical for `storage` (the first registered).
pub fn by_storage(storage: &str) -> Option<&'static ResourceDef> {
    RESOURCES.iter().find(|r| r.storage == storage)
}

/// The API groups other than core, in discovery order, with their versions.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert_eq!(lookup("", "v1", "nodes").unwrap().kind, "Node");
        assert_eq!(
            lookup("discovery.k8s.io", "v1", "endpointslices")
                .unwrap()
                .kind,
            "EndpointSlice"
        );
        assert!(lookup("", "v1", "endpointslices").is_none());
        assert_eq!(
            lookup("events.k8s.io", "v1", "events").unwrap().storage,
            lookup("", "v1", "events").unwrap().storage
        );
        assert_eq!(
            groups(),
            [
                ("discovery.k8s.io", "v1"),
                ("coordination.k8s.io", "v1"),
                ("apps", "v1"),
                ("rbac.authorization.k8s.io", "v1"),
                ("authorization.k8s.io", "v1"),
                ("events.k8s.io", "v1")
            ]
        );
        assert_eq!(
            by_storage(EVENTS).unwrap().group,
            "",
            "core/v1 is the canonical Event form"
        );
    }

    #[test]
    fn field_selector_support() {
        let svc = lookup("", "v1", "services").unwrap();
        assert!(svc.supports_field("metadata.name"));
        assert!(svc.supports_field("metadata.namespace"));
        assert!(svc.supports_field("spec.type"));
        assert!(!svc.supports_field("spec.foo"));
        let node = lookup("", "v1", "nodes").unwrap();
        assert!(!node.supports_field("metadata.namespace"));
    }
}
