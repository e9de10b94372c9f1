//! Load balancers of this cluster whose Service is gone (deleted while the ccm was down).

use super::*;

/// Deletes load balancers tagged for this cluster whose Service no longer exists or no longer wants
/// one (upstream leaks these). Returns how many were deleted.
pub async fn collect_garbage(ctx: &ServiceContext) -> Result<usize, GcError> {
    let lb = ctx.cloud.get();
    // Load balancers first, Services second: a Service created in between cannot own any of the
    // listed load balancers, so nothing live is ever collected.
    let owned = lb.list_owned(&ctx.cluster).await.map_err(GcError::Cloud)?;
    if owned.is_empty() {
        return Ok(0);
    }
    let services: Api<Service> = Api::all(ctx.client.clone());
    let mut live: Vec<String> = Vec::new();
    let mut lp = kube::api::ListParams::default().limit(500);
    loop {
        let page = services.list(&lp).await.map_err(GcError::Kube)?;
        live.extend(
            page.items
                .iter()
                .filter(|s| service_plan::decide(s, ctx.class.as_deref()) != Decision::Ignore)
                .filter_map(|s| s.metadata.uid.clone()),
        );
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => break,
        }
    }
    let mut deleted = 0;
    for o in owned {
        if live.contains(&o.service_uid) {
            continue;
        }
        lb.delete_owned(&ctx.cluster, &o)
            .await
            .map_err(GcError::Cloud)?;
        tracing::info!(lb = %o.id, service = %o.service, "deleted load balancer whose Service is gone");
        deleted += 1;
    }
    Ok(deleted)
}

/// Why garbage collection failed.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("listing or deleting load balancers")]
    Cloud(#[source] CloudError),
    #[error("listing services")]
    Kube(#[source] kube::Error),
}
