//! The server's own tasks: if one dies while serving, the server does not carry on without it.

use std::time::Duration;

use cloud_sim::{Config, ServeError, Server};

#[tokio::test]
async fn a_dead_task_stops_the_server_and_is_named() {
    for task in ["worker", "data plane", "API server"] {
        let server = Server::start_in_memory(Config::for_tests()).await.unwrap();
        let url = server.base_url();
        server.kill_task(task);
        // The signal never comes: only the dead task can end the run.
        let ended = tokio::time::timeout(
            Duration::from_secs(30),
            server.run_until(std::future::pending()),
        )
        .await
        .unwrap_or_else(|_| panic!("the server went on without its {task}"));
        match ended {
            Err(ServeError::TaskDied { task: named, why }) => {
                assert_eq!(named, task);
                assert!(why.contains("cancelled"), "{why}");
            }
            other => panic!("{task}: {other:?}"),
        }
        // And the rest were shut down with it.
        let after = reqwest::get(format!("{url}/healthz")).await;
        assert!(after.is_err(), "{task}: still serving after the shutdown");
    }
}
