//! simctl: the simcloud command line. `simctl up` runs the local sandbox (cloud-sim, kube-sim with
//! simulated kubelets, and the ccm) in one process; the other commands drive a running cloud-sim.
//!
//! Layout: [`Cli`] is the command line; [`commands`] the cloud commands; [`up`] the sandbox;
//! [`topology`] offline predictions of topology-aware routing; [`table`] terminal tables.

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

pub mod commands;
pub mod table;
pub mod topology;
pub mod traffic;
pub mod up;

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
    /// Load balancers: list.
    #[command(subcommand, name = "lbs", alias = "load-balancers")]
    Lbs(commands::LbCmd),
    /// Drive real connections through a load balancer's zonal frontends and report where they went.
    Traffic(traffic::TrafficArgs),
    /// Predict Kubernetes' topology-aware routing offline (upstream's algorithms, ported).
    #[command(subcommand)]
    Topology(topology::TopologyCmd),
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
