//! The simcloud provider: instances looked up in cloud-sim through cloud-client.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cloud_api::{BackendGroup, BackendGroupId, Instance, InstanceId, InstanceState, ProviderId};
use cloud_client::{Client, InstanceFilter};
use k8s_openapi::api::core::v1::{LoadBalancerStatus, Node, Service};

use super::{
    BackendNodes, CloudError, CloudProvider, CloudRoute, InstanceMetadata, InstancesV2,
    LoadBalancer, NodeAddress, OwnedLoadBalancer, RouteSpec, Routes, provider_id, simcloud_lb,
};
use crate::names;

/// The simcloud provider.
#[derive(Debug, Clone)]
pub struct SimCloud {
    client: Client,
    /// The region the cloud-config expects, checked at initialisation.
    expected_region: Option<String>,
    /// The cluster's backend groups as last written, by zone. Every load balancer's ensure or
    /// update asks for the groups; only the first after a change of the node set (or after
    /// [`GROUP_RECHECK`]) writes them.
    groups: Arc<tokio::sync::Mutex<BTreeMap<String, KnownGroup>>>,
    /// [`simcloud_lb::zone_members`] of the last node list asked about: the service controller
    /// passes the same list to every Service until the backends change, and at 10,000 nodes
    /// working the members out for each of 1,000 Services took most of the ccm's CPU.
    members: Arc<std::sync::Mutex<Option<MembersOf>>>,
}

/// A node list (held weakly: see [`SimCloud::zone_members`]) and its members.
type MembersOf = (std::sync::Weak<[Arc<Node>]>, Arc<ZoneMembers>);

/// The instance IDs of the nodes that can be backends, by zone ([`simcloud_lb::zone_members`]).
type ZoneMembers = BTreeMap<String, Vec<InstanceId>>;

/// A backend group the provider wrote (or checked) and what it held then.
#[derive(Debug, Clone)]
struct KnownGroup {
    id: BackendGroupId,
    members: Vec<InstanceId>,
    checked: Instant,
}

/// How long a group's known members are trusted before they are written again (someone else
/// may have changed the group; an unchanged write changes nothing).
const GROUP_RECHECK: Duration = Duration::from_secs(300);

fn api_error(e: cloud_client::Error) -> CloudError {
    CloudError::Api {
        retry_after: e.retry_after(),
        source: Box::new(e),
    }
}

/// Why the provider cannot be built from the cloud config.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read tokenFile {path}")]
    TokenFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the cloud client for {endpoint}")]
    Client {
        endpoint: String,
        #[source]
        source: cloud_client::Error,
    },
}

impl SimCloud {
    /// The provider the cloud config describes: its endpoint, token file and region.
    pub fn from_config(cfg: &crate::config::CloudConfig) -> Result<Self, SetupError> {
        let mut b = Client::builder(&cfg.endpoint).user_agent(names::USER_AGENT);
        if let Some(path) = &cfg.token_file {
            let token = std::fs::read_to_string(path).map_err(|source| SetupError::TokenFile {
                path: path.clone(),
                source,
            })?;
            b = b.token(token.trim());
        }
        let client = b.build().map_err(|source| SetupError::Client {
            endpoint: cfg.endpoint.clone(),
            source,
        })?;
        Ok(Self::new(client, cfg.region.clone()))
    }

    pub fn new(client: Client, expected_region: Option<String>) -> Self {
        Self {
            client,
            expected_region,
            groups: Arc::default(),
            members: Arc::default(),
        }
    }

    /// Finds the instance by provider ID first, by node name second. `Ok(None)` is a definite
    /// absence: the provider ID names an instance the cloud does not have (or has terminated), or
    /// no live instance has the node's name.
    async fn lookup(&self, node: &Node) -> Result<Option<Instance>, CloudError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(pid) = provider_id(node) {
            let parsed: ProviderId = pid.parse().map_err(|e| match e {
                cloud_api::ProviderIdError::ForeignScheme(_) => CloudError::ForeignNode {
                    node: name.clone(),
                    provider_id: pid.to_owned(),
                },
                other => CloudError::BadProviderId {
                    node: name.clone(),
                    source: other,
                },
            })?;
            return match self
                .client
                .get_instance(parsed.instance_id.as_str())
                .await
                .map_err(api_error)?
            {
                Some(i) if i.state != InstanceState::Terminated => Ok(Some(i)),
                _ => Ok(None),
            };
        }
        self.live_instance_named(name).await
    }

    /// The instance named `name` that is not terminated, if any (names are unique among live
    /// instances; terminated ones linger, as on EC2).
    async fn live_instance_named(&self, name: String) -> Result<Option<Instance>, CloudError> {
        let filter = InstanceFilter {
            name: Some(name),
            ..Default::default()
        };
        let found = self
            .client
            .list_all_instances(&filter)
            .await
            .map_err(api_error)?;
        Ok(found
            .into_iter()
            .find(|i| i.state != InstanceState::Terminated))
    }
}

/// Metadata of an instance, as the node controller writes it.
pub fn metadata(i: &Instance) -> InstanceMetadata {
    InstanceMetadata {
        provider_id: i.provider_id.clone(),
        instance_type: i.instance_type.clone(),
        node_addresses: vec![
            NodeAddress::new("InternalIP", i.private_ip.to_string()),
            NodeAddress::new("Hostname", i.name.clone()),
        ],
        zone: i.zone.clone(),
        region: i.region.clone(),
        additional_labels: BTreeMap::from([(
            names::LABEL_INSTANCE_ID.to_owned(),
            i.id.to_string(),
        )]),
    }
}

#[async_trait]
impl InstancesV2 for SimCloud {
    async fn instance_exists(&self, node: &Node) -> Result<bool, CloudError> {
        Ok(self.lookup(node).await?.is_some())
    }

    async fn instance_shutdown(&self, node: &Node) -> Result<bool, CloudError> {
        Ok(self
            .lookup(node)
            .await?
            .is_some_and(|i| matches!(i.state, InstanceState::Stopping | InstanceState::Stopped)))
    }

    async fn instance_metadata(&self, node: &Node) -> Result<Option<InstanceMetadata>, CloudError> {
        match self.lookup(node).await? {
            Some(i) => Ok(Some(metadata(&i))),
            None => Err(CloudError::InstanceNotFound(
                node.metadata.name.clone().unwrap_or_default(),
            )),
        }
    }
}

/// The name of the route for `cidr` of the node with UID `name_hint`: `<cluster>-<16 hex digits>`,
/// stable across restarts so a retried create finds its earlier result.
pub fn route_name(cluster: &str, name_hint: &str, cidr: &str) -> String {
    let h = simcloud_lb::stable_hash(&[name_hint, cidr]);
    let prefix: String = cluster
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(200)
        .collect();
    let prefix = prefix.trim_matches('-');
    if prefix.is_empty() {
        format!("route-{h:016x}")
    } else {
        format!("{prefix}-{h:016x}")
    }
}

#[async_trait]
impl Routes for SimCloud {
    async fn list_routes(&self, cluster: &str) -> Result<Vec<CloudRoute>, CloudError> {
        let tag = names::cluster_tag(cluster);
        let routes = self
            .client
            .list_all_routes(cloud_client::DEFAULT_ROUTE_TABLE)
            .await
            .map_err(api_error)?;
        Ok(routes
            .into_iter()
            .filter(|r| r.tags.get(&tag).is_some_and(|v| v == names::TAG_OWNED))
            .map(|r| CloudRoute {
                id: r.id.to_string(),
                target_node: r
                    .tags
                    .get(names::TAG_ROUTE_NODE)
                    .cloned()
                    .unwrap_or_default(),
                name: r.name,
                destination_cidr: r.destination_cidr.to_string(),
                blackhole: r.state == cloud_api::RouteState::Blackhole,
            })
            .collect())
    }

    async fn create_route(
        &self,
        cluster: &str,
        name_hint: &str,
        route: &RouteSpec,
    ) -> Result<(), CloudError> {
        let instance_id = match route
            .target_provider_id
            .as_deref()
            .map(str::parse::<ProviderId>)
        {
            Some(Ok(pid)) => pid.instance_id,
            _ => {
                self.live_instance_named(route.target_node.clone())
                    .await?
                    .ok_or_else(|| CloudError::InstanceNotFound(route.target_node.clone()))?
                    .id
            }
        };
        let mut tags = cloud_api::Tags::new();
        tags.insert(names::cluster_tag(cluster), names::TAG_OWNED.into());
        tags.insert(names::TAG_ROUTE_NODE.into(), route.target_node.clone());
        let req = cloud_api::CreateRouteRequest {
            name: route_name(cluster, name_hint, &route.destination_cidr),
            destination_cidr: route.destination_cidr.clone(),
            target_instance_id: instance_id,
            tags,
        };
        match self
            .client
            .create_route(cloud_client::DEFAULT_ROUTE_TABLE, &req)
            .await
        {
            Ok(_) => Ok(()),
            // Same name: an earlier attempt (maybe of a ccm that died) already made it.
            Err(e) if e.code() == Some(cloud_api::ErrorCode::AlreadyExists) => Ok(()),
            Err(e) => Err(api_error(e)),
        }
    }

    async fn delete_route(&self, _cluster: &str, route: &CloudRoute) -> Result<(), CloudError> {
        self.client
            .delete_route(cloud_client::DEFAULT_ROUTE_TABLE, &route.id)
            .await
            .map(|_| ())
            .map_err(api_error)
    }
}

impl SimCloud {
    async fn find_lb(&self, svc: &Service) -> Result<Option<cloud_api::LoadBalancer>, CloudError> {
        self.client
            .find_load_balancer(&simcloud_lb::lb_name(svc))
            .await
            .map_err(api_error)
    }

    async fn create_lb(
        &self,
        req: &cloud_api::CreateLoadBalancerRequest,
    ) -> Result<cloud_api::LoadBalancer, CloudError> {
        let lb = self
            .client
            .create_load_balancer(req)
            .await
            .map_err(api_error)?;
        tracing::info!(lb = %lb.id, name = %lb.name, frontends = lb.frontends.len(), backend_groups = lb.backend_groups.len(), "created load balancer");
        Ok(lb)
    }

    /// Makes the cluster's backend groups hold exactly `nodes`' instances, one group per zone
    /// with nodes, and returns those groups in zone order. Groups of zones that lost their last
    /// node are emptied (and left for [`Self::collect_groups`]).
    async fn ensure_groups(
        &self,
        cluster: &str,
        nodes: &BackendNodes,
    ) -> Result<Vec<BackendGroupId>, CloudError> {
        let members = self.zone_members(nodes);
        let mut known = self.groups.lock().await;
        let zones: std::collections::BTreeSet<String> =
            members.keys().chain(known.keys()).cloned().collect();
        let mut ids = Vec::new();
        for zone in zones {
            let want: &[InstanceId] = members.get(&zone).map_or(&[], Vec::as_slice);
            let fresh = known
                .get(&zone)
                .filter(|k| k.members == want && k.checked.elapsed() < GROUP_RECHECK);
            let id = match fresh {
                Some(k) => k.id.clone(),
                None => match self
                    .sync_group(cluster, &zone, want, known.get(&zone).map(|k| &k.id))
                    .await
                {
                    Ok(g) => {
                        known.insert(
                            zone.clone(),
                            KnownGroup {
                                id: g.id.clone(),
                                members: want.to_vec(),
                                checked: Instant::now(),
                            },
                        );
                        g.id
                    }
                    Err(e) => {
                        known.remove(&zone);
                        return Err(e);
                    }
                },
            };
            if !want.is_empty() {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// [`simcloud_lb::zone_members`] of `nodes`, worked out once per list. The `Weak` kept of the
    /// list keeps its allocation, so a later list cannot take its address.
    fn zone_members(&self, nodes: &BackendNodes) -> Arc<ZoneMembers> {
        let mut cached = self.members.lock().expect("no code panics holding it");
        if let Some((list, members)) = &*cached
            && std::sync::Weak::ptr_eq(list, &Arc::downgrade(nodes))
        {
            return members.clone();
        }
        let members = Arc::new(simcloud_lb::zone_members(nodes));
        *cached = Some((Arc::downgrade(nodes), members.clone()));
        members
    }

    /// Creates or updates the cluster's group in `zone` to hold exactly `members`. A group this
    /// provider wrote before (`known`) is written without reading it first: the ccm owns it.
    async fn sync_group(
        &self,
        cluster: &str,
        zone: &str,
        members: &[InstanceId],
        known: Option<&BackendGroupId>,
    ) -> Result<BackendGroup, CloudError> {
        let u = cloud_api::UpdateBackendGroupRequest {
            members: Some(members.to_vec()),
            tags: None,
        };
        if let Some(id) = known {
            match self
                .client
                .update_backend_group(id.as_str(), &u, None)
                .await
            {
                Ok(g) => {
                    tracing::debug!(group = %g.id, zone, members = g.members.len(), "updated backend group");
                    return Ok(g);
                }
                // Deleted behind our back: found or created again below.
                Err(e) if e.code() == Some(cloud_api::ErrorCode::NotFound) => {}
                Err(e) => return Err(api_error(e)),
            }
        }
        let name = simcloud_lb::group_name(cluster, zone);
        let found = self
            .client
            .find_backend_group(&name)
            .await
            .map_err(api_error)?;
        let Some(group) = found else {
            let mut tags = cloud_api::Tags::new();
            tags.insert(names::cluster_tag(cluster), names::TAG_OWNED.into());
            let req = cloud_api::CreateBackendGroupRequest {
                name,
                zone: zone.to_owned(),
                members: members.to_vec(),
                tags,
            };
            let g = self
                .client
                .create_backend_group(&req)
                .await
                .map_err(api_error)?;
            tracing::info!(group = %g.id, zone, members = g.members.len(), "created backend group");
            return Ok(g);
        };
        if !simcloud_lb::members_differ(&group, members) {
            return Ok(group);
        }
        let g = self
            .client
            .update_backend_group(group.id.as_str(), &u, Some(&group.etag))
            .await
            .map_err(api_error)?;
        tracing::info!(group = %g.id, zone, members = g.members.len(), "updated backend group");
        Ok(g)
    }

    /// Deletes the cluster's backend groups once no load balancer of the cluster is left (a
    /// group still in use answers `CONFLICT` and stays).
    async fn collect_groups(&self, cluster: &str) -> Result<(), CloudError> {
        let mut known = self.groups.lock().await;
        if !self.list_owned(cluster).await?.is_empty() {
            return Ok(());
        }
        let filter = cloud_client::LoadBalancerFilter {
            name: None,
            tag: Some((names::cluster_tag(cluster), names::TAG_OWNED.into())),
        };
        let groups = self
            .client
            .list_all_backend_groups(&filter)
            .await
            .map_err(api_error)?;
        for g in groups {
            match self.client.delete_backend_group(g.id.as_str()).await {
                Ok(_) => {
                    known.remove(&g.zone);
                    tracing::info!(group = %g.id, zone = %g.zone, "deleted backend group");
                }
                Err(e) if e.code() == Some(cloud_api::ErrorCode::Conflict) => {}
                Err(e) => return Err(api_error(e)),
            }
        }
        Ok(())
    }

    /// Forgets what the groups hold after a load-balancer write was refused for its groups (one
    /// may have been deleted behind our back); other failures (a full address pool) keep them.
    async fn forget_groups<T>(&self, r: Result<T, CloudError>) -> Result<T, CloudError> {
        if let Err(CloudError::Api { source, .. }) = &r
            && source
                .downcast_ref::<cloud_client::Error>()
                .and_then(cloud_client::Error::field)
                .is_some_and(|f| f.starts_with("backend_groups"))
        {
            self.groups.lock().await.clear();
        }
        r
    }
}

#[async_trait]
impl LoadBalancer for SimCloud {
    async fn get_load_balancer(
        &self,
        _cluster: &str,
        svc: &Service,
    ) -> Result<Option<LoadBalancerStatus>, CloudError> {
        Ok(self.find_lb(svc).await?.map(|lb| simcloud_lb::status(&lb)))
    }

    fn get_load_balancer_name(&self, _cluster: &str, svc: &Service) -> String {
        simcloud_lb::lb_name(svc)
    }

    async fn ensure_load_balancer(
        &self,
        cluster: &str,
        svc: &Service,
        nodes: &BackendNodes,
    ) -> Result<crate::cloud::Ensured, CloudError> {
        let groups = self.ensure_groups(cluster, nodes).await?;
        let mut want =
            simcloud_lb::desired(cluster, svc, &groups).map_err(CloudError::Unsupported)?;
        let mut warnings = Vec::new();
        if want.requested_ips.is_empty() && simcloud_lb::spec_load_balancer_ip(svc).is_some() {
            let zones = self.client.zones().await.map_err(api_error)?;
            let pools: Vec<(String, ipnet::Ipv4Net)> =
                zones.into_iter().map(|z| (z.name, z.lb_pool)).collect();
            match simcloud_lb::load_balancer_ip(svc, &pools) {
                Ok(ip) => want.requested_ips.extend(ip),
                Err(w) => warnings.push((names::REASON_LB_IP_NOT_IN_POOL, w)),
            }
        }
        let written = async {
            Ok(match self.find_lb(svc).await? {
                None => self.create_lb(&want).await?,
                Some(lb) => match simcloud_lb::change(&lb, &want) {
                    simcloud_lb::Change::None => lb,
                    simcloud_lb::Change::Update(u) => {
                        let updated = self
                            .client
                            .update_load_balancer(lb.id.as_str(), &u, Some(&lb.etag))
                            .await
                            .map_err(api_error)?;
                        tracing::info!(lb = %updated.id, "updated load balancer");
                        updated
                    }
                    simcloud_lb::Change::Recreate(why) => {
                        tracing::info!(lb = %lb.id, reason = %why, "re-creating load balancer");
                        self.client
                            .delete_load_balancer(lb.id.as_str())
                            .await
                            .map_err(api_error)?;
                        self.create_lb(&want).await?
                    }
                },
            })
        };
        let lb = self.forget_groups(written.await).await?;
        Ok(crate::cloud::Ensured {
            status: simcloud_lb::status(&lb),
            warnings,
        })
    }

    /// Nodes change the cluster's backend groups; the load balancer itself changes only when the
    /// set of zones with nodes does.
    async fn update_load_balancer(
        &self,
        cluster: &str,
        svc: &Service,
        nodes: &BackendNodes,
    ) -> Result<(), CloudError> {
        let groups = self.ensure_groups(cluster, nodes).await?;
        let Some(lb) = self.find_lb(svc).await? else {
            return Err(CloudError::LoadBalancerNotFound(simcloud_lb::lb_name(svc)));
        };
        let Some(u) = simcloud_lb::backends_change(&lb, &groups) else {
            return Ok(());
        };
        let updated = self
            .client
            .update_load_balancer(lb.id.as_str(), &u, Some(&lb.etag))
            .await
            .map_err(api_error);
        self.forget_groups(updated).await?;
        tracing::info!(lb = %lb.id, backend_groups = groups.len(), "updated load balancer backends");
        Ok(())
    }

    async fn ensure_load_balancer_deleted(
        &self,
        cluster: &str,
        svc: &Service,
    ) -> Result<(), CloudError> {
        if let Some(lb) = self.find_lb(svc).await? {
            self.client
                .delete_load_balancer(lb.id.as_str())
                .await
                .map_err(api_error)?;
            tracing::info!(lb = %lb.id, "deleted load balancer");
        }
        self.collect_groups(cluster).await
    }

    async fn list_owned(&self, cluster: &str) -> Result<Vec<OwnedLoadBalancer>, CloudError> {
        let filter = cloud_client::LoadBalancerFilter {
            name: None,
            tag: Some((names::cluster_tag(cluster), names::TAG_OWNED.into())),
        };
        let lbs = self
            .client
            .list_all_load_balancers(&filter)
            .await
            .map_err(api_error)?;
        Ok(lbs
            .into_iter()
            .map(|lb| {
                let (service, service_uid) = simcloud_lb::owner(&lb.tags);
                OwnedLoadBalancer {
                    id: lb.id.to_string(),
                    name: lb.name,
                    service,
                    service_uid,
                }
            })
            .collect())
    }

    async fn delete_owned(&self, cluster: &str, lb: &OwnedLoadBalancer) -> Result<(), CloudError> {
        self.client
            .delete_load_balancer(&lb.id)
            .await
            .map_err(api_error)?;
        self.collect_groups(cluster).await
    }
}

#[async_trait]
impl CloudProvider for SimCloud {
    fn provider_name(&self) -> &'static str {
        names::PROVIDER_NAME
    }

    async fn initialize(&self) -> Result<(), CloudError> {
        let region = self.client.region().await.map_err(api_error)?;
        if let Some(want) = &self.expected_region
            && *want != region.name
        {
            return Err(CloudError::Mismatch(format!(
                "the cloud serves region {:?}, but the cloud config expects {want:?}",
                region.name
            )));
        }
        tracing::info!(region = %region.name, zones = region.zones.len(), endpoint = self.client.base_url(), "connected to simcloud");
        Ok(())
    }

    fn instances_v2(&self) -> Option<&dyn InstancesV2> {
        Some(self)
    }

    fn routes(&self) -> Option<&dyn Routes> {
        Some(self)
    }

    fn load_balancer(&self) -> Option<&dyn LoadBalancer> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_names_are_stable_valid_and_distinct() {
        let a = route_name("kubernetes", "uid-1", "10.244.1.0/24");
        assert_eq!(a, route_name("kubernetes", "uid-1", "10.244.1.0/24"));
        assert_ne!(a, route_name("kubernetes", "uid-1", "fd00::/64"));
        assert_ne!(a, route_name("kubernetes", "uid-2", "10.244.1.0/24"));
        assert!(a.starts_with("kubernetes-") && a.len() == "kubernetes-".len() + 16);
        assert!(route_name("My_Cluster", "u", "c").starts_with("my-cluster-"));
        assert!(route_name("__", "u", "c").starts_with("route-"));
        // Names are what a restarted (or upgraded) ccm finds its routes by: pinned.
        assert_eq!(a, "kubernetes-c9693f91480b0e36");
    }

    /// The members of a node list are worked out once per list (the service controller passes
    /// a new list when the backends change).
    #[test]
    fn zone_members_are_worked_out_once_per_list() {
        let cloud = SimCloud::new(Client::builder("http://127.0.0.1:9").build().unwrap(), None);
        let node = |name: &str, pid: Option<&str>| -> Arc<Node> {
            Arc::new(
                serde_json::from_value(
                    serde_json::json!({"metadata": {"name": name}, "spec": {"providerID": pid}}),
                )
                .unwrap(),
            )
        };
        let a = node("a", Some("simcloud://zone-a/i-0000000000000001"));
        let b = node("b", Some("simcloud://zone-b/i-0000000000000002"));
        let list: BackendNodes = vec![a.clone(), b.clone()].into();
        let first = cloud.zone_members(&list);
        assert_eq!(*first, simcloud_lb::zone_members(&list));
        assert!(Arc::ptr_eq(&first, &cloud.zone_members(&list.clone())));
        let mut previous = first;
        for changed in [
            vec![a.clone()],
            vec![a.clone(), b.clone(), node("c", None)],
            vec![
                a.clone(),
                node("c", Some("simcloud://zone-a/i-0000000000000003")),
            ],
            // The same nodes in a new list (the backends changed and changed back): worked out
            // again, and equal.
            vec![a.clone(), b.clone()],
        ] {
            let list: BackendNodes = changed.into();
            let members = cloud.zone_members(&list);
            assert!(!Arc::ptr_eq(&previous, &members), "{list:?}");
            assert_eq!(*members, simcloud_lb::zone_members(&list));
            previous = members;
        }
    }
}
