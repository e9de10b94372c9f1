use ccm::config::Args;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    sim_common::init_logging(&args.log_filter, args.log_format).map_err(anyhow::Error::msg)?;
    ccm::run(args).await
}
