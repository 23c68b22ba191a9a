//! Finding an object by the name given: `NAME` looked up among Batches, BatchSweeps and
//! BatchSchedules, or `KIND/NAME` (kubectl's `batch/x`, `sweep/x`) in one kind.

use kube::api::Api;
use kube::{Client, ResourceExt};

use super::{PluginError, api_error};
use crate::api::{Batch, BatchSchedule, BatchSweep};

/// The kinds the plugin knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Batch,
    Sweep,
    Schedule,
}

pub const ALL_KINDS: [Kind; 3] = [Kind::Batch, Kind::Sweep, Kind::Schedule];

impl Kind {
    /// The kind a word names: singular, plural, short name or `<plural>.llmbatch.io`.
    pub fn parse(word: &str) -> Option<Kind> {
        let word = word.to_ascii_lowercase();
        let word = word.strip_suffix(".llmbatch.io").unwrap_or(&word);
        match word {
            "batch" | "batches" | "lb" => Some(Kind::Batch),
            "sweep" | "sweeps" | "batchsweep" | "batchsweeps" | "lbs" => Some(Kind::Sweep),
            "schedule" | "schedules" | "batchschedule" | "batchschedules" | "lbsched" => Some(Kind::Schedule),
            _ => None,
        }
    }

    /// `Batch`, `BatchSweep`, `BatchSchedule`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Batch => "Batch",
            Kind::Sweep => "BatchSweep",
            Kind::Schedule => "BatchSchedule",
        }
    }

    /// The resource as `-o name` prints it: `batch.llmbatch.io`.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Batch => "batch.llmbatch.io",
            Kind::Sweep => "batchsweep.llmbatch.io",
            Kind::Schedule => "batchschedule.llmbatch.io",
        }
    }
}

/// One object found by name.
pub enum Found {
    Batch(Box<Batch>),
    Sweep(Box<BatchSweep>),
    Schedule(Box<BatchSchedule>),
}

impl Found {
    pub fn kind(&self) -> Kind {
        match self {
            Found::Batch(_) => Kind::Batch,
            Found::Sweep(_) => Kind::Sweep,
            Found::Schedule(_) => Kind::Schedule,
        }
    }
}

/// `KIND/NAME` or `NAME`: the kinds to look in (of `allowed`) and the name.
pub fn split(arg: &str, allowed: &[Kind]) -> Result<(Vec<Kind>, String), PluginError> {
    match arg.split_once('/') {
        Some((word, name)) => {
            let kind = Kind::parse(word).ok_or_else(|| {
                PluginError::Usage(format!(
                    "{arg}: {word:?} is not a kind this plugin knows (batch, sweep or schedule)"
                ))
            })?;
            if !allowed.contains(&kind) {
                return Err(PluginError::Usage(format!("{arg}: not for a {}", kind.name())));
            }
            Ok((vec![kind], name.to_string()))
        }
        None => Ok((allowed.to_vec(), arg.to_string())),
    }
}

/// Every object named `name` in `namespace` among `kinds`.
pub async fn all_named(
    client: &Client,
    namespace: &str,
    kinds: &[Kind],
    name: &str,
) -> Result<Vec<Found>, PluginError> {
    let mut found = Vec::new();
    for kind in kinds {
        let what = format!("{} {namespace}/{name}", kind.name());
        let object = match kind {
            Kind::Batch => Api::<Batch>::namespaced(client.clone(), namespace)
                .get_opt(name)
                .await
                .map_err(api_error(&what))?
                .map(|o| Found::Batch(Box::new(o))),
            Kind::Sweep => Api::<BatchSweep>::namespaced(client.clone(), namespace)
                .get_opt(name)
                .await
                .map_err(api_error(&what))?
                .map(|o| Found::Sweep(Box::new(o))),
            Kind::Schedule => Api::<BatchSchedule>::namespaced(client.clone(), namespace)
                .get_opt(name)
                .await
                .map_err(api_error(&what))?
                .map(|o| Found::Schedule(Box::new(o))),
        };
        found.extend(object);
    }
    Ok(found)
}

/// The one object `arg` (`NAME` or `KIND/NAME`) names among `allowed`: an error naming the kinds
/// looked in when there is none, and asking for `KIND/NAME` when there are several.
pub async fn one(client: &Client, namespace: &str, arg: &str, allowed: &[Kind]) -> Result<Found, PluginError> {
    let (kinds, name) = split(arg, allowed)?;
    let mut found = all_named(client, namespace, &kinds, &name).await?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(PluginError::Usage(not_found(&kinds, &name, namespace))),
        _ => {
            let kinds: Vec<&str> = found.iter().map(|f| f.kind().name()).collect();
            Err(PluginError::Usage(format!(
                "{} are all named {name} in namespace {namespace}: say which, e.g. {}/{name}",
                kinds.join(" and "),
                found[0].kind().name().to_ascii_lowercase()
            )))
        }
    }
}

/// The Batch `arg` names, looked up among Batches and BatchSweeps so that a sweep's name gets
/// `sweep_refusal` (what the command does not do to a sweep, and what does) instead of "not found".
pub async fn batch(
    client: &Client,
    namespace: &str,
    arg: &str,
    sweep_refusal: fn(&str) -> String,
) -> Result<Box<Batch>, PluginError> {
    match one(client, namespace, arg, &[Kind::Batch, Kind::Sweep]).await? {
        Found::Batch(batch) => Ok(batch),
        Found::Sweep(sweep) => Err(PluginError::Usage(sweep_refusal(&sweep.name_any()))),
        Found::Schedule(_) => unreachable!("looked up among Batches and BatchSweeps"),
    }
}

/// "no Batch, BatchSweep or BatchSchedule named x in namespace ns ...".
pub fn not_found(kinds: &[Kind], name: &str, namespace: &str) -> String {
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    let kinds = match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    format!(
        "no {kinds} named {name} in namespace {namespace} (`kubectl llmbatch get -n {namespace}` lists them; \
         -n or --context chooses another namespace)"
    )
}
