use anyhow::Context as _;
use clap::Parser;
use kube_sim::config::{Cli, Command, LogFormat};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli {
        command: Command::Serve(args),
    } = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_filter)
        .with_context(|| format!("invalid log filter {:?}", args.log_filter))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    kube_sim::serve(args).await
}
