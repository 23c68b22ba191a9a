//! The cluster and namespace, as kubectl chooses them: `--kubeconfig` (else `$KUBECONFIG`, else
//! `~/.kube/config`), `--context` (else the current context), `-n` (else the context's
//! namespace, else `default`).

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::{KubeFlags, PluginError};

/// A client of the chosen cluster, and the namespace to work in.
pub async fn connect(flags: &KubeFlags) -> Result<(Client, String), PluginError> {
    let options = KubeConfigOptions {
        context: flags.context.clone(),
        ..Default::default()
    };
    let config = match &flags.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| PluginError::Usage(format!("--kubeconfig {}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await
        }
        None => Config::from_kubeconfig(&options).await,
    };
    let config = config.map_err(|e| PluginError::Usage(format!("kubeconfig: {e}")))?;
    let namespace = flags
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| PluginError::Runtime(anyhow::anyhow!("kube client: {e}")))?;
    Ok((client, namespace))
}
