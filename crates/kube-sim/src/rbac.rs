//! RBAC evaluation, for checking what a client asked for (`GET /kube-sim/requests`) against the
//! roles shipped for it. kube-sim itself authorises nothing.

use k8s_openapi::api::rbac::v1::PolicyRule;

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
    let has = |list: &Option<Vec<String>>, want: &str| {
        list.as_ref()
            .is_some_and(|l| l.iter().any(|x| x == want || x == "*"))
    };
    rules.iter().any(|r| {
        r.verbs.iter().any(|v| v == verb || v == "*")
            && has(&r.api_groups, group)
            && has(&r.resources, resource)
    })
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
