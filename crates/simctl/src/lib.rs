//! simctl: the simcloud command line. `simctl up` runs the local sandbox (cloud-sim, kube-sim with
//! simulated kubelets, and the ccm) in one process; the other commands drive a running cloud-sim.
//!
//! Layout: [`Cli`] is the command line; [`commands`] the cloud commands; [`up`] the sandbox;
//! [`topology`] offline predictions of topology-aware routing; [`table`] terminal tables.

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

pub mod commands;
pub mod scenario;
pub mod sizing;
pub mod table;
pub mod topology;
pub mod traffic;
pub mod up;

/// A Kubernetes client from `kubeconfig`, or from the default kubeconfig when `None`.
pub async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    use anyhow::Context as _;
    let config = match kubeconfig {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p)
                .with_context(|| format!("cannot read kubeconfig {}", p.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("invalid kubeconfig {}", p.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no --kubeconfig and no default kubeconfig")?,
    };
    kube::Client::try_from(config).context("cannot build the Kubernetes client")
}

/// The simcloud CLI.
#[derive(Debug, Parser)]
#[command(name = "simctl", version, about, long_about = None)]
pub struct Cli {
    /// cloud-sim API URL.
    #[arg(
        long,
        global = true,
        env = "SIMCTL_CLOUD_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub cloud_url: String,

    /// Bearer token, when cloud-sim runs with a tokens file.
    #[arg(long, global = true, env = "SIMCTL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value = "table")]
    pub output: Output,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the local sandbox: cloud-sim, kube-sim with kubelets, and the ccm, until Ctrl-C.
    Up(Box<up::UpArgs>),
    /// Instances: list, create, start, stop, terminate, delete.
    #[command(subcommand, alias = "instance", alias = "i")]
    Instances(commands::InstanceCmd),
    /// Zones: list, set-state.
    #[command(subcommand, alias = "zone")]
    Zones(commands::ZoneCmd),
    /// Load balancers: list, status.
    #[command(subcommand, name = "lbs", alias = "load-balancers")]
    Lbs(commands::LbCmd),
    /// Backend groups (one zone's instances that load balancers send to): list.
    #[command(subcommand, name = "groups", alias = "backend-groups")]
    Groups(commands::GroupCmd),
    /// Send requests through the data plane (north-south via the load balancer, or east-west to
    /// the ClusterIP through a node) and report where they went.
    Traffic(traffic::TrafficArgs),
    /// Predict Kubernetes' topology-aware routing offline (upstream's algorithms, ported).
    #[command(subcommand)]
    Topology(topology::TopologyCmd),
    /// Run topology experiments from scenario files (scenarios/), each mode in a fresh sandbox.
    #[command(subcommand)]
    Scenario(ScenarioCmd),
}

#[derive(Debug, Subcommand)]
pub enum ScenarioCmd {
    /// Run a scenario: a matrix of modes by metrics, checked against the file's expectations
    /// (exit status 1 when one fails).
    Run(scenario::run::RunArgs),
}

/// Runs a command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => up::run(*args).await,
        Command::Topology(topology::TopologyCmd::Explain(args)) => {
            let e = topology::explain(&args).await?;
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&e)?),
                Output::Table => print!("{}", topology::explain_text(&e)),
            }
            Ok(())
        }
        Command::Scenario(ScenarioCmd::Run(args)) => {
            let (s, results) = scenario::run::run(&args).await?;
            match cli.output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"scenario": s, "results": results})
                    )?
                ),
                Output::Table => print!("{}", scenario::matrix(&s, &results)),
            }
            let failed = results
                .iter()
                .flat_map(|r| &r.checks)
                .filter(|c| !c.pass)
                .count();
            if failed > 0 {
                anyhow::bail!("{failed} expectation(s) of scenario {} failed", s.name);
            }
            Ok(())
        }
        Command::Topology(topology::TopologyCmd::Sweep(args)) => {
            let rows = topology::sweep(&args);
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Table => print!("{}", topology::sweep_table(&rows)),
            }
            Ok(())
        }
        cmd => {
            let client = cloud_client::Client::builder(&cli.cloud_url)
                .timeout(Duration::from_secs(30))
                .user_agent("simctl")
                .token_opt(cli.token.clone())
                .build()?;
            let out = commands::execute(&client, cmd, cli.output).await?;
            print!("{out}");
            Ok(())
        }
    }
}
