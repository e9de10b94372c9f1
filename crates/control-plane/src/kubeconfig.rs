//! Kubeconfigs of the running control plane, and clients from them.

use super::*;

pub(super) fn http_get(path: &str) -> http::Request<Vec<u8>> {
    let mut r = http::Request::new(Vec::new());
    *r.uri_mut() = path.parse().unwrap_or_default();
    r
}

/// Writes a kubeconfig for `url` trusting `ca`, with `user` as its credentials.
pub(super) fn write_kubeconfig(
    path: &Path,
    url: &str,
    ca: &Path,
    user: serde_json::Value,
) -> Result<(), Error> {
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "control-plane", "cluster": {"server": url, "certificate-authority": ca}}],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "control-plane", "context": {"cluster": "control-plane", "user": "user"}}],
        "current-context": "control-plane",
    });
    std::fs::write(path, doc.to_string()).map_err(io(format!("write {}", path.display())))
}

pub(super) async fn config_from(kubeconfig: &Path) -> Result<kube::Config, Error> {
    let err = |message: String| Error::Client {
        what: kubeconfig.display().to_string(),
        message,
    };
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| err(e.to_string()))?;
    kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| err(e.to_string()))
}

/// A kube client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> Result<kube::Client, Error> {
    let config = config_from(kubeconfig).await?;
    kube::Client::try_from(config).map_err(|e| Error::Client {
        what: kubeconfig.display().to_string(),
        message: e.to_string(),
    })
}
