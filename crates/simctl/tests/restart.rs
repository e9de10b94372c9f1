//! `simctl up` again over the same data directory: the cloud keeps its instances, so the second
//! run creates none, starts the ones that were stopped, and every node comes up initialised.

mod common;

use std::time::Duration;

use cloud_api::InstanceState;
use k8s_openapi::api::core::v1::Node;
use simctl::up::{NodeSpec, Sandbox, UpArgs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_up_keeps_the_instances_and_starts_the_stopped_ones() {
    let dir = std::env::temp_dir().join(format!("simctl-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Blocks of this test's own: instances 127.236.x, pools 127.237.x, pods 127.238.0.0/16.
    let args = UpArgs {
        nodes: 12,
        data_plane: false,
        ..common::up_args(&dir, 236)
    };
    let nodes: Vec<NodeSpec> = simctl::up::default_nodes(&args);
    let first = Sandbox::start(&args, &nodes).await.expect("first up");
    let made = first
        .cloud
        .list_all_instances(&Default::default())
        .await
        .unwrap();
    assert_eq!(made.len(), 12, "one instance per node, in batches");
    let stopped: Vec<_> = made.iter().take(3).map(|x| x.id.clone()).collect();
    for id in &stopped {
        first.cloud.stop_instance(id.as_str()).await.unwrap();
    }
    let cloud = first.cloud.clone();
    sim_common::wait_for(
        "the three instances to stop",
        Duration::from_secs(30),
        || {
            let (cloud, stopped) = (cloud.clone(), stopped.clone());
            async move {
                let all = cloud.list_all_instances(&Default::default()).await.unwrap();
                all.iter()
                    .filter(|x| stopped.contains(&x.id))
                    .all(|x| x.state == InstanceState::Stopped)
                    .then_some(())
            }
        },
    )
    .await;
    first.shutdown().await;

    let second = Sandbox::start(&args, &nodes).await.expect("second up");
    let again = second
        .cloud
        .list_all_instances(&Default::default())
        .await
        .unwrap();
    let mut ids: Vec<_> = again.iter().map(|x| x.id.clone()).collect();
    let mut before: Vec<_> = made.iter().map(|x| x.id.clone()).collect();
    ids.sort();
    before.sort();
    assert_eq!(ids, before, "the same instances, none created again");
    for x in &again {
        assert_ne!(x.state, InstanceState::Stopped, "{} was started", x.name);
    }
    // Start returns once every node is initialised: the restarted ones too.
    let kube = second.kube().unwrap();
    let all = kube::Api::<Node>::all(kube)
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(all.len(), 12);
    second.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
