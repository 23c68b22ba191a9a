//! `report NAME`: `llm-batch-operator report` on a Batch or BatchSweep in the cluster. The
//! status comes from the API server, the input from the ConfigMap or Secret its spec names, the
//! results from its output Secret or object-store prefix ([`crate::report::cluster`]).

use std::path::PathBuf;
use std::process::ExitCode;

use super::lookup::{self, Found, Kind};
use super::{KubeFlags, PluginError, config};
use crate::cli::report::ReportFlags;
use crate::report::cluster::{self, Cluster, Subject};
use crate::report::{self as reports, ReportError, Source};

/// Flags of `report`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  kubectl llmbatch report ticket-triage -o rows.csv
  kubectl llmbatch report eval --pivot model -o eval.csv
  kubectl llmbatch report eval --summary --format markdown
  kubectl llmbatch report eval --format html -o eval.html
Exit codes: 0 written; 1 the results could not be read (the API server, object storage); 2 the
name, a flag or the object's output is wrong for a report (a PVC cannot be read from outside
the cluster).")]
pub struct ReportArgs {
    /// The Batch or BatchSweep: NAME, or batch/NAME, sweep/NAME.
    pub name: String,
    #[command(flatten)]
    pub report: ReportFlags,
}

pub async fn run(flags: &KubeFlags, args: ReportArgs) -> Result<ExitCode, PluginError> {
    let (client, namespace) = config::connect(flags).await?;
    let found = lookup::one(&client, &namespace, &args.name, &[Kind::Batch, Kind::Sweep]).await?;
    let (subject, name) = match found {
        Found::Batch(b) => {
            let name = kube::ResourceExt::name_any(b.as_ref());
            (Subject::Batch(b), name)
        }
        Found::Sweep(s) => {
            let name = kube::ResourceExt::name_any(s.as_ref());
            (Subject::Sweep(s), name)
        }
        Found::Schedule(_) => unreachable!("looked up among Batches and BatchSweeps"),
    };
    let manifests = match cluster::manifests(&client, subject, args.report.input.is_none()).await {
        Ok(manifests) => manifests,
        Err(ReportError::Input(problem)) => return Err(PluginError::Usage(problem)),
        Err(e) => return Err(PluginError::Runtime(e.into())),
    };
    let options = args
        .report
        .options(Vec::new(), PathBuf::new(), Some(format!("{namespace}/{name}")));
    let source = Source::Cluster(Cluster::new(client));
    // The walk reads files and blocks on the API server and object storage from its own thread.
    let written = tokio::task::spawn_blocking(move || {
        let out = reports::output(&options)?;
        reports::conclude(reports::write_from(&manifests, &source, &options, out))
    })
    .await
    .map_err(anyhow::Error::from)?;
    Ok(written?)
}
