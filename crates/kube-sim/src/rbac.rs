//! RBAC evaluation: for checking what a client asked for (`GET /kube-sim/requests`) against the
//! roles shipped for it, and for answering SelfSubjectAccessReview and SelfSubjectRulesReview
//! from the roles and bindings stored. kube-sim itself authorises nothing: every request acts as
//! [`ADMIN`] (group `system:masters`), unless it impersonates someone (`Impersonate-User`,
//! `Impersonate-Group`), which only the reviews take into account.

use axum::http::HeaderMap;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde_json::{Value, json};

/// The user every request acts as.
pub const ADMIN: &str = "kube-sim-admin";
/// The group that may do anything (kube-apiserver's privileged group).
pub const MASTERS: &str = "system:masters";
const AUTHENTICATED: &str = "system:authenticated";

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    pub user: String,
    pub groups: Vec<String>,
}

impl Requester {
    /// [`ADMIN`], or the user the impersonation headers name (with `system:authenticated`, and
    /// for a service account its `system:serviceaccounts` groups, as kube-apiserver adds them).
    pub fn from_headers(h: &HeaderMap) -> Self {
        let Some(user) = h.get("impersonate-user").and_then(|v| v.to_str().ok()) else {
            return Self {
                user: ADMIN.to_owned(),
                groups: vec![MASTERS.to_owned(), AUTHENTICATED.to_owned()],
            };
        };
        let mut groups: Vec<String> = h
            .get_all("impersonate-group")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        if let Some(ns) = user
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split(':').next())
            && groups.is_empty()
        {
            groups.push("system:serviceaccounts".to_owned());
            groups.push(format!("system:serviceaccounts:{ns}"));
        }
        if user != "system:anonymous" && !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_owned());
        }
        Self {
            user: user.to_owned(),
            groups,
        }
    }

    fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS)
    }
}

/// The stored RBAC objects.
#[derive(Debug, Default)]
pub struct Policy {
    pub cluster_roles: Vec<ClusterRole>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    pub roles: Vec<Role>,
    pub role_bindings: Vec<RoleBinding>,
}

/// A rule that applies, and where it comes from (for upstream's "allowed by" reason).
struct Granted<'a> {
    rule: &'a PolicyRule,
    reason: String,
}

impl Policy {
    fn binds(
        subjects: Option<&Vec<k8s_openapi::api::rbac::v1::Subject>>,
        who: &Requester,
        ns: &str,
    ) -> Option<String> {
        subjects?.iter().find_map(|s| {
            let hit = match s.kind.as_str() {
                "User" => s.name == who.user,
                "Group" => who.groups.contains(&s.name),
                "ServiceAccount" => {
                    let sa_ns = s
                        .namespace
                        .as_deref()
                        .filter(|n| !n.is_empty())
                        .unwrap_or(ns);
                    who.user == format!("system:serviceaccount:{sa_ns}:{}", s.name)
                }
                _ => false,
            };
            hit.then(|| format!("{} {:?}", s.kind, s.name))
        })
    }

    fn cluster_role(&self, name: &str) -> Option<&ClusterRole> {
        self.cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
    }

    /// The rules that hold for `who` in `namespace` (cluster-wide ones always).
    fn granted(&self, who: &Requester, namespace: &str) -> Vec<Granted<'_>> {
        let mut out = Vec::new();
        for b in &self.cluster_role_bindings {
            let Some(subject) = Self::binds(b.subjects.as_ref(), who, "") else {
                continue;
            };
            if let Some(role) = self.cluster_role(&b.role_ref.name) {
                let reason = format!(
                    "RBAC: allowed by ClusterRoleBinding {:?} of ClusterRole {:?} to {subject}",
                    b.metadata.name.as_deref().unwrap_or_default(),
                    b.role_ref.name
                );
                for rule in role.rules.iter().flatten() {
                    out.push(Granted {
                        rule,
                        reason: reason.clone(),
                    });
                }
            }
        }
        for b in &self.role_bindings {
            let ns = b.metadata.namespace.as_deref().unwrap_or_default();
            if ns != namespace || namespace.is_empty() {
                continue;
            }
            let Some(subject) = Self::binds(b.subjects.as_ref(), who, ns) else {
                continue;
            };
            let rules: Vec<&PolicyRule> = if b.role_ref.kind == "ClusterRole" {
                self.cluster_role(&b.role_ref.name)
                    .and_then(|r| r.rules.as_ref())
                    .map(|r| r.iter().collect())
                    .unwrap_or_default()
            } else {
                self.roles
                    .iter()
                    .find(|r| {
                        r.metadata.name.as_deref() == Some(b.role_ref.name.as_str())
                            && r.metadata.namespace.as_deref() == Some(ns)
                    })
                    .and_then(|r| r.rules.as_ref())
                    .map(|r| r.iter().collect())
                    .unwrap_or_default()
            };
            let reason = format!(
                "RBAC: allowed by RoleBinding {:?} of {} {:?} to {subject}",
                format!("{}/{ns}", b.metadata.name.as_deref().unwrap_or_default()),
                b.role_ref.kind,
                b.role_ref.name
            );
            for rule in rules {
                out.push(Granted {
                    rule,
                    reason: reason.clone(),
                });
            }
        }
        out
    }

    /// Answers a SelfSubjectAccessReview's `spec` for `who`: `status` as kube-apiserver fills it.
    pub fn access_review(&self, who: &Requester, spec: &Value) -> Value {
        if who.is_master() {
            return json!({"allowed": true});
        }
        let ra = &spec["resourceAttributes"];
        let nra = &spec["nonResourceAttributes"];
        let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let found = if ra.is_object() {
            let namespace = s(ra, "namespace");
            let mut resource = s(ra, "resource");
            if !s(ra, "subresource").is_empty() {
                resource = format!("{resource}/{}", s(ra, "subresource"));
            }
            let (verb, group, name) = (s(ra, "verb"), s(ra, "group"), s(ra, "name"));
            self.granted(who, &namespace)
                .into_iter()
                .find(|g| rule_allows_resource(g.rule, &verb, &group, &resource, &name))
        } else if nra.is_object() {
            let (verb, path) = (s(nra, "verb"), s(nra, "path"));
            self.granted(who, "")
                .into_iter()
                .find(|g| rule_allows_path(g.rule, &verb, &path))
        } else {
            None
        };
        match found {
            Some(g) => json!({"allowed": true, "reason": g.reason}),
            None => json!({"allowed": false}),
        }
    }

    /// Answers a SelfSubjectRulesReview for `who` in `namespace`.
    pub fn rules_review(&self, who: &Requester, namespace: &str) -> Value {
        let mut resource_rules = Vec::new();
        let mut non_resource_rules = Vec::new();
        if who.is_master() {
            resource_rules.push(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
            non_resource_rules.push(json!({"verbs": ["*"], "nonResourceURLs": ["*"]}));
        }
        for g in self.granted(who, namespace) {
            let r = g.rule;
            if r.non_resource_urls.as_ref().is_some_and(|u| !u.is_empty()) {
                non_resource_rules
                    .push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
            } else {
                let mut rule =
                    json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
                if let Some(names) = r.resource_names.as_ref().filter(|n| !n.is_empty()) {
                    rule["resourceNames"] = json!(names);
                }
                resource_rules.push(rule);
            }
        }
        json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false})
    }
}

fn listed(list: Option<&Vec<String>>, want: &str) -> bool {
    list.is_some_and(|l| l.iter().any(|x| x == want || x == "*"))
}

/// Whether `rule` grants `verb` on `resource` (with `/subresource`) of `group`, named `name`
/// (empty: no name), as RBAC decides.
pub fn rule_allows_resource(
    rule: &PolicyRule,
    verb: &str,
    group: &str,
    resource: &str,
    name: &str,
) -> bool {
    let resource_ok = rule.resources.as_ref().is_some_and(|l| {
        l.iter().any(|x| {
            x == "*"
                || x == resource
                || x.strip_prefix("*/")
                    .is_some_and(|sub| resource.split_once('/').is_some_and(|(_, s)| s == sub))
        })
    });
    let names_ok = rule
        .resource_names
        .as_ref()
        .is_none_or(|n| n.is_empty() || n.iter().any(|x| x == name));
    rule.verbs.iter().any(|v| v == verb || v == "*")
        && listed(rule.api_groups.as_ref(), group)
        && resource_ok
        && names_ok
}

/// Whether `rule` grants `verb` on the non-resource `path` (`nonResourceURLs`, a trailing `*`
/// is a prefix).
pub fn rule_allows_path(rule: &PolicyRule, verb: &str, path: &str) -> bool {
    rule.verbs.iter().any(|v| v == verb || v == "*")
        && rule.non_resource_urls.as_ref().is_some_and(|u| {
            u.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => p == path,
            })
        })
}

/// Every rule of the ClusterRoles and Roles among `docs` (objects of a manifest), to check a
/// client's requests against all it is granted. (A Role's rules hold only in its namespace;
/// callers check requests of that namespace.)
pub fn rules_of(docs: &[serde_json::Value]) -> Vec<PolicyRule> {
    docs.iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
        .filter_map(|d| serde_json::from_value::<Vec<PolicyRule>>(d["rules"].clone()).ok())
        .flatten()
        .collect()
}

/// Whether `rules` grant `verb` on `resource` (a plural, with `/subresource` if any) of API group
/// `group` (empty for core), as RBAC decides for requests without a resource name.
pub fn allows(rules: &[PolicyRule], verb: &str, group: &str, resource: &str) -> bool {
    rules
        .iter()
        .any(|r| rule_allows_resource(r, verb, group, resource, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
        let own = |l: &[&str]| Some(l.iter().map(|s| (*s).to_owned()).collect());
        PolicyRule {
            api_groups: own(groups),
            resources: own(resources),
            verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
            ..PolicyRule::default()
        }
    }

    #[test]
    fn rules_grant_by_group_resource_and_verb() {
        let rules = [
            rule(&[""], &["nodes"], &["get", "patch"]),
            rule(&["", "events.k8s.io"], &["events"], &["create"]),
            rule(&["coordination.k8s.io"], &["*"], &["*"]),
        ];
        // (verb, group, resource, granted)
        let cases = [
            ("get", "", "nodes", true),
            ("delete", "", "nodes", false),
            ("patch", "", "nodes/status", false),
            ("create", "events.k8s.io", "events", true),
            ("create", "", "events", true),
            ("create", "apps", "events", false),
            ("update", "coordination.k8s.io", "leases", true),
            ("get", "coordination.k8s.io", "leases/status", true),
        ];
        for (verb, group, resource, granted) in cases {
            assert_eq!(
                allows(&rules, verb, group, resource),
                granted,
                "{verb} {group}/{resource}"
            );
        }
        assert!(!allows(&[], "get", "", "nodes"));
    }
}
