//! Durability with the real binary: every create (one or a batch) that got a 2xx survives
//! `kill -9`.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloud_client::{Client, RetryPolicy};

use crate::common::{instance_req, wait_for};

pub struct Proc {
    pub child: Child,
    pub base_url: String,
    /// Every JSON log line so far.
    pub logs: Arc<Mutex<Vec<serde_json::Value>>>,
}

/// Starts `cloud-sim serve` on a free port with its database in `dir`, and waits for it to log
/// the address it serves on.
pub fn start(dir: &Path) -> Proc {
    start_with(&["--data-dir".as_ref(), dir.as_os_str()])
}

/// Starts `cloud-sim serve` on a free port with `args` besides, and waits for it to log the
/// address it serves on.
pub fn start_with(args: &[&std::ffi::OsStr]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloud-sim"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--instance-boot-delay",
            "0",
        ])
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn cloud-sim");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if !sent && v["message"] == "cloud-sim serving" {
                let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                sent = true;
            }
            sink.lock().unwrap().push(v);
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("cloud-sim did not report its address");
    Proc {
        child,
        base_url: format!("http://{addr}"),
        logs,
    }
}

pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cloud-sim-durability-{:016x}", rand_u64()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_creates_survive_kill_9() {
    let dir = temp_dir();
    let mut proc = start(&dir);
    let client = Client::builder(&proc.base_url)
        .retry(RetryPolicy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let batches_acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..8 {
        let client = client.clone();
        let (acked, batches_acked) = (acked.clone(), batches_acked.clone());
        workers.push(tokio::spawn(async move {
            for n in 0.. {
                let zone = ["zone-a", "zone-b", "zone-c"][(w + n) % 3];
                // Two of the eight send batch creates of ten, all acknowledged together.
                let made = if w < 6 {
                    client
                        .create_instance(&instance_req(&format!("w{w}-n{n}"), zone))
                        .await
                        .map(|i| vec![i])
                } else {
                    let batch: Vec<_> = (0..10)
                        .map(|k| instance_req(&format!("w{w}-n{n}-{k}"), zone))
                        .collect();
                    let made = client.batch_create_instances(&batch).await;
                    if made.is_ok() {
                        batches_acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    made
                };
                match made {
                    Ok(made) => acked
                        .lock()
                        .unwrap()
                        .extend(made.iter().map(|i| i.id.to_string())),
                    Err(_) => return,
                }
            }
        }));
    }
    let (a, b) = (acked.clone(), batches_acked.clone());
    wait_for(
        "150 acknowledged creates, batches among them",
        Duration::from_secs(120),
        || {
            let (a, b) = (a.clone(), b.clone());
            async move {
                let batches = b.load(std::sync::atomic::Ordering::Relaxed);
                (a.lock().unwrap().len() >= 150 && batches >= 2).then_some(())
            }
        },
    )
    .await;
    proc.child.kill().expect("kill -9");
    proc.child.wait().unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let mut proc = start(&dir);
    let client = Client::new(&proc.base_url).unwrap();
    let all = client
        .list_all_instances(&Default::default())
        .await
        .unwrap();
    let stored: HashSet<String> = all.iter().map(|i| i.id.to_string()).collect();
    let missing: Vec<_> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged instances lost: {missing:?}",
        missing.len(),
        acked.len()
    );
    let ips: HashSet<_> = all.iter().map(|i| i.private_ip).collect();
    assert_eq!(ips.len(), all.len(), "an address was handed out twice");
    proc.child.kill().unwrap();
    proc.child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let dir = temp_dir();
    let mut proc = start(&dir);
    let client = Client::new(&proc.base_url).unwrap();
    let i = client
        .create_instance(&instance_req("survivor", "zone-a"))
        .await
        .unwrap();
    let pid = proc.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let exit = proc.child.wait().unwrap();
    assert!(exit.success(), "cloud-sim exited with {exit:?} on SIGTERM");
    let mut proc = start(&dir);
    let client = Client::new(&proc.base_url).unwrap();
    assert_eq!(
        client
            .get_instance(i.id.as_str())
            .await
            .unwrap()
            .unwrap()
            .name,
        "survivor"
    );
    proc.child.kill().unwrap();
    proc.child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
