//! `--controllers`: which controllers run, with upstream's syntax (`*`, `-name`, aliases).

use std::collections::BTreeSet;

/// The controllers this ccm has, by canonical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ControllerName {
    CloudNode,
    CloudNodeLifecycle,
    Route,
    Service,
}

impl ControllerName {
    pub const ALL: [ControllerName; 4] = [
        Self::CloudNode,
        Self::CloudNodeLifecycle,
        Self::Route,
        Self::Service,
    ];

    /// The canonical name (what `running_managed_controllers` reports).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CloudNode => "cloud-node",
            Self::CloudNodeLifecycle => "cloud-node-lifecycle",
            Self::Route => "route",
            Self::Service => "service",
        }
    }

    /// Canonical names and upstream's aliases.
    fn parse(s: &str) -> Option<Self> {
        match s {
            "cloud-node" | "cloud-node-controller" => Some(Self::CloudNode),
            "cloud-node-lifecycle" | "cloud-node-lifecycle-controller" => {
                Some(Self::CloudNodeLifecycle)
            }
            "route" | "node-route-controller" => Some(Self::Route),
            "service" | "service-lb-controller" => Some(Self::Service),
            _ => None,
        }
    }
}

/// Parses `--controllers` into the enabled set. For each controller the first item naming it
/// decides (`name` enables, `-name` disables); otherwise it runs iff `*` is listed.
pub fn parse_controllers(items: &[String]) -> Result<BTreeSet<ControllerName>, String> {
    let mut star = false;
    let mut decided: Vec<(ControllerName, bool)> = Vec::new();
    for raw in items {
        let item = raw.trim();
        if item.is_empty() {
            continue;
        }
        if item == "*" {
            star = true;
            continue;
        }
        let (enable, name) = match item.strip_prefix('-') {
            Some(n) => (false, n),
            None => (true, item),
        };
        let c = ControllerName::parse(name).ok_or_else(|| {
            format!(
                "{item:?} is not a known controller; known controllers are cloud-node, cloud-node-lifecycle, route and service (aliases: cloud-node-controller, cloud-node-lifecycle-controller, node-route-controller, service-lb-controller)"
            )
        })?;
        if !decided.iter().any(|(d, _)| *d == c) {
            decided.push((c, enable));
        }
    }
    Ok(ControllerName::ALL
        .into_iter()
        .filter(|c| {
            decided
                .iter()
                .find(|(d, _)| d == c)
                .map_or(star, |(_, e)| *e)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ControllerName::*;

    fn parse(s: &str) -> Result<Vec<ControllerName>, String> {
        let items: Vec<String> = s.split(',').map(str::to_owned).collect();
        parse_controllers(&items).map(|set| set.into_iter().collect())
    }

    #[test]
    fn upstream_semantics() {
        let table: &[(&str, &[ControllerName])] = &[
            ("*", &[CloudNode, CloudNodeLifecycle, Route, Service]),
            ("*,-route", &[CloudNode, CloudNodeLifecycle, Service]),
            ("-route,*", &[CloudNode, CloudNodeLifecycle, Service]),
            ("cloud-node", &[CloudNode]),
            (
                "cloud-node-controller,service-lb-controller",
                &[CloudNode, Service],
            ),
            (
                "*,-node-route-controller,-service",
                &[CloudNode, CloudNodeLifecycle],
            ),
            // The first item naming a controller wins.
            ("route,-route", &[Route]),
            ("-route,route,*", &[CloudNode, CloudNodeLifecycle, Service]),
            ("", &[]),
        ];
        for (input, want) in table {
            assert_eq!(parse(input).unwrap(), *want, "{input:?}");
        }
    }

    #[test]
    fn unknown_names_are_rejected_with_the_list() {
        let e = parse("*,-nodeipam").unwrap_err();
        assert!(
            e.contains("\"-nodeipam\"") && e.contains("cloud-node-lifecycle"),
            "{e}"
        );
        assert!(parse("bogus").is_err());
    }
}
