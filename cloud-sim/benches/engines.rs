//! Database engines benchmark: durable creates and gets per second on SQLite (one server) and on
//! PostgreSQL with one and with two API replicas on one database, the same client and load in
//! the same run, with `GET /healthz` of the first server as the baseline.
//!
//! ```text
//! cargo bench -p cloud-sim --bench engines                      # 2,000 creates; starts PostgreSQL
//! cargo bench -p cloud-sim --bench engines -- 5000 --postgres postgres://user@host/db
//! ```
//!
//! Without `--postgres` it starts a throw-away server with `tests/postgres/server.sh` (Debian's
//! `postgresql` must be installed) and stops it at the end. Each scenario gets a fresh database.

#[path = "support.rs"]
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use cloud_client::{Client, RetryPolicy};
use cloud_sim::Server;
use sqlx::{Connection, Executor};
use support::{CONCURRENCY, Stats, baseline, config, instance, timed};

struct Row {
    scenario: &'static str,
    baseline: Stats,
    create: Stats,
    get: Stats,
}

/// Creates `n` instances and gets each, spreading requests over `urls` in turn.
async fn run(scenario: &'static str, urls: &[String], n: usize) -> Row {
    let client = |u: &String| {
        Client::builder(u)
            .retry(RetryPolicy::none())
            .build()
            .unwrap()
    };
    let clients: Arc<Vec<Client>> = Arc::new(urls.iter().map(client).collect());
    let baseline = baseline("GET /healthz", clients[0].base_url(), n).await;
    let ids = Arc::new(std::sync::Mutex::new(vec![String::new(); n]));
    let (c, out) = (clients.clone(), ids.clone());
    let create = timed("create instance", n, CONCURRENCY, move |i| {
        let (c, out) = (c.clone(), out.clone());
        async move {
            let created = c[i % c.len()].create_instance(&instance(i)).await.unwrap();
            out.lock().unwrap()[i] = created.id.to_string();
        }
    })
    .await;
    let ids = Arc::new(ids.lock().unwrap().clone());
    let c = clients.clone();
    let get = timed("get instance", n, CONCURRENCY, move |i| {
        let (c, ids) = (c.clone(), ids.clone());
        async move {
            // Read through the other replica than the one that created it, where there are two.
            let reader = &c[(i + 1) % c.len()];
            assert!(reader.get_instance(&ids[i]).await.unwrap().is_some());
        }
    })
    .await;
    Row {
        scenario,
        baseline,
        create,
        get,
    }
}

async fn start(url: &str) -> Server {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = config();
    config.data_plane = false;
    Server::start(config, url, any).await.unwrap()
}

/// An empty database on the PostgreSQL server at `server`.
async fn fresh_database(server: &str, name: &str) -> String {
    let mut conn = sqlx::PgConnection::connect(server).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .await
    .unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
    format!("{base}/{name}")
}

fn server_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/postgres/server.sh")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(2000);
    let given = args
        .iter()
        .position(|a| a == "--postgres")
        .and_then(|i| args.get(i + 1).cloned());
    let own_dir = std::env::temp_dir().join(format!("cloud-sim-bench-pg-{}", std::process::id()));
    let pg = match &given {
        Some(url) => url.clone(),
        None => {
            let out = Command::new(server_script())
                .arg("start")
                .arg(&own_dir)
                .output()
                .expect("run tests/postgres/server.sh");
            assert!(
                out.status.success(),
                "tests/postgres/server.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        }
    };
    println!(
        "cloud-sim engines benchmark: {n} durable creates then {n} gets, {CONCURRENCY} concurrent clients"
    );

    let dir = std::env::temp_dir().join(format!("cloud-sim-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = start(&format!("sqlite://{}", dir.join("bench.db").display())).await;
    let mut rows = vec![run("SQLite, 1 server", &[sqlite.base_url()], n).await];
    sqlite.shutdown().await.unwrap();

    let one = start(&fresh_database(&pg, "cloudsim_bench_one").await).await;
    rows.push(run("PostgreSQL, 1 replica", &[one.base_url()], n).await);
    one.shutdown().await.unwrap();

    let db = fresh_database(&pg, "cloudsim_bench_two").await;
    let (a, b) = (start(&db).await, start(&db).await);
    rows.push(run("PostgreSQL, 2 replicas", &[a.base_url(), b.base_url()], n).await);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();

    println!();
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10}",
        "scenario",
        "healthz/s",
        "creates/s",
        "create p50",
        "gets/s",
        "get p50",
        "creates vs",
        "gets vs"
    );
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10}",
        "", "(baseline)", "", "ms", "", "ms", "SQLite", "SQLite"
    );
    let (c0, g0) = (rows[0].create.ops_per_sec(), rows[0].get.ops_per_sec());
    for r in &rows {
        println!(
            "{:<24} {:>10.0} {:>10.0} {:>10.2} {:>10.0} {:>10.2} {:>11.2}x {:>9.2}x",
            r.scenario,
            r.baseline.ops_per_sec(),
            r.create.ops_per_sec(),
            r.create.pct(0.5).as_secs_f64() * 1e3,
            r.get.ops_per_sec(),
            r.get.pct(0.5).as_secs_f64() * 1e3,
            r.create.ops_per_sec() / c0,
            r.get.ops_per_sec() / g0,
        );
    }
    println!(
        "\nWrites on PostgreSQL hold one advisory lock across replicas until their commit is on \
         disk, so they do not scale with replicas. Here the replicas, the database and the \
         client share this machine's {} cores.",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let _ = std::fs::remove_dir_all(&dir);
    if given.is_none() {
        let _ = Command::new(server_script())
            .arg("stop")
            .arg(&own_dir)
            .status();
        let _ = std::fs::remove_dir_all(&own_dir);
    }
}
