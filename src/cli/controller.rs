//! `controller`: flags, the start-up permission check, the metrics/health server, then the
//! reconcilers until SIGTERM (in-flight reconciles finish, the Lease is released, exit 0).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::controller::{self, Context, LeaderElection, LeaseTimings, Options};
use crate::telemetry::{self, Health, Metrics};

/// Where a `controller` started by hand serves /metrics and health: loopback only, and not the
/// simulator's usual 127.0.0.1:8080.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:8081";

/// Flags of `controller`.
#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Watch only this namespace; repeat for several (WATCH_NAMESPACE: comma-separated). All
    /// namespaces by default.
    #[arg(
        long = "namespace",
        value_name = "NS",
        env = "WATCH_NAMESPACE",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// Where /metrics, /healthz and /readyz are served: this machine only by default (the
    /// chart and kustomize base pass 0.0.0.0:8080 for the kubelet's probes and Prometheus).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: SocketAddr,
    /// Reconcile only while holding a coordination.k8s.io Lease (for several replicas).
    #[arg(long)]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease.
    #[arg(long, value_name = "NS", env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, value_name = "NAME", default_value = "llm-batch-operator")]
    pub leader_election_id: String,
    /// The image of the Jobs that write results onto PVCs and run direct mode (normally this
    /// operator's own image). Without it, such Batches are refused with a message saying so.
    #[arg(long, value_name = "IMAGE", env = "JOB_IMAGE")]
    pub job_image: Option<String>,
    /// The port a direct-mode Job's pod serves its live counts on (GET /progress, at the pod's
    /// IP), which the controller reads while the Job runs. 1024-65535: the pods run unprivileged.
    #[arg(
        long,
        value_name = "PORT",
        env = "DIRECT_PROGRESS_PORT",
        default_value_t = controller::DEFAULT_PROGRESS_PORT,
        value_parser = clap::value_parser!(u16).range(1024..)
    )]
    pub direct_progress_port: u16,
    /// Where gateways and object stores may be. The controller refuses link-local and metadata
    /// addresses always, and loopback and private networks unless allowed here (an in-cluster
    /// gateway: allow its Service range).
    #[command(flatten)]
    pub network: super::NetworkArgs,
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(
    args: ControllerArgs,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<ExitCode> {
    let options = options(&args)?;
    let listener = TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("--metrics-addr {}", args.metrics_addr))?;
    let client = kube::Client::try_default().await?;
    check_permissions(&client, &options, args.job_image.is_some()).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let stop_server = CancellationToken::new();
    let server = tokio::spawn(telemetry::serve(
        listener,
        metrics.clone(),
        health.clone(),
        stop_server.clone().cancelled_owned(),
    ));
    let context = Context::with_telemetry(client, metrics, health)
        .with_job_image(args.job_image.clone())
        .with_direct_progress_port(args.direct_progress_port)
        .with_addresses(args.network.policy(crate::net::AddressPolicy::cluster()));
    let context = Arc::new(context);
    controller::run_with(context, options, shutdown).await;
    tracing::info!("stopped");
    stop_server.cancel();
    server.await??;
    Ok(ExitCode::SUCCESS)
}

fn options(args: &ControllerArgs) -> anyhow::Result<Options> {
    let namespaces: Vec<String> = args
        .namespaces
        .iter()
        .map(|ns| ns.trim().to_string())
        .filter(|ns| !ns.is_empty())
        .collect();
    let leader_election = if args.leader_elect {
        let Some(namespace) = args.leader_election_namespace.clone().filter(|ns| !ns.is_empty()) else {
            bail!("--leader-elect needs the Lease's namespace: --leader-election-namespace NS (or env POD_NAMESPACE)");
        };
        Some(LeaderElection {
            namespace,
            name: args.leader_election_id.clone(),
            identity: identity(),
            timings: LeaseTimings::default(),
        })
    } else {
        None
    };
    Ok(Options {
        namespaces,
        leader_election,
    })
}

/// POD_NAME in a cluster; elsewhere the host name with a random suffix, so two processes on one
/// machine never share an identity (controller-runtime does the same).
fn identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.is_empty()
    {
        return pod;
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| "llm-batch-operator".into());
    format!("{host}_{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// Every permission of deploy/rbac.yaml in each watched namespace (and for the Lease), checked
/// before reconciling, so a missing rule is named at once instead of surfacing as watch errors.
async fn check_permissions(client: &kube::Client, options: &Options, jobs: bool) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    let scopes: Vec<Option<&str>> = if options.namespaces.is_empty() {
        vec![None]
    } else {
        options.namespaces.iter().map(|ns| Some(ns.as_str())).collect()
    };
    for ns in scopes {
        let lacking = controller::missing_permissions(client, ns)
            .await
            .context("checking permissions (SelfSubjectAccessReview)")?;
        let place = ns.map_or("all namespaces".to_string(), |ns| format!("namespace {ns}"));
        missing.extend(lacking.into_iter().map(|p| format!("{p} in {place}")));
        if jobs {
            let lacking = controller::missing_job_permissions(client, ns)
                .await
                .context("checking permissions (SelfSubjectAccessReview)")?;
            missing.extend(lacking.into_iter().map(|p| format!("{p} in {place} (--job-image)")));
        }
    }
    if let Some(election) = &options.leader_election {
        let lacking = controller::missing_lease_permissions(client, &election.namespace)
            .await
            .context("checking permissions (SelfSubjectAccessReview)")?;
        missing.extend(
            lacking
                .into_iter()
                .map(|p| format!("{p} in namespace {} (leader election)", election.namespace)),
        );
    }
    let cluster_wide = controller::missing_cluster_permissions(client)
        .await
        .context("checking permissions (SelfSubjectAccessReview)")?;
    if !cluster_wide.is_empty() {
        tracing::warn!(
            missing = %cluster_wide.join(", "),
            "the controller's identity cannot read PriceLists (cluster-scoped): Batches of gateways with \
             spec.pricing.priceListRef end Priced=False until a ClusterRole grants get on pricelists (the chart's does)"
        );
    }
    if !missing.is_empty() {
        bail!(
            "the controller's identity lacks permissions that deploy/rbac.yaml grants: {}; bind that ClusterRole \
             to it (a ClusterRoleBinding, or a RoleBinding in each watched namespace)",
            missing.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> ControllerArgs {
        let cli = Cli::try_parse_from([&["llm-batch-operator", "controller"], args].concat()).unwrap();
        match cli.command {
            Command::Controller(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn namespaces_repeat_and_split_on_commas() {
        let args = parse(&[
            "--namespace",
            "team-a",
            "--namespace",
            "team-b,team-c",
            "--namespace",
            "",
        ]);
        assert_eq!(options(&args).unwrap().namespaces, ["team-a", "team-b", "team-c"]);
        assert!(options(&parse(&[])).unwrap().namespaces.is_empty(), "all namespaces");
    }

    #[test]
    fn leader_election_needs_a_namespace_and_uses_the_contract_timings() {
        let args = parse(&["--leader-elect", "--leader-election-namespace", ""]);
        let error = options(&args).unwrap_err().to_string();
        assert!(error.contains("--leader-election-namespace"), "{error}");
        let args = parse(&[
            "--leader-elect",
            "--leader-election-namespace",
            "ops",
            "--leader-election-id",
            "l",
        ]);
        let election = options(&args).unwrap().leader_election.unwrap();
        assert_eq!((election.namespace.as_str(), election.name.as_str()), ("ops", "l"));
        let t = election.timings;
        assert_eq!(
            (
                t.duration.as_secs(),
                t.renew_deadline.as_secs(),
                t.retry_period.as_secs()
            ),
            (15, 10, 2)
        );
        assert!(!election.identity.is_empty());
        assert_eq!(parse(&[]).metrics_addr.to_string(), "127.0.0.1:8081");
        assert!(
            parse(&[]).metrics_addr.ip().is_loopback(),
            "only the chart binds all addresses"
        );
    }

    #[test]
    fn the_direct_progress_port_defaults_to_8686_and_refuses_privileged_ports() {
        assert_eq!(parse(&[]).direct_progress_port, 8686);
        assert_eq!(parse(&["--direct-progress-port", "9000"]).direct_progress_port, 9000);
        for bad in ["80", "0", "70000"] {
            let parsed = Cli::try_parse_from(["llm-batch-operator", "controller", "--direct-progress-port", bad]);
            assert!(parsed.is_err(), "{bad}");
        }
    }
}
