use ccm::config::Args;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    sim_common::init_logging(&args.effective_log_filter(), args.effective_log_format())
        .map_err(anyhow::Error::msg)?;
    ccm::run(args).await
}
