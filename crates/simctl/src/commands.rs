//! The cloud commands. Each returns its output as a string (a table or JSON), so tests can check it.

use anyhow::{Context as _, bail};
use clap::Subcommand;
use cloud_api::{CreateInstanceRequest, Instance, InstanceState, Tags, TrafficReport, ZoneState};
use cloud_client::{Client, InstanceFilter};
use serde::Serialize;

use crate::{Command, Output, table};

#[derive(Debug, Subcommand)]
pub enum InstanceCmd {
    /// List instances.
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        zone: Option<String>,
        /// pending, running, stopping, stopped or terminated.
        #[arg(long)]
        state: Option<InstanceState>,
    },
    /// Create an instance.
    Create {
        name: String,
        #[arg(long)]
        zone: String,
        #[arg(long = "type", default_value = "sim.small")]
        instance_type: String,
        /// Register an existing machine at this address instead of allocating one.
        #[arg(long)]
        ip: Option<std::net::Ipv4Addr>,
        /// `key=value`, repeatable.
        #[arg(long = "tag", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
    },
    /// Start a stopped instance (by ID or name).
    Start { instance: String },
    /// Stop a running instance (by ID or name).
    Stop { instance: String },
    /// Terminate an instance (by ID or name); it stays visible for a while, as on EC2.
    Terminate { instance: String },
    /// Delete an instance record now (by ID or name).
    Delete { instance: String },
}

#[derive(Debug, Subcommand)]
pub enum ZoneCmd {
    /// List zones with their state and address ranges.
    #[command(alias = "ls")]
    List,
    /// Set a zone's state: available, impaired or outage.
    SetState { zone: String, state: ZoneState },
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// List backend groups with their zone and members.
    #[command(alias = "ls")]
    List,
}

#[derive(Debug, Subcommand)]
pub enum LbCmd {
    /// List load balancers.
    #[command(alias = "ls")]
    List,
    /// Backend health and open connections as the data plane sees them, with its totals.
    Status {
        /// An ID (`lb-...`), or the Service it serves (`namespace/name`, or `name` in `default`).
        target: String,
    },
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

fn json<T: Serialize>(v: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(v)? + "\n")
}

/// A load balancer's backends in a table cell: instances listed one by one, and groups.
fn backends_cell(instances: usize, groups: usize) -> String {
    match (instances, groups) {
        (n, 0) => n.to_string(),
        (0, 1) => "1 group".into(),
        (0, g) => format!("{g} groups"),
        (n, 1) => format!("{n} + 1 group"),
        (n, g) => format!("{n} + {g} groups"),
    }
}

fn lb_status_table(r: &TrafficReport) -> String {
    let rows = r
        .backends
        .iter()
        .map(|b| {
            vec![
                b.instance_id.clone(),
                b.zone.clone(),
                if b.healthy { "healthy" } else { "unhealthy" }.to_owned(),
                b.active_connections.to_string(),
            ]
        })
        .collect::<Vec<_>>();
    let in_zone = r
        .in_zone_fraction
        .map_or_else(|| "-".to_owned(), |f| format!("{:.1}%", f * 100.0));
    format!(
        "{}\n{} connections proxied, {} refused, {in_zone} in the client's zone\n",
        table::render(&["BACKEND", "ZONE", "HEALTH", "ACTIVE"], &rows).trim_end(),
        r.connections,
        r.refused,
    )
}

fn instances_table(items: &[Instance]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                i.id.to_string(),
                i.name.clone(),
                i.zone.clone(),
                i.instance_type.clone(),
                i.state.to_string(),
                i.private_ip.to_string(),
            ]
        })
        .collect();
    table::render(
        &["ID", "NAME", "ZONE", "TYPE", "STATE", "PRIVATE IP"],
        &rows,
    )
}

/// Finds an instance by ID or by (live) name.
pub async fn resolve(client: &Client, id_or_name: &str) -> anyhow::Result<Instance> {
    if id_or_name.parse::<cloud_api::InstanceId>().is_ok() {
        return client
            .get_instance(id_or_name)
            .await?
            .with_context(|| format!("no instance {id_or_name}"));
    }
    let filter = InstanceFilter {
        name: Some(id_or_name.to_owned()),
        ..Default::default()
    };
    let found = client.list_all_instances(&filter).await?;
    found
        .iter()
        .find(|i| i.state != InstanceState::Terminated)
        .or_else(|| found.last())
        .cloned()
        .with_context(|| format!("no instance named {id_or_name:?}"))
}

pub async fn execute(client: &Client, cmd: Command, output: Output) -> anyhow::Result<String> {
    let one = |i: Instance| -> anyhow::Result<String> {
        match output {
            Output::Json => json(&i),
            Output::Table => Ok(instances_table(std::slice::from_ref(&i))),
        }
    };
    match cmd {
        Command::Instances(InstanceCmd::List { zone, state }) => {
            let items = client
                .list_all_instances(&InstanceFilter {
                    zone,
                    state,
                    ..Default::default()
                })
                .await?;
            match output {
                Output::Json => json(&items),
                Output::Table => Ok(instances_table(&items)),
            }
        }
        Command::Instances(InstanceCmd::Create {
            name,
            zone,
            instance_type,
            ip,
            tags,
        }) => {
            let req = CreateInstanceRequest {
                name,
                zone,
                instance_type,
                tags: tags.into_iter().collect::<Tags>(),
                private_ip: ip,
            };
            one(client.create_instance(&req).await?)
        }
        Command::Instances(InstanceCmd::Start { instance }) => one(client
            .start_instance(resolve(client, &instance).await?.id.as_str())
            .await?),
        Command::Instances(InstanceCmd::Stop { instance }) => one(client
            .stop_instance(resolve(client, &instance).await?.id.as_str())
            .await?),
        Command::Instances(InstanceCmd::Terminate { instance }) => one(client
            .terminate_instance(resolve(client, &instance).await?.id.as_str())
            .await?),
        Command::Instances(InstanceCmd::Delete { instance }) => {
            let i = resolve(client, &instance).await?;
            client.delete_instance(i.id.as_str()).await?;
            Ok(match output {
                Output::Json => json(&serde_json::json!({"deleted": i.id}))?,
                Output::Table => format!("instance {} ({}) deleted\n", i.id, i.name),
            })
        }
        Command::Zones(ZoneCmd::List) => {
            let zones = client.zones().await?;
            match output {
                Output::Json => json(&zones),
                Output::Table => {
                    let rows = zones
                        .iter()
                        .map(|z| {
                            vec![
                                z.name.clone(),
                                z.state.as_str().to_owned(),
                                z.instance_subnet.to_string(),
                                z.lb_pool.to_string(),
                            ]
                        })
                        .collect::<Vec<_>>();
                    Ok(table::render(
                        &["ZONE", "STATE", "INSTANCE SUBNET", "LB POOL"],
                        &rows,
                    ))
                }
            }
        }
        Command::Zones(ZoneCmd::SetState { zone, state }) => {
            let z = client.set_zone_state(&zone, state).await?;
            match output {
                Output::Json => json(&z),
                Output::Table => Ok(format!("zone {} is now {}\n", z.name, z.state.as_str())),
            }
        }
        Command::Lbs(LbCmd::List) => {
            let lbs = client.list_all_load_balancers(&Default::default()).await?;
            match output {
                Output::Json => json(&lbs),
                Output::Table => {
                    let rows = lbs
                        .iter()
                        .map(|l| {
                            let fronts = l
                                .frontends
                                .iter()
                                .map(|f| format!("{}={}", f.zone, f.ip))
                                .collect::<Vec<_>>()
                                .join(",");
                            let ports = l
                                .listeners
                                .iter()
                                .map(|x| format!("{}:{}", x.port, x.backend_port))
                                .collect::<Vec<_>>()
                                .join(",");
                            vec![
                                l.id.to_string(),
                                l.name.clone(),
                                format!("{:?}", l.state).to_lowercase(),
                                fronts,
                                ports,
                                backends_cell(l.backends.len(), l.backend_groups.len()),
                            ]
                        })
                        .collect::<Vec<_>>();
                    Ok(table::render(
                        &["ID", "NAME", "STATE", "FRONTENDS", "PORTS", "BACKENDS"],
                        &rows,
                    ))
                }
            }
        }
        Command::Groups(GroupCmd::List) => {
            let groups = client.list_all_backend_groups(&Default::default()).await?;
            match output {
                Output::Json => json(&groups),
                Output::Table => {
                    let rows = groups
                        .iter()
                        .map(|g| {
                            vec![
                                g.id.to_string(),
                                g.name.clone(),
                                g.zone.clone(),
                                g.members.len().to_string(),
                            ]
                        })
                        .collect::<Vec<_>>();
                    Ok(table::render(&["ID", "NAME", "ZONE", "MEMBERS"], &rows))
                }
            }
        }
        Command::Lbs(LbCmd::Status { target }) => {
            let lb = crate::traffic::find(client, &target).await?;
            let report = client
                .load_balancer_traffic(lb.id.as_str())
                .await?
                .with_context(|| format!("load balancer {} is gone", lb.id))?;
            match output {
                Output::Json => json(&report),
                Output::Table => Ok(lb_status_table(&report)),
            }
        }
        Command::Traffic(args) => {
            let r = crate::traffic::run(client, &args).await?;
            match output {
                Output::Json => json(&r),
                Output::Table => Ok(crate::traffic::render(&r)),
            }
        }
        Command::Up(_) => bail!("`up` is not a cloud command"),
        Command::Topology(_) => bail!("`topology` is not a cloud command"),
        Command::Scenario(_) => bail!("`scenario` is not a cloud command"),
    }
}
