//! The cloud side of a sync: ensure the load balancer (finalizer first, then status and
//! events), update its hosts when only the node set changed, or delete it.

use super::*;

pub(super) async fn ensure(
    svc: &Service,
    ctx: &ServiceContext,
    backends: &Backends,
    fingerprint: u64,
) -> Result<Action, ServiceError> {
    let nodes = &backends.nodes;
    let k = key(svc);
    let name = svc.name_any();
    let api: Api<Service> =
        Api::namespaced(ctx.client.clone(), &svc.namespace().unwrap_or_default());
    ctx.event(
        svc,
        EventType::Normal,
        names::REASON_ENSURING_LB,
        "Ensuring load balancer".into(),
    )
    .await;
    if !service_plan::has_finalizer(svc) {
        // Before any cloud call, so a load balancer is never made for a Service we could lose.
        let patch = json!({"metadata": {"finalizers": [names::LB_FINALIZER]}});
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            return Err(ctx
                .kube_failed(svc, "failed to add load balancer cleanup finalizer", e)
                .await);
        }
    }
    if nodes.is_empty() {
        ctx.no_nodes_event(svc).await;
    }
    let lb = ctx.cloud.get();
    let status = match lb.ensure_load_balancer(&ctx.cluster, svc, nodes).await {
        Ok(ensured) => {
            for (reason, note) in ensured.warnings {
                ctx.event(svc, EventType::Warning, reason, note).await;
            }
            ensured.status
        }
        Err(source) => {
            let note = format!(
                "Error syncing load balancer: {}",
                crate::error_chain(&source)
            );
            return Err(ctx
                .cloud_failed(svc, k, names::REASON_SYNC_LB_FAILED, note, source)
                .await);
        }
    };
    ctx.event(
        svc,
        EventType::Normal,
        names::REASON_ENSURED_LB,
        "Ensured load balancer".into(),
    )
    .await;
    // Synced only once the status is written: a failed write is retried by a full ensure
    // (the fingerprint fast path would skip it until the spec changed).
    if let Err(e) = write_status(&api, svc, &status).await {
        return Err(ctx
            .kube_failed(svc, "failed to update load balancer status", e)
            .await);
    }
    ctx.mark_synced(&k, fingerprint, backends.set.clone());
    tracing::info!(service = %k, ingress = status.ingress.as_ref().map_or(0, Vec::len), backends = nodes.len(), "ensured load balancer");
    Ok(Action::await_change())
}

pub(super) async fn update_hosts(
    svc: &Service,
    ctx: &ServiceContext,
    backends: &Backends,
    fingerprint: u64,
) -> Result<(), ServiceError> {
    let nodes = &backends.nodes;
    let k = key(svc);
    let lb = ctx.cloud.get();
    let started = Instant::now();
    ctx.metrics.lb_syncs.inc();
    let result = lb.update_load_balancer(&ctx.cluster, svc, nodes).await;
    ctx.metrics
        .update_host_latency
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(()) => {
            if nodes.is_empty() {
                ctx.no_nodes_event(svc).await;
            } else {
                ctx.event(
                    svc,
                    EventType::Normal,
                    names::REASON_UPDATED_LB,
                    "Updated load balancer with new hosts".into(),
                )
                .await;
            }
            ctx.mark_synced(&k, fingerprint, backends.set.clone());
            tracing::info!(service = %k, backends = nodes.len(), "updated load balancer hosts");
            Ok(())
        }
        Err(source) => {
            // The next attempt is a full ensure (which also recreates a missing load balancer).
            ctx.synced.lock().expect("synced lock").remove(&k);
            if matches!(lb.get_load_balancer(&ctx.cluster, svc).await, Ok(None)) {
                return Err(ServiceError::Cloud { service: k, source });
            }
            ctx.metrics.nodesync_errors.inc();
            let note = format!(
                "Error updating load balancer with new hosts {} [node names limited, total number of nodes: {}], error: {}",
                node_names(nodes),
                nodes.len(),
                crate::error_chain(&source)
            );
            Err(ctx
                .cloud_failed(svc, k, names::REASON_UPDATE_LB_FAILED, note, source)
                .await)
        }
    }
}

pub(super) async fn delete(svc: &Service, ctx: &ServiceContext) -> Result<Action, ServiceError> {
    let k = key(svc);
    let name = svc.name_any();
    let api: Api<Service> =
        Api::namespaced(ctx.client.clone(), &svc.namespace().unwrap_or_default());
    let lb = ctx.cloud.get();
    let exists = match lb.get_load_balancer(&ctx.cluster, svc).await {
        Ok(l) => l.is_some(),
        Err(source) => {
            let why = crate::error_chain(&source);
            ctx.sync_failed(
                svc,
                "failed to check if load balancer exists before cleanup",
                &why,
            )
            .await;
            return Err(ServiceError::Cloud { service: k, source });
        }
    };
    if exists {
        ctx.event(
            svc,
            EventType::Normal,
            names::REASON_DELETING_LB,
            "Deleting load balancer".into(),
        )
        .await;
        if let Err(source) = lb.ensure_load_balancer_deleted(&ctx.cluster, svc).await {
            // On the finalizer path upstream reports SyncLoadBalancerFailed (DeleteLoadBalancerFailed
            // belongs to its legacy path for Services without the finalizer).
            let why = crate::error_chain(&source);
            ctx.sync_failed(svc, "failed to delete load balancer", &why)
                .await;
            return Err(ServiceError::Cloud { service: k, source });
        }
    }
    ctx.synced.lock().expect("synced lock").remove(&k);
    let gone = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 404);
    if service_plan::has_finalizer(svc) {
        let patch =
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [names::LB_FINALIZER]}});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => {}
            Err(e) if gone(&e) => {}
            Err(e) => {
                return Err(ctx
                    .kube_failed(svc, "failed to remove load balancer cleanup finalizer", e)
                    .await);
            }
        }
    }
    ctx.event(
        svc,
        EventType::Normal,
        names::REASON_DELETED_LB,
        "Deleted load balancer".into(),
    )
    .await;
    match write_status(&api, svc, &LoadBalancerStatus::default()).await {
        Ok(()) => {}
        Err(e) if gone(&e) => {}
        Err(e) => {
            return Err(ctx
                .kube_failed(svc, "failed to update load balancer status", e)
                .await);
        }
    }
    tracing::info!(service = %k, existed = exists, "deleted load balancer");
    Ok(Action::await_change())
}

/// Writes `.status.loadBalancer` through the status subresource when it differs semantically.
pub(super) async fn write_status(
    api: &Api<Service>,
    svc: &Service,
    status: &LoadBalancerStatus,
) -> Result<(), kube::Error> {
    let current = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.clone())
        .unwrap_or_default();
    if service_plan::status_equal(&current, status) {
        return Ok(());
    }
    let ingress =
        serde_json::to_value(status.ingress.clone().unwrap_or_default()).unwrap_or_default();
    let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
    api.patch_status(
        &svc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
    .map(|_| ())
}
