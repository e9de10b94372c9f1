use cloud_api::ZoneState;

use crate::common::{spawn, spawn_default};

#[tokio::test]
async fn region_zones_and_instance_types() {
    let c = spawn_default().await;
    let region = c.client.region().await.unwrap();
    assert_eq!(region.name, "sim-1");
    assert_eq!(region.network_cidr.to_string(), "127.0.0.0/8");
    let zones = c.client.zones().await.unwrap();
    assert_eq!(
        zones.iter().map(|z| z.name.as_str()).collect::<Vec<_>>(),
        ["zone-a", "zone-b", "zone-c"]
    );
    assert!(zones.iter().all(|z| z.state == ZoneState::Available));
    assert_eq!(zones[1].lb_pool.to_string(), "127.64.2.0/24");
    assert!(c.client.get_zone("zone-q").await.unwrap().is_none());
    let types = c.client.instance_types().await.unwrap();
    assert!(types.len() >= 4);
    assert!(
        types
            .iter()
            .any(|t| t.name == "sim.small" && t.vcpus == 1 && t.memory_mib == 2048)
    );
}

#[tokio::test]
async fn zone_state_can_be_set_by_admin() {
    let c = spawn().await;
    let z = c
        .client
        .set_zone_state("zone-b", ZoneState::Outage)
        .await
        .unwrap();
    assert_eq!(z.state, ZoneState::Outage);
    assert_eq!(
        c.client.get_zone("zone-b").await.unwrap().unwrap().state,
        ZoneState::Outage
    );
    let e = c
        .client
        .set_zone_state("zone-q", ZoneState::Outage)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(cloud_api::ErrorCode::NotFound));
    let (status, _, body) = c
        .post_json(
            "/v1/admin/zones/zone-a",
            &serde_json::json!({"state": "broken"}),
        )
        .await;
    assert_eq!(status, 405, "{body}");
    let resp = c
        .http
        .put(c.url("/v1/admin/zones/zone-a"))
        .json(&serde_json::json!({"state": "broken"}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = crate::common::decode(resp).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["field"], "state");
}
