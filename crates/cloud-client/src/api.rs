//! One method per API call, and the list filters.

use std::time::Duration;

use cloud_api::list::tag_query;
use cloud_api::{
    BackendGroup, Caller, CreateBackendGroupRequest, CreateFaultRequest, CreateInstanceRequest,
    CreateLoadBalancerRequest, CreateRouteRequest, ErrorCode, EventPage, FaultRule, Instance,
    InstanceState, InstanceType, LoadBalancer, Page, Region, Route, RouteTable,
    SetZoneStateRequest, Tags, TrafficReport, UpdateBackendGroupRequest, UpdateInstanceRequest,
    UpdateLoadBalancerRequest, Usage, Zone, ZoneState,
};
use cloud_api::{EventsQuery, ListInstancesQuery, ListLoadBalancersQuery, ListRoutesQuery};
use reqwest::{Method, StatusCode};

use crate::error::{ApiFailure, Error, Result};
use crate::transport::{Call, Client, segment};

/// Filters for listing instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceFilter {
    pub zone: Option<String>,
    pub state: Option<InstanceState>,
    pub name: Option<String>,
    /// `(key, value)`.
    pub tag: Option<(String, String)>,
    /// Only these instances (empty: any); at most [`cloud_api::MAX_LIST_IDS`] a list.
    pub ids: Vec<String>,
}

impl InstanceFilter {
    /// The list query for `page` of this filter.
    pub fn to_query(&self, page: &PageRequest) -> ListInstancesQuery {
        ListInstancesQuery {
            zone: self.zone.clone(),
            state: self.state.map(|s| s.as_str().to_owned()),
            name: self.name.clone(),
            tag: self.tag.as_ref().map(tag_query),
            ids: (!self.ids.is_empty()).then(|| self.ids.join(",")),
            page_size: page.page_size,
            page_token: page.page_token.clone(),
        }
    }
}

/// Filters for listing load balancers (and backend groups, whose list takes the same query).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadBalancerFilter {
    pub name: Option<String>,
    pub tag: Option<(String, String)>,
}

impl LoadBalancerFilter {
    /// The list query for `page` of this filter.
    pub fn to_query(&self, page: &PageRequest) -> ListLoadBalancersQuery {
        ListLoadBalancersQuery {
            name: self.name.clone(),
            tag: self.tag.as_ref().map(tag_query),
            page_size: page.page_size,
            page_token: page.page_token.clone(),
        }
    }
}

/// One page request: size and the token from the previous page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

/// The route table every project has.
pub const DEFAULT_ROUTE_TABLE: &str = cloud_api::route::DEFAULT_ROUTE_TABLE;

impl Client {
    // -- catalog ------------------------------------------------------------------------------

    pub async fn region(&self) -> Result<Region> {
        let p: Page<Region> = self.json(Call::new(Method::GET, "/v1/regions")).await?;
        p.items.into_iter().next().ok_or_else(|| {
            Error::Api(Box::new(ApiFailure {
                method: Method::GET,
                path: "/v1/regions".into(),
                status: StatusCode::NOT_FOUND,
                code: ErrorCode::NotFound,
                message: "the cloud reports no region".into(),
                request_id: String::new(),
                field: None,
                retry_after: None,
            }))
        })
    }

    pub async fn zones(&self) -> Result<Vec<Zone>> {
        let p: Page<Zone> = self.json(Call::new(Method::GET, "/v1/zones")).await?;
        Ok(p.items)
    }

    pub async fn get_zone(&self, name: &str) -> Result<Option<Zone>> {
        self.json_opt(Call::new(
            Method::GET,
            format!("/v1/zones/{}", segment(name)),
        ))
        .await
    }

    pub async fn set_zone_state(&self, name: &str, state: ZoneState) -> Result<Zone> {
        self.json(
            Call::new(Method::PUT, format!("/v1/admin/zones/{}", segment(name)))
                .json(&SetZoneStateRequest { state }),
        )
        .await
    }

    pub async fn instance_types(&self) -> Result<Vec<InstanceType>> {
        let p: Page<InstanceType> = self
            .json(Call::new(Method::GET, "/v1/instance-types"))
            .await?;
        Ok(p.items)
    }

    /// The project and rights the client's token maps to.
    pub async fn whoami(&self) -> Result<Caller> {
        self.json(Call::new(Method::GET, "/v1/whoami")).await
    }

    /// What the client's project has in each zone.
    pub async fn usage(&self) -> Result<Usage> {
        self.json(Call::new(Method::GET, "/v1/usage")).await
    }

    // -- instances ----------------------------------------------------------------------------

    pub async fn create_instance(&self, req: &CreateInstanceRequest) -> Result<Instance> {
        self.json(
            Call::new(Method::POST, "/v1/instances")
                .json(req)
                .idempotent(),
        )
        .await
    }

    /// Creates the instances in one request, all or none, in the order given (at most
    /// [`cloud_api::MAX_BATCH_CREATE`]).
    pub async fn batch_create_instances(
        &self,
        reqs: &[CreateInstanceRequest],
    ) -> Result<Vec<Instance>> {
        let batch = cloud_api::BatchCreateInstancesRequest {
            instances: reqs.to_vec(),
        };
        let resp: cloud_api::BatchCreateInstancesResponse = self
            .json(
                Call::new(Method::POST, "/v1/instances:batchCreate")
                    .json(&batch)
                    .idempotent(),
            )
            .await?;
        Ok(resp.instances)
    }

    pub async fn get_instance(&self, id: &str) -> Result<Option<Instance>> {
        self.json_opt(Call::new(
            Method::GET,
            format!("/v1/instances/{}", segment(id)),
        ))
        .await
    }

    pub async fn list_instances(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<Instance>> {
        self.json(Call::new(Method::GET, "/v1/instances").query(&filter.to_query(page)))
            .await
    }

    /// Every instance matching `filter`, walking all pages.
    pub async fn list_all_instances(&self, filter: &InstanceFilter) -> Result<Vec<Instance>> {
        self.all_pages(|p| async move { self.list_instances(filter, &p).await })
            .await
    }

    /// Replaces the instance's tags; `if_match` is an etag precondition.
    pub async fn update_instance_tags(
        &self,
        id: &str,
        tags: Tags,
        if_match: Option<&str>,
    ) -> Result<Instance> {
        let call = Call::new(Method::PATCH, format!("/v1/instances/{}", segment(id)))
            .json(&UpdateInstanceRequest { tags })
            .if_match(if_match);
        self.json(call).await
    }

    pub async fn start_instance(&self, id: &str) -> Result<Instance> {
        self.json(Call::new(
            Method::POST,
            format!("/v1/instances/{}/start", segment(id)),
        ))
        .await
    }

    pub async fn stop_instance(&self, id: &str) -> Result<Instance> {
        self.json(Call::new(
            Method::POST,
            format!("/v1/instances/{}/stop", segment(id)),
        ))
        .await
    }

    pub async fn terminate_instance(&self, id: &str) -> Result<Instance> {
        self.json(Call::new(
            Method::POST,
            format!("/v1/instances/{}/terminate", segment(id)),
        ))
        .await
    }

    /// Deletes the instance record (terminating it first); `Ok(false)` if it did not exist.
    pub async fn delete_instance(&self, id: &str) -> Result<bool> {
        self.delete(Call::new(
            Method::DELETE,
            format!("/v1/instances/{}", segment(id)),
        ))
        .await
    }

    // -- load balancers -----------------------------------------------------------------------

    pub async fn create_load_balancer(
        &self,
        req: &CreateLoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        self.json(
            Call::new(Method::POST, "/v1/load-balancers")
                .json(req)
                .idempotent(),
        )
        .await
    }

    pub async fn get_load_balancer(&self, id: &str) -> Result<Option<LoadBalancer>> {
        self.json_opt(Call::new(
            Method::GET,
            format!("/v1/load-balancers/{}", segment(id)),
        ))
        .await
    }

    /// The load balancer with this name, if any.
    pub async fn find_load_balancer(&self, name: &str) -> Result<Option<LoadBalancer>> {
        let filter = LoadBalancerFilter {
            name: Some(name.to_owned()),
            tag: None,
        };
        Ok(self
            .list_load_balancers(&filter, &PageRequest::default())
            .await?
            .items
            .into_iter()
            .next())
    }

    pub async fn list_load_balancers(
        &self,
        filter: &LoadBalancerFilter,
        page: &PageRequest,
    ) -> Result<Page<LoadBalancer>> {
        self.json(Call::new(Method::GET, "/v1/load-balancers").query(&filter.to_query(page)))
            .await
    }

    pub async fn list_all_load_balancers(
        &self,
        filter: &LoadBalancerFilter,
    ) -> Result<Vec<LoadBalancer>> {
        self.all_pages(|p| async move { self.list_load_balancers(filter, &p).await })
            .await
    }

    pub async fn update_load_balancer(
        &self,
        id: &str,
        req: &UpdateLoadBalancerRequest,
        if_match: Option<&str>,
    ) -> Result<LoadBalancer> {
        self.json(
            Call::new(Method::PATCH, format!("/v1/load-balancers/{}", segment(id)))
                .json(req)
                .if_match(if_match),
        )
        .await
    }

    /// What the data plane measured for a load balancer: backend health and traffic counters.
    /// `Ok(None)` if the load balancer does not exist.
    pub async fn load_balancer_traffic(&self, id: &str) -> Result<Option<TrafficReport>> {
        self.json_opt(Call::new(
            Method::GET,
            format!("/v1/load-balancers/{}/traffic", segment(id)),
        ))
        .await
    }

    /// `Ok(false)` if it did not exist.
    pub async fn delete_load_balancer(&self, id: &str) -> Result<bool> {
        self.delete(Call::new(
            Method::DELETE,
            format!("/v1/load-balancers/{}", segment(id)),
        ))
        .await
    }

    // -- backend groups -----------------------------------------------------------------------

    pub async fn create_backend_group(
        &self,
        req: &CreateBackendGroupRequest,
    ) -> Result<BackendGroup> {
        self.json(
            Call::new(Method::POST, "/v1/backend-groups")
                .json(req)
                .idempotent(),
        )
        .await
    }

    pub async fn get_backend_group(&self, id: &str) -> Result<Option<BackendGroup>> {
        self.json_opt(Call::new(
            Method::GET,
            format!("/v1/backend-groups/{}", segment(id)),
        ))
        .await
    }

    /// The backend group with this name, if any.
    pub async fn find_backend_group(&self, name: &str) -> Result<Option<BackendGroup>> {
        let filter = LoadBalancerFilter {
            name: Some(name.to_owned()),
            tag: None,
        };
        Ok(self
            .list_backend_groups(&filter, &PageRequest::default())
            .await?
            .items
            .into_iter()
            .next())
    }

    pub async fn list_backend_groups(
        &self,
        filter: &LoadBalancerFilter,
        page: &PageRequest,
    ) -> Result<Page<BackendGroup>> {
        self.json(Call::new(Method::GET, "/v1/backend-groups").query(&filter.to_query(page)))
            .await
    }

    pub async fn list_all_backend_groups(
        &self,
        filter: &LoadBalancerFilter,
    ) -> Result<Vec<BackendGroup>> {
        self.all_pages(|p| async move { self.list_backend_groups(filter, &p).await })
            .await
    }

    pub async fn update_backend_group(
        &self,
        id: &str,
        req: &UpdateBackendGroupRequest,
        if_match: Option<&str>,
    ) -> Result<BackendGroup> {
        self.json(
            Call::new(Method::PATCH, format!("/v1/backend-groups/{}", segment(id)))
                .json(req)
                .if_match(if_match),
        )
        .await
    }

    /// `Ok(false)` if it did not exist; `CONFLICT` while a load balancer uses it.
    pub async fn delete_backend_group(&self, id: &str) -> Result<bool> {
        self.delete(Call::new(
            Method::DELETE,
            format!("/v1/backend-groups/{}", segment(id)),
        ))
        .await
    }

    // -- routes -------------------------------------------------------------------------------

    pub async fn route_table(&self, table: &str) -> Result<RouteTable> {
        self.json(Call::new(
            Method::GET,
            format!("/v1/route-tables/{}", segment(table)),
        ))
        .await
    }

    pub async fn create_route(&self, table: &str, req: &CreateRouteRequest) -> Result<Route> {
        self.json(
            Call::new(
                Method::POST,
                format!("/v1/route-tables/{}/routes", segment(table)),
            )
            .json(req)
            .idempotent(),
        )
        .await
    }

    pub async fn get_route(&self, table: &str, id: &str) -> Result<Option<Route>> {
        self.json_opt(Call::new(
            Method::GET,
            format!("/v1/route-tables/{}/routes/{}", segment(table), segment(id)),
        ))
        .await
    }

    pub async fn list_routes(&self, table: &str, page: &PageRequest) -> Result<Page<Route>> {
        let q = ListRoutesQuery {
            tag: None,
            page_size: page.page_size,
            page_token: page.page_token.clone(),
        };
        self.json(
            Call::new(
                Method::GET,
                format!("/v1/route-tables/{}/routes", segment(table)),
            )
            .query(&q),
        )
        .await
    }

    pub async fn list_all_routes(&self, table: &str) -> Result<Vec<Route>> {
        self.all_pages(|p| async move { self.list_routes(table, &p).await })
            .await
    }

    /// `Ok(false)` if it did not exist.
    pub async fn delete_route(&self, table: &str, id: &str) -> Result<bool> {
        self.delete(Call::new(
            Method::DELETE,
            format!("/v1/route-tables/{}/routes/{}", segment(table), segment(id)),
        ))
        .await
    }

    // -- events -------------------------------------------------------------------------------

    /// Events after `after`, waiting up to `wait` (whole seconds, at most 60) for one to arrive.
    pub async fn events(&self, after: i64, limit: u32, wait: Duration) -> Result<EventPage> {
        let q = EventsQuery {
            after: Some(after),
            limit: Some(limit),
            wait_seconds: Some(wait.as_secs()),
        };
        self.json(
            Call::new(Method::GET, "/v1/events")
                .query(&q)
                .held_up_to(wait),
        )
        .await
    }

    /// The sequence number of the newest event: where to start following the log from now on.
    pub async fn event_head(&self) -> Result<i64> {
        Ok(self.events(i64::MAX, 1, Duration::ZERO).await?.last_seq)
    }

    // -- admin --------------------------------------------------------------------------------

    pub async fn add_fault(&self, req: &CreateFaultRequest) -> Result<FaultRule> {
        self.json(Call::new(Method::POST, "/v1/admin/faults").json(req))
            .await
    }

    pub async fn list_faults(&self) -> Result<Vec<FaultRule>> {
        let p: Page<FaultRule> = self
            .json(Call::new(Method::GET, "/v1/admin/faults"))
            .await?;
        Ok(p.items)
    }

    pub async fn delete_fault(&self, id: &str) -> Result<bool> {
        self.delete(Call::new(
            Method::DELETE,
            format!("/v1/admin/faults/{}", segment(id)),
        ))
        .await
    }

    pub async fn clear_faults(&self) -> Result<()> {
        self.send(Call::new(Method::DELETE, "/v1/admin/faults"))
            .await
            .map(|_| ())
    }
}
