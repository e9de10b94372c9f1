use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    simctl::run(simctl::Cli::parse()).await
}
