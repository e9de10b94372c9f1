//! Which Kubernetes credentials each controller uses. By default all use the ccm's own; with
//! `--use-service-account-credentials` each uses a token of its own kube-system service account,
//! as upstream's ccm does (client names `node-controller` for both node controllers,
//! `service-controller`, `route-controller`), so RBAC and audit logs see which controller did
//! what. kube-apiserver's bootstrap policy already binds `system:controller:<name>` roles to
//! those accounts; the ccm's own account needs `serviceaccounts` get/create and
//! `serviceaccounts/token` create in kube-system (manifests/ccm/rbac.yaml).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use tokio::task::JoinHandle;

use crate::controllers::ControllerName;
use crate::names;

/// Lifetime of the tokens requested; they are renewed at a third of it.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The service account (in kube-system) a controller uses, as upstream names them.
pub fn account_of(c: ControllerName) -> &'static str {
    match c {
        ControllerName::CloudNode | ControllerName::CloudNodeLifecycle => names::SA_NODE_CONTROLLER,
        ControllerName::Route => names::SA_ROUTE_CONTROLLER,
        ControllerName::Service => names::SA_SERVICE_CONTROLLER,
    }
}

/// A Kubernetes client per controller.
#[derive(Clone)]
pub struct ControllerClients {
    default: kube::Client,
    own: BTreeMap<ControllerName, kube::Client>,
}

impl ControllerClients {
    /// Every controller with `client`.
    pub fn shared(client: kube::Client) -> Self {
        Self {
            default: client,
            own: BTreeMap::new(),
        }
    }

    /// The ccm's own credentials: leader election and the shared informers use them.
    pub fn root(&self) -> kube::Client {
        self.default.clone()
    }

    pub fn for_controller(&self, c: ControllerName) -> kube::Client {
        self.own.get(&c).unwrap_or(&self.default).clone()
    }
}

impl From<kube::Client> for ControllerClients {
    fn from(c: kube::Client) -> Self {
        Self::shared(c)
    }
}

/// Why a controller's credentials could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("service account {namespace}/{name}")]
    Account {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the token file {}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("building the client of {name}: {message}")]
    Client { name: String, message: String },
}

/// Makes (or finds) each controller's service account, mints a token for it into `dir`, and
/// builds its client from `base` (the API server and its CA) with that token file. A task
/// renews every token at a third of its lifetime (the client re-reads the file within a minute);
/// abort it when the clients are dropped.
pub async fn service_account_clients(
    admin: &kube::Client,
    base: &kube::Config,
    limit: Option<(f32, u32)>,
    controllers: &[ControllerName],
    dir: &Path,
) -> Result<(ControllerClients, JoinHandle<()>), CredentialsError> {
    std::fs::create_dir_all(dir).map_err(|source| CredentialsError::File {
        path: dir.to_owned(),
        source,
    })?;
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), names::SA_NAMESPACE);
    let mut accounts: Vec<&'static str> = controllers.iter().map(|c| account_of(*c)).collect();
    accounts.sort_unstable();
    accounts.dedup();
    let mut by_account = BTreeMap::new();
    for name in &accounts {
        ensure_account(&sas, name).await?;
        let path = dir.join(format!("{name}.token"));
        write_token(&sas, name, &path).await?;
        let mut cfg = base.clone();
        cfg.auth_info = kube::config::AuthInfo {
            token_file: Some(path.display().to_string()),
            ..Default::default()
        };
        let client =
            crate::client_for_account(cfg, limit, name).map_err(|e| CredentialsError::Client {
                name: (*name).to_owned(),
                message: format!("{e:#}"),
            })?;
        by_account.insert(*name, (client, path));
    }
    let own = controllers
        .iter()
        .map(|c| (*c, by_account[account_of(*c)].0.clone()))
        .collect();
    let renew: Vec<(&'static str, PathBuf)> = by_account
        .iter()
        .map(|(n, (_, p))| (*n, p.clone()))
        .collect();
    let renewer = tokio::spawn(async move {
        loop {
            tokio::time::sleep(TOKEN_LIFETIME / 3).await;
            for (name, path) in &renew {
                if let Err(e) = write_token(&sas, name, path).await {
                    tracing::warn!(account = name, error = %crate::error_chain(&e), "cannot renew the controller's token; retrying later");
                }
            }
        }
    });
    Ok((
        ControllerClients {
            default: admin.clone(),
            own,
        },
        renewer,
    ))
}

async fn ensure_account(sas: &Api<ServiceAccount>, name: &str) -> Result<(), CredentialsError> {
    let err = |source| CredentialsError::Account {
        namespace: names::SA_NAMESPACE.into(),
        name: name.into(),
        source,
    };
    if sas.get_opt(name).await.map_err(err)?.is_some() {
        return Ok(());
    }
    let sa = ServiceAccount {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    match sas.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// Mints a token and replaces the file atomically.
async fn write_token(
    sas: &Api<ServiceAccount>,
    name: &str,
    path: &Path,
) -> Result<(), CredentialsError> {
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: i64::try_from(TOKEN_LIFETIME.as_secs()).ok(),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    let token = sas
        .create_token_request(name, &PostParams::default(), &req)
        .await
        .map_err(|source| CredentialsError::Account {
            namespace: names::SA_NAMESPACE.into(),
            name: name.into(),
            source,
        })?
        .status
        .map(|s| s.token)
        .unwrap_or_default();
    let tmp = path.with_extension("tmp");
    let io = |source| CredentialsError::File {
        path: path.to_owned(),
        source,
    };
    std::fs::write(&tmp, token).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_client_names() {
        use ControllerName::*;
        let got: Vec<_> = ControllerName::ALL.iter().map(|c| account_of(*c)).collect();
        assert_eq!(
            got,
            [
                "node-controller",
                "node-controller",
                "route-controller",
                "service-controller"
            ]
        );
        assert_eq!(account_of(CloudNodeLifecycle), account_of(CloudNode));
    }
}
