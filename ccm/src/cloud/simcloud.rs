//! The simcloud provider: instances looked up in cloud-sim through cloud-client.

use std::collections::BTreeMap;

use async_trait::async_trait;
use cloud_api::{Instance, InstanceState, ProviderId};
use cloud_client::{Client, InstanceFilter};
use k8s_openapi::api::core::v1::Node;

use super::{CloudError, CloudProvider, InstanceMetadata, InstancesV2, NodeAddress, provider_id};
use crate::names;

/// The simcloud provider.
#[derive(Debug, Clone)]
pub struct SimCloud {
    client: Client,
    /// The region the cloud-config expects, checked at initialisation.
    expected_region: Option<String>,
}

fn api_error(e: cloud_client::Error) -> CloudError {
    CloudError::Api(Box::new(e))
}

impl SimCloud {
    pub fn new(client: Client, expected_region: Option<String>) -> Self {
        Self {
            client,
            expected_region,
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
            return Err(CloudError::Fake(format!(
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
}
