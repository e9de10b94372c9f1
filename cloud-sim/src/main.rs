use clap::Parser;
use cloud_sim::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            sim_common::init_logging(&args.log_filter, args.log_format)
                .map_err(anyhow::Error::msg)?;
            cloud_sim::serve(args).await
        }
        Command::DataPlane(args) => {
            sim_common::init_logging(&args.serve.log_filter, args.serve.log_format)
                .map_err(anyhow::Error::msg)?;
            cloud_sim::data_plane(args).await
        }
    }
}
