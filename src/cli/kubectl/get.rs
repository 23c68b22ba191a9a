//! `get [KIND] [NAME]`: Batches, BatchSweeps and BatchSchedules as tables telling where each
//! is (phase, request counts, tokens, cost, age), or as YAML, JSON or names.

use std::process::ExitCode;

use kube::api::{Api, ListParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::Value;

use super::lookup::{self, ALL_KINDS, Found, Kind};
use super::table::{Table, age, or_none};
use super::{KubeFlags, PluginError, api_error, config};
use crate::api::{Batch, BatchSchedule, BatchSweep, Usage};

/// Flags of `get`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  kubectl llmbatch get                      # every kind in the namespace
  kubectl llmbatch get batches -A           # Batches in every namespace
  kubectl llmbatch get eval -o yaml         # the Batch, BatchSweep or BatchSchedule named eval
  kubectl llmbatch get sweep/eval -o wide")]
pub struct GetArgs {
    /// `KIND` (batches, sweeps, schedules), `NAME` (looked up in every kind), `KIND NAME` or
    /// `KIND/NAME`; every kind without.
    #[arg(num_args = 0..=2, value_name = "KIND|NAME")]
    pub args: Vec<String>,
    /// Output format: yaml, json, wide (more columns) or name.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
    /// List across every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    Wide,
    Name,
}

pub async fn run(flags: &KubeFlags, args: GetArgs) -> Result<ExitCode, PluginError> {
    let (kinds, name) = what(&args.args)?;
    if args.all_namespaces && name.is_some() {
        return Err(PluginError::Usage(
            "a name cannot be looked up across all namespaces (-A): give -n NAMESPACE instead".into(),
        ));
    }
    let (client, namespace) = config::connect(flags).await?;
    let found = match &name {
        Some(name) => {
            let found = lookup::all_named(&client, &namespace, &kinds, name).await?;
            if found.is_empty() {
                return Err(PluginError::Usage(lookup::not_found(&kinds, name, &namespace)));
            }
            found
        }
        None if args.all_namespaces => list(&client, "", &kinds).await?,
        None => list(&client, &namespace, &kinds).await?,
    };
    if found.is_empty() {
        match args.all_namespaces {
            true => eprintln!("No resources found"),
            false => eprintln!("No resources found in {namespace} namespace."),
        }
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render(&found, args.output, args.all_namespaces, name.is_some())?);
    Ok(ExitCode::SUCCESS)
}

/// The kinds and the name the arguments ask for.
fn what(args: &[String]) -> Result<(Vec<Kind>, Option<String>), PluginError> {
    match args {
        [] => Ok((ALL_KINDS.to_vec(), None)),
        [one] if one.contains('/') => {
            let (kinds, name) = lookup::split(one, &ALL_KINDS)?;
            Ok((kinds, Some(name)))
        }
        [one] => match Kind::parse(one) {
            Some(kind) => Ok((vec![kind], None)),
            None => Ok((ALL_KINDS.to_vec(), Some(one.clone()))),
        },
        [kind, name] => match Kind::parse(kind) {
            Some(kind) => Ok((vec![kind], Some(name.clone()))),
            None => Err(PluginError::Usage(format!(
                "{kind:?} is not a kind this plugin knows: batches, sweeps or schedules"
            ))),
        },
        _ => Err(PluginError::Usage("get takes at most KIND and NAME".into())),
    }
}

/// Every object of `kinds` in `namespace` (every namespace when empty), kind by kind, by name.
async fn list(client: &Client, namespace: &str, kinds: &[Kind]) -> Result<Vec<Found>, PluginError> {
    let mut found = Vec::new();
    for kind in kinds {
        match kind {
            Kind::Batch => found.extend(
                all::<Batch>(client, namespace)
                    .await?
                    .into_iter()
                    .map(|o| Found::Batch(Box::new(o))),
            ),
            Kind::Sweep => found.extend(
                all::<BatchSweep>(client, namespace)
                    .await?
                    .into_iter()
                    .map(|o| Found::Sweep(Box::new(o))),
            ),
            Kind::Schedule => found.extend(
                all::<BatchSchedule>(client, namespace)
                    .await?
                    .into_iter()
                    .map(|o| Found::Schedule(Box::new(o))),
            ),
        }
    }
    Ok(found)
}

async fn all<K>(client: &Client, namespace: &str) -> Result<Vec<K>, PluginError>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api = match namespace {
        "" => Api::<K>::all(client.clone()),
        ns => Api::<K>::namespaced(client.clone(), ns),
    };
    let plural = K::plural(&K::DynamicType::default()).to_string();
    let mut items = api
        .list(&ListParams::default())
        .await
        .map_err(api_error(format!("listing {plural}")))?
        .items;
    items.sort_by_key(|o| (o.namespace(), o.name_any()));
    Ok(items)
}

/// The objects as `format` says.
fn render(found: &[Found], format: Option<Format>, all_namespaces: bool, named: bool) -> Result<String, PluginError> {
    let one = named && found.len() == 1;
    match format {
        Some(Format::Json) => {
            let value = document(found, one)?;
            Ok(serde_json::to_string_pretty(&value).map_err(anyhow::Error::from)? + "\n")
        }
        Some(Format::Yaml) => Ok(serde_yaml::to_string(&document(found, one)?).map_err(anyhow::Error::from)?),
        Some(Format::Name) => Ok(found
            .iter()
            .map(|f| format!("{}/{}\n", f.kind().resource(), name_of(f)))
            .collect()),
        wide => Ok(tables(found, wide == Some(Format::Wide), all_namespaces)),
    }
}

/// One object as itself, several as a `List`, as kubectl prints them.
fn document(found: &[Found], one: bool) -> Result<Value, PluginError> {
    let items: Vec<Value> = found
        .iter()
        .map(|f| match f {
            Found::Batch(o) => serde_json::to_value(o),
            Found::Sweep(o) => serde_json::to_value(o),
            Found::Schedule(o) => serde_json::to_value(o),
        })
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::from)?;
    Ok(match one {
        true => items.into_iter().next().unwrap_or(Value::Null),
        false => {
            serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
        }
    })
}

fn name_of(found: &Found) -> String {
    match found {
        Found::Batch(o) => o.name_any(),
        Found::Sweep(o) => o.name_any(),
        Found::Schedule(o) => o.name_any(),
    }
}

/// A table per kind present, one after another; names carry their kind when there are several.
fn tables(found: &[Found], wide: bool, all_namespaces: bool) -> String {
    let kinds: Vec<Kind> = ALL_KINDS
        .into_iter()
        .filter(|k| found.iter().any(|f| f.kind() == *k))
        .collect();
    let qualified = kinds.len() > 1;
    let mut out = Vec::new();
    for kind in kinds {
        let mut header = header(kind, wide);
        if all_namespaces {
            header.insert(0, "NAMESPACE");
        }
        let mut table = Table::new(&header);
        for f in found.iter().filter(|f| f.kind() == kind) {
            let (namespace, mut row) = row(f, wide);
            if qualified {
                row[0] = format!("{}/{}", kind.resource(), row[0]);
            }
            if all_namespaces {
                row.insert(0, namespace);
            }
            table.push(row);
        }
        out.push(table.render());
    }
    out.join("\n")
}

fn header(kind: Kind, wide: bool) -> Vec<&'static str> {
    let (mut columns, extra): (Vec<&str>, &[&str]) = match kind {
        Kind::Batch => (
            vec!["NAME", "PHASE", "COMPLETED", "FAILED", "TOTAL", "TOKENS", "COST", "AGE"],
            &["MODE", "GATEWAY", "BATCH ID"],
        ),
        Kind::Sweep => (
            vec![
                "NAME",
                "PHASE",
                "BATCHES",
                "COMPLETED",
                "FAILED",
                "TOTAL",
                "TOKENS",
                "COST",
                "AGE",
            ],
            &["GATEWAY", "MODELS"],
        ),
        Kind::Schedule => (
            vec![
                "NAME",
                "SCHEDULE",
                "SUSPEND",
                "ACTIVE",
                "LAST SCHEDULE",
                "LAST RESULT",
                "AGE",
            ],
            &["TIMEZONE", "NEXT SCHEDULE"],
        ),
    };
    if wide {
        columns.extend(extra);
    }
    columns
}

/// The object's namespace and its row.
fn row(found: &Found, wide: bool) -> (String, Vec<String>) {
    let number = |n: Option<u64>| n.map_or_else(String::new, |n| n.to_string());
    let tokens = |u: Option<&Usage>| number(u.map(|u| u.total_tokens));
    match found {
        Found::Batch(b) => {
            let status = b.status.clone().unwrap_or_default();
            let counts = status.request_counts.as_ref();
            let mut row = vec![
                b.name_any(),
                or_none(status.phase),
                number(counts.map(|c| c.completed)),
                number(counts.map(|c| c.failed)),
                number(counts.map(|c| c.total)),
                tokens(status.usage.as_ref()),
                status.cost.as_ref().map(|c| c.display.clone()).unwrap_or_default(),
                age(b.metadata.creation_timestamp.as_ref()),
            ];
            if wide {
                row.push(or_none(status.mode.map(|m| format!("{m:?}"))));
                row.push(b.spec.gateway_ref.name.clone());
                row.push(or_none(status.gateway.and_then(|g| g.batch_id)));
            }
            (b.namespace().unwrap_or_default(), row)
        }
        Found::Sweep(s) => {
            let status = s.status.clone().unwrap_or_default();
            let counts = status.request_counts.as_ref();
            let mut row = vec![
                s.name_any(),
                or_none(status.phase),
                status.progress.clone().unwrap_or_default(),
                number(counts.map(|c| c.completed)),
                number(counts.map(|c| c.failed)),
                number(counts.map(|c| c.total)),
                tokens(status.usage.as_ref()),
                status.cost.as_ref().map(|c| c.display.clone()).unwrap_or_default(),
                age(s.metadata.creation_timestamp.as_ref()),
            ];
            if wide {
                row.push(s.spec.template.gateway_ref.name.clone());
                row.push(or_none(s.spec.matrix.as_ref().map(|m| m.models.join(","))));
            }
            (s.namespace().unwrap_or_default(), row)
        }
        Found::Schedule(s) => {
            let status = s.status.clone().unwrap_or_default();
            let mut row = vec![
                s.name_any(),
                s.spec.schedule.clone(),
                s.spec.suspend.to_string(),
                status.active_runs.to_string(),
                status
                    .last_schedule_time
                    .as_ref()
                    .map_or("<none>".into(), |t| age(Some(t))),
                or_none(status.last_result),
                age(s.metadata.creation_timestamp.as_ref()),
            ];
            if wide {
                row.push(s.spec.time_zone.clone().unwrap_or_else(|| "UTC".into()));
                row.push(or_none(status.next_schedule_time.map(|t| t.0.to_string())));
            }
            (s.namespace().unwrap_or_default(), row)
        }
    }
}
