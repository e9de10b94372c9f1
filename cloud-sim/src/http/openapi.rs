//! The OpenAPI document, generated from the handlers' annotations and the `cloud-api` types.

use axum::Json;
use cloud_api::{IDEMPOTENCY_KEY_HEADER, IDEMPOTENCY_KEY_PATTERN};
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{admin, backend_groups, events, instances, load_balancers, regions, routes};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "simcloud cloud-sim API",
        description = "A simulated cloud: regions, zones, instances, load balancers and route tables."
    ),
    paths(
        regions::regions,
        regions::zones,
        regions::zone,
        regions::instance_types,
        regions::whoami,
        regions::usage,
        instances::create,
        instances::batch_create,
        instances::list,
        instances::read,
        instances::update,
        instances::delete,
        instances::start,
        instances::stop,
        instances::terminate,
        load_balancers::create,
        load_balancers::list,
        load_balancers::read,
        load_balancers::update,
        load_balancers::delete,
        load_balancers::traffic,
        backend_groups::create,
        backend_groups::list,
        backend_groups::read,
        backend_groups::update,
        backend_groups::delete,
        routes::list_tables,
        routes::read_table,
        routes::create,
        routes::list,
        routes::read,
        routes::delete,
        events::list,
        admin::list_faults,
        admin::create_fault,
        admin::clear_faults,
        admin::delete_fault,
        admin::set_zone_state,
    ),
    components(schemas(cloud_api::ErrorCode)),
    modifiers(&CommonResponses)
)]
pub struct ApiDoc;

/// What an operation's shape says about the errors it can answer with, besides its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub has_body: bool,
    pub has_query: bool,
}

/// Every status an operation can answer with beyond its success, and why: the rules the
/// middleware, extractors and faults apply to every route, by the route's shape. Pure, so the
/// table is tested without a server. (A fault rule may also ask for any status at all: that is
/// the `default` response every operation carries.)
pub fn error_statuses(op: Shape<'_>) -> Vec<(u16, &'static str)> {
    let mut out = vec![(
        401,
        "UNAUTHENTICATED: the server has a tokens file and the bearer token is missing or unknown",
    )];
    if op.path.starts_with("/v1/admin/") {
        out.push((403, "PERMISSION_DENIED: the token is not an admin's"));
    }
    let has_params = op.path.contains('{');
    if has_params || op.has_body || op.has_query {
        out.push((
            400,
            "INVALID_ARGUMENT: a malformed ID, query parameter, header or body",
        ));
    }
    if has_params {
        out.push((404, "NOT_FOUND: no such resource in the caller's project"));
    }
    let mutates = op.method != "get";
    if mutates {
        out.push((
            409,
            "ALREADY_EXISTS, CONFLICT, INCORRECT_STATE, QUOTA_EXCEEDED or IDEMPOTENCY_KEY_REUSED",
        ));
    }
    if mutates && has_params {
        out.push((412, "PRECONDITION_FAILED: If-Match does not match the etag"));
    }
    if op.has_body {
        out.push((413, "PAYLOAD_TOO_LARGE: the body is over 1 MiB"));
        out.push((415, "UNSUPPORTED_MEDIA_TYPE: the body is not JSON"));
        out.push((
            422,
            "VALIDATION_FAILED: a field is invalid; `field` names it",
        ));
    }
    out.push((
        429,
        "THROTTLED: the request-rate limit or a fault; honour Retry-After",
    ));
    out.push((500, "INTERNAL: a bug or a storage failure"));
    out.push((503, "UNAVAILABLE: an injected fault"));
    out
}

/// Where an operation's answer leads (OpenAPI links): from operation, on status, the target
/// operations' parameters as runtime expressions, and the targets. A created resource's ID leads
/// to its reads, updates, actions and delete; a list of route tables to its tables. A client or
/// a stateful tester follows them to real resources instead of guessing IDs.
type LinkRule = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

const LINKS: &[LinkRule] = &[
    (
        "instances_create",
        "201",
        &[("id", "$response.body#/id")],
        &[
            "instances_read",
            "instances_update",
            "instances_stop",
            "instances_start",
            "instances_terminate",
            "instances_delete",
        ],
    ),
    (
        "load_balancers_create",
        "201",
        &[("id", "$response.body#/id")],
        &[
            "load_balancers_read",
            "load_balancers_update",
            "load_balancers_traffic",
            "load_balancers_delete",
        ],
    ),
    (
        "backend_groups_create",
        "201",
        &[("id", "$response.body#/id")],
        &[
            "backend_groups_read",
            "backend_groups_update",
            "backend_groups_delete",
        ],
    ),
    (
        "routes_create",
        "201",
        &[
            ("id", "$response.body#/id"),
            ("table", "$request.path.table"),
        ],
        &["routes_read", "routes_delete"],
    ),
    (
        "routes_list_tables",
        "200",
        &[("table", "$response.body#/items/0/id")],
        &["routes_read_table", "routes_list", "routes_create"],
    ),
    (
        "admin_create_fault",
        "201",
        &[("id", "$response.body#/id")],
        &["admin_delete_fault"],
    ),
];

/// Adds [`error_statuses`] (and a `default` for fault-injected statuses) to every operation,
/// gives each a unique `operationId` (`<tag>_<handler>`), and links creates to what follows.
struct CommonResponses;

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ApiErrorBody")))
                    .build(),
            )
            .build(),
    )
}

impl Modify for CommonResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops: [(&str, &mut Option<Operation>); 5] = [
                ("get", &mut item.get),
                ("post", &mut item.post),
                ("put", &mut item.put),
                ("patch", &mut item.patch),
                ("delete", &mut item.delete),
            ];
            for (method, op) in ops {
                let Some(op) = op else { continue };
                let tag = op.tags.as_ref().and_then(|t| t.first()).cloned();
                if let (Some(tag), Some(id)) = (tag, op.operation_id.as_mut()) {
                    *id = format!("{}_{id}", tag.replace('-', "_"));
                }
                for p in op.parameters.iter_mut().flatten().filter(|p| {
                    matches!(p.parameter_in, ParameterIn::Header)
                        && p.name.eq_ignore_ascii_case(IDEMPOTENCY_KEY_HEADER)
                }) {
                    p.schema = Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some(IDEMPOTENCY_KEY_PATTERN))
                            .into(),
                    );
                }
                let has_query = op.parameters.as_ref().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| matches!(p.parameter_in, ParameterIn::Query))
                });
                let shape = Shape {
                    method,
                    path,
                    has_body: op.request_body.is_some(),
                    has_query,
                };
                let responses = &mut op.responses.responses;
                for (status, why) in error_statuses(shape) {
                    responses
                        .entry(status.to_string())
                        .or_insert_with(|| error_response(why));
                }
                responses.insert(
                    "default".into(),
                    error_response("any other status a fault rule asks for"),
                );
                let id = op.operation_id.clone().unwrap_or_default();
                for (_, status, params, targets) in LINKS.iter().filter(|(from, ..)| *from == id) {
                    let Some(RefOr::T(response)) = responses.get_mut(*status) else {
                        continue;
                    };
                    for target in *targets {
                        let mut link = LinkBuilder::new().operation_id(*target);
                        for (name, expression) in *params {
                            link = link.parameter(*name, *expression);
                        }
                        response
                            .links
                            .insert((*target).to_owned(), RefOr::T(link.build()));
                    }
                }
            }
        }
    }
}

/// The document as served. utoipa 5.5 serialises a Link's `operationId`/`operationRef` in
/// snake case (its `Link` lacks serde's camel-case rename), which OpenAPI tools do not read; the
/// keys are renamed here.
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
    if let Some(paths) = doc["paths"].as_object_mut() {
        for op in paths
            .values_mut()
            .filter_map(|p| p.as_object_mut())
            .flat_map(|p| p.values_mut())
        {
            let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) else {
                continue;
            };
            for link in responses
                .values_mut()
                .filter_map(|r| r.get_mut("links").and_then(|l| l.as_object_mut()))
                .flat_map(|l| l.values_mut())
                .filter_map(|l| l.as_object_mut())
            {
                for (from, to) in [
                    ("operation_id", "operationId"),
                    ("operation_ref", "operationRef"),
                ] {
                    if let Some(v) = link.remove(from) {
                        link.insert(to.to_owned(), v);
                    }
                }
            }
        }
    }
    doc
}

/// A DNS-1123 label (load-balancer names, zones).
const LABEL: &str = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";
/// A DNS-1123 subdomain (instance and route names).
const SUBDOMAIN: &str =
    "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$";
/// Each resource ID's form, by the path its `{id}` is in.
const ID_PATTERNS: &[(&str, &str)] = &[
    ("/v1/instances/", "^i-[0-9a-f]{16}$"),
    ("/v1/load-balancers/", "^lb-[0-9a-f]{16}$"),
    ("/v1/backend-groups/", "^bg-[0-9a-f]{16}$"),
    ("/v1/route-tables/", "^rt-[0-9a-f]{16}$"),
    ("/v1/admin/faults/", "^fault-[0-9]+$"),
];

/// The document as this server serves it: [`document`] with what only the running region knows
/// (its zones and instance types, as enums) and the forms of names and IDs, so a client (or a
/// property-based tester) can build requests that reach past validation.
pub fn document_for(zones: &[String], instance_types: &[String]) -> serde_json::Value {
    let mut doc = document();
    let zones = serde_json::json!(zones);
    let types = serde_json::json!(instance_types);
    let Some(schemas) = doc.pointer_mut("/components/schemas") else {
        return doc;
    };
    let mut set = |schema: &str, prop: &str, key: &str, value: serde_json::Value| {
        let at = format!("/{schema}/properties/{prop}");
        if let Some(p) = schemas.pointer_mut(&at).and_then(|p| p.as_object_mut()) {
            p.insert(key.to_owned(), value);
        }
    };
    set("CreateInstanceRequest", "name", "pattern", SUBDOMAIN.into());
    set("CreateInstanceRequest", "zone", "enum", zones.clone());
    set("CreateInstanceRequest", "instance_type", "enum", types);
    set("CreateLoadBalancerRequest", "name", "pattern", LABEL.into());
    set("CreateBackendGroupRequest", "name", "pattern", LABEL.into());
    set("CreateBackendGroupRequest", "zone", "enum", zones.clone());
    set("CreateRouteRequest", "name", "pattern", SUBDOMAIN.into());
    // Optional: absent or null matches every zone.
    let mut zone_or_null = zones.clone();
    if let Some(z) = zone_or_null.as_array_mut() {
        z.push(serde_json::Value::Null);
    }
    set("CreateFaultRequest", "zone", "enum", zone_or_null);
    set(
        "CreateRouteRequest",
        "target_instance_id",
        "pattern",
        ID_PATTERNS[0].1.into(),
    );
    if let Some(items) = schemas
        .pointer_mut("/CreateLoadBalancerRequest/properties/zones/items")
        .and_then(|i| i.as_object_mut())
    {
        items.insert("enum".into(), zones.clone());
    }
    for (at, pattern) in [
        (
            "/CreateLoadBalancerRequest/properties/backends/items",
            "/v1/instances/",
        ),
        (
            "/CreateLoadBalancerRequest/properties/backend_groups/items",
            "/v1/backend-groups/",
        ),
        (
            "/CreateBackendGroupRequest/properties/members/items",
            "/v1/instances/",
        ),
        (
            "/UpdateLoadBalancerRequest/properties/backends/items",
            "/v1/instances/",
        ),
        (
            "/UpdateLoadBalancerRequest/properties/backend_groups/items",
            "/v1/backend-groups/",
        ),
        (
            "/UpdateBackendGroupRequest/properties/members/items",
            "/v1/instances/",
        ),
    ] {
        let pattern = ID_PATTERNS
            .iter()
            .find(|(p, _)| *p == pattern)
            .map(|(_, p)| *p);
        if let (Some(items), Some(pattern)) = (
            schemas.pointer_mut(at).and_then(|i| i.as_object_mut()),
            pattern,
        ) {
            items.insert("pattern".into(), pattern.into());
        }
    }
    let Some(paths) = doc["paths"].as_object_mut() else {
        return doc;
    };
    for (path, item) in paths.iter_mut() {
        let Some(ops) = item.as_object_mut() else {
            continue;
        };
        for op in ops.values_mut() {
            let Some(params) = op.get_mut("parameters").and_then(|p| p.as_array_mut()) else {
                continue;
            };
            for p in params.iter_mut().filter(|p| p["in"] == "path") {
                let name = p["name"].as_str().unwrap_or_default().to_owned();
                let schema = &mut p["schema"];
                match Some(name.as_str()) {
                    Some("id") => {
                        if let Some((_, pattern)) = ID_PATTERNS.iter().find(|(prefix, _)| {
                            path.starts_with(prefix)
                                && (*prefix != "/v1/route-tables/" || path.contains("/routes/"))
                        }) {
                            schema["pattern"] = (*pattern).into();
                        }
                    }
                    Some("zone") => schema["enum"] = zones.clone(),
                    Some("table") => {
                        schema["enum"] = serde_json::json!([cloud_api::route::DEFAULT_ROUTE_TABLE]);
                    }
                    _ => {}
                }
            }
        }
    }
    doc
}

pub async fn serve(
    axum::extract::State(state): axum::extract::State<super::AppState>,
) -> Json<serde_json::Value> {
    let config = state.cloud.config();
    let zones: Vec<String> = config.zones.iter().map(|z| z.name.clone()).collect();
    let types: Vec<String> = match state.cloud.instance_types().await {
        Ok(types) => types.into_iter().map(|t| t.name).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "openapi: cannot list instance types; serving the document without them");
            Vec::new()
        }
    };
    Json(if types.is_empty() {
        document()
    } else {
        document_for(&zones, &types)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(method: &str, path: &str, has_body: bool, has_query: bool) -> Vec<u16> {
        let shape = Shape {
            method,
            path,
            has_body,
            has_query,
        };
        error_statuses(shape).into_iter().map(|(s, _)| s).collect()
    }

    #[test]
    fn error_statuses_follow_the_operation_shape() {
        let table: &[(&str, &str, bool, bool, &[u16])] = &[
            ("get", "/v1/regions", false, false, &[401, 429, 500, 503]),
            (
                "get",
                "/v1/instances",
                false,
                true,
                &[401, 400, 429, 500, 503],
            ),
            (
                "get",
                "/v1/instances/{id}",
                false,
                false,
                &[401, 400, 404, 429, 500, 503],
            ),
            (
                "post",
                "/v1/instances",
                true,
                false,
                &[401, 400, 409, 413, 415, 422, 429, 500, 503],
            ),
            (
                "patch",
                "/v1/instances/{id}",
                true,
                false,
                &[401, 400, 404, 409, 412, 413, 415, 422, 429, 500, 503],
            ),
            (
                "post",
                "/v1/instances/{id}/stop",
                false,
                false,
                &[401, 400, 404, 409, 412, 429, 500, 503],
            ),
            (
                "delete",
                "/v1/admin/faults",
                false,
                false,
                &[401, 403, 409, 429, 500, 503],
            ),
        ];
        for (method, path, body, query, want) in table {
            assert_eq!(
                statuses(method, path, *body, *query),
                *want,
                "{method} {path}"
            );
        }
    }

    /// Whether a rule with a bound of the document accepts a value.
    type Accepts<'a> = Box<dyn Fn(i64) -> bool + 'a>;

    /// Every numeric bound the document states is the one the server applies: the bound itself is
    /// accepted and the next value past it refused. (A bound of a field's type alone, as 65535
    /// for a port, is refused by deserialisation already; the conversions below stand for it.)
    #[test]
    fn the_documented_bounds_are_the_ones_the_server_applies() {
        use crate::domain::validate;
        use cloud_api::{FaultEffect, HealthCheck, Listener, Protocol, Tags, ZonePolicy};

        fn listener(port: u16, backend_port: u16) -> Listener {
            Listener {
                protocol: Protocol::Tcp,
                port,
                backend_port,
            }
        }
        let ports = |make: fn(u16) -> Listener| -> Accepts<'static> {
            Box::new(move |v| {
                u16::try_from(v).is_ok_and(|p| validate::listeners("l", &[make(p)]).is_ok())
            })
        };
        let health = |f: fn(&mut HealthCheck, u32)| -> Accepts<'static> {
            Box::new(move |v| {
                u32::try_from(v).is_ok_and(|v| {
                    let mut hc = HealthCheck {
                        interval_seconds: 300,
                        ..HealthCheck::default()
                    };
                    f(&mut hc, v);
                    validate::health_check("hc", &hc).is_ok()
                })
            })
        };
        let latency_rule = || cloud_api::CreateFaultRequest {
            method: None,
            path_prefix: None,
            zone: None,
            effect: FaultEffect::Latency { millis: 1 },
            probability: 1.0,
            count: None,
            ttl_seconds: None,
        };
        // A latency rule with one field set from the value (`None`: the value does not fit).
        let fault =
            |set: fn(&mut cloud_api::CreateFaultRequest, u64) -> Option<()>| -> Accepts<'static> {
                Box::new(move |v| {
                    let mut req = latency_rule();
                    u64::try_from(v)
                        .ok()
                        .and_then(|v| set(&mut req, v))
                        .is_some()
                        && crate::faults::Faults::new(None).add(req, &[]).is_ok()
                })
            };
        let error = |r: &mut cloud_api::CreateFaultRequest, v: u64| {
            let status = u16::try_from(v).ok()?;
            r.effect = FaultEffect::Error {
                status,
                retry_after_seconds: None,
            };
            Some(())
        };
        let tags = |n: usize, key_chars: usize, value_chars: usize| -> bool {
            let tags: Tags = (0..n)
                .map(|i| {
                    (
                        format!("{i}{}", "é".repeat(key_chars)),
                        "é".repeat(value_chars),
                    )
                })
                .collect();
            validate::tags("tags", &tags).is_ok()
        };
        let len = |v: i64| usize::try_from(v).unwrap_or(usize::MAX);
        let ids = |n: i64, max: usize| -> bool {
            let ids: Vec<String> = (0..len(n)).map(|i| format!("i-{i:016x}")).collect();
            validate::distinct("ids", &ids, max, "instance").is_ok()
        };
        let listener_count = |n: i64| -> bool {
            let ls: Vec<Listener> = (1..=len(n))
                .map(|p| listener(u16::try_from(p).unwrap_or(u16::MAX), 80))
                .collect();
            validate::listeners("listeners", &ls).is_ok()
        };
        let zone_policy = |v: i64| {
            u32::try_from(v).is_ok_and(|v| {
                let zp = ZonePolicy {
                    panic_threshold_percent: v,
                    ..ZonePolicy::default()
                };
                validate::zone_policy("zp", &zp).is_ok()
            })
        };

        let s = "/components/schemas";
        let cases: Vec<(String, Accepts<'_>)> = vec![
            (
                format!("{s}/Listener/properties/port/minimum"),
                ports(|p| listener(p, 80)),
            ),
            (
                format!("{s}/Listener/properties/port/maximum"),
                ports(|p| listener(p, 80)),
            ),
            (
                format!("{s}/Listener/properties/backend_port/minimum"),
                ports(|p| listener(80, p)),
            ),
            (
                format!("{s}/CreateLoadBalancerRequest/properties/listeners/minItems"),
                Box::new(listener_count),
            ),
            (
                format!("{s}/CreateLoadBalancerRequest/properties/listeners/maxItems"),
                Box::new(listener_count),
            ),
            (
                format!("{s}/UpdateLoadBalancerRequest/properties/listeners/minItems"),
                Box::new(listener_count),
            ),
            (
                format!("{s}/UpdateLoadBalancerRequest/properties/listeners/maxItems"),
                Box::new(listener_count),
            ),
            (
                format!("{s}/HealthCheck/properties/port/minimum"),
                Box::new(|v| {
                    u16::try_from(v).is_ok_and(|p| {
                        let hc = HealthCheck {
                            port: Some(p),
                            ..HealthCheck::default()
                        };
                        validate::health_check("hc", &hc).is_ok()
                    })
                }),
            ),
            (
                format!("{s}/HealthCheck/properties/interval_seconds/minimum"),
                health(|hc, v| {
                    hc.interval_seconds = v;
                    hc.timeout_seconds = 1;
                }),
            ),
            (
                format!("{s}/HealthCheck/properties/interval_seconds/maximum"),
                health(|hc, v| hc.interval_seconds = v),
            ),
            (
                format!("{s}/HealthCheck/properties/timeout_seconds/minimum"),
                health(|hc, v| hc.timeout_seconds = v),
            ),
            (
                format!("{s}/HealthCheck/properties/timeout_seconds/maximum"),
                health(|hc, v| hc.timeout_seconds = v),
            ),
            (
                format!("{s}/HealthCheck/properties/healthy_threshold/minimum"),
                health(|hc, v| hc.healthy_threshold = v),
            ),
            (
                format!("{s}/HealthCheck/properties/healthy_threshold/maximum"),
                health(|hc, v| hc.healthy_threshold = v),
            ),
            (
                format!("{s}/HealthCheck/properties/unhealthy_threshold/minimum"),
                health(|hc, v| hc.unhealthy_threshold = v),
            ),
            (
                format!("{s}/HealthCheck/properties/unhealthy_threshold/maximum"),
                health(|hc, v| hc.unhealthy_threshold = v),
            ),
            (
                format!("{s}/ZonePolicy/properties/panic_threshold_percent/maximum"),
                Box::new(zone_policy),
            ),
            (
                format!("{s}/Tags/maxProperties"),
                Box::new(move |v| tags(len(v), 1, 0)),
            ),
            (
                format!("{s}/Tags/propertyNames/minLength"),
                Box::new(move |v| {
                    let key = "k".repeat(len(v));
                    validate::tags("tags", &Tags::from([(key, String::new())])).is_ok()
                }),
            ),
            (
                // `tags` numbers its keys: one digit, then the rest.
                format!("{s}/Tags/propertyNames/maxLength"),
                Box::new(move |v| tags(1, len(v).saturating_sub(1), 0)),
            ),
            (
                format!("{s}/Tags/additionalProperties/maxLength"),
                Box::new(move |v| tags(1, 1, len(v))),
            ),
            (
                format!("{s}/CreateLoadBalancerRequest/properties/backends/maxItems"),
                Box::new(move |n| ids(n, cloud_api::MAX_BACKENDS)),
            ),
            (
                format!("{s}/CreateLoadBalancerRequest/properties/backend_groups/maxItems"),
                Box::new(move |n| ids(n, cloud_api::MAX_BACKEND_GROUPS)),
            ),
            (
                format!("{s}/CreateBackendGroupRequest/properties/members/maxItems"),
                Box::new(move |n| ids(n, cloud_api::MAX_GROUP_MEMBERS)),
            ),
            (
                format!("{s}/FaultEffect/oneOf/0/properties/status/minimum"),
                fault(error),
            ),
            (
                format!("{s}/FaultEffect/oneOf/0/properties/status/maximum"),
                fault(error),
            ),
            (
                format!("{s}/FaultEffect/oneOf/1/properties/millis/maximum"),
                fault(|r, millis| {
                    r.effect = FaultEffect::Latency { millis };
                    Some(())
                }),
            ),
            (
                format!("{s}/FaultEffect/oneOf/2/properties/burst/minimum"),
                fault(|r, v| {
                    r.effect = FaultEffect::Throttle {
                        rate_per_second: 1.0,
                        burst: u32::try_from(v).ok()?,
                    };
                    Some(())
                }),
            ),
            (
                format!("{s}/CreateFaultRequest/properties/count/minimum"),
                fault(|r, v| {
                    r.count = Some(v);
                    Some(())
                }),
            ),
            (
                format!("{s}/CreateFaultRequest/properties/ttl_seconds/maximum"),
                fault(|r, v| {
                    r.ttl_seconds = Some(v);
                    Some(())
                }),
            ),
        ];
        let doc = document();
        for (at, accepts) in cases {
            let bound = doc
                .pointer(&at)
                .and_then(serde_json::Value::as_i64)
                .unwrap_or_else(|| panic!("the document states no bound at {at}"));
            let past =
                if at.ends_with("minimum") || at.ends_with("minItems") || at.ends_with("minLength")
                {
                    bound - 1
                } else {
                    bound + 1
                };
            assert!(accepts(bound), "{at} = {bound} is refused");
            assert!(!accepts(past), "{at}: {past} is accepted");
        }
        // The real-valued bounds: a probability in [0, 1].
        let probability = |p: f64| {
            let req = cloud_api::CreateFaultRequest {
                probability: p,
                ..latency_rule()
            };
            crate::faults::Faults::new(None).add(req, &[]).is_ok()
        };
        let at = format!("{s}/CreateFaultRequest/properties/probability");
        let bound = |k: &str| {
            doc.pointer(&format!("{at}/{k}"))
                .and_then(serde_json::Value::as_f64)
        };
        assert_eq!((bound("minimum"), bound("maximum")), (Some(0.0), Some(1.0)));
        assert!(probability(0.0) && probability(1.0));
        assert!(!probability(-1e-9) && !probability(1.0 + 1e-9));
        assert_eq!(
            doc.pointer(&format!(
                "{s}/BatchCreateInstancesRequest/properties/instances/maxItems"
            )),
            Some(&serde_json::json!(cloud_api::MAX_BATCH_CREATE))
        );
    }

    #[test]
    fn every_operation_has_a_unique_id_the_error_statuses_and_a_default() {
        let doc = ApiDoc::openapi();
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for op in [&item.get, &item.post, &item.put, &item.patch, &item.delete]
                .into_iter()
                .flatten()
            {
                let id = op.operation_id.clone().unwrap();
                assert!(ids.insert(id.clone()), "{id} twice");
                assert!(op.responses.responses.contains_key("default"), "{path}");
                assert!(op.responses.responses.contains_key("401"), "{path}");
            }
        }
        // Every link points at an operation that exists.
        for (from, _, _, targets) in LINKS {
            assert!(ids.contains(*from), "{from}");
            for t in *targets {
                assert!(ids.contains(*t), "{t}");
            }
        }
    }
}
