use clap::Parser;
use kube_sim::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli {
        command: Command::Serve(args),
    } = Cli::parse();
    sim_common::init_logging(&args.log_filter, args.log_format).map_err(anyhow::Error::msg)?;
    kube_sim::serve(args).await
}
