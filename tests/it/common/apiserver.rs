//! A real Kubernetes API server for tests: etcd and kube-apiserver built from Go modules by
//! `scripts/k8s-test-bins`, started once per test binary on free 127.0.0.1 ports with
//! generated certificates, RBAC on, an admin identity, service-account token signing, and the
//! project's CRDs installed. `LLMB_K8S_BINS` names the directory holding the binaries
//! (`scripts/test` sets it); without it the tests fail, they never skip.
//!
//! Test binaries end without dropping statics, so each server runs under a small shell
//! watchdog that stops it, and removes its directory, once the test process is gone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::wait::{wait_until, wait_until_blocking};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

const START_DEADLINE: Duration = Duration::from_secs(90);
/// The field manager the tests apply with.
pub const MANAGER: &str = "llm-batch-operator-tests";

/// A running etcd + kube-apiserver pair.
pub struct ApiServer {
    _etcd: Child,
    _apiserver: Child,
    _controller_manager: Option<Child>,
    pub dir: PathBuf,
    pub url: String,
    pub ca_pem: String,
    admin_cert_pem: String,
    admin_key_pem: String,
    /// When the processes were started (start-up time is measured to the first /readyz ok).
    pub started: Instant,
}

static SERVER: OnceLock<ApiServer> = OnceLock::new();
static CRDS: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
static READY: OnceLock<Duration> = OnceLock::new();

/// How long etcd and kube-apiserver took from start to the first `/readyz` ok.
pub fn startup_time() -> Duration {
    *READY.get().expect("admin_client() waits for readiness")
}

/// An admin client of the shared server (started on first use), with the CRDs installed.
/// A fresh client per test: a kube Client belongs to the runtime that made it.
pub async fn admin_client() -> Client {
    let server = SERVER.get_or_init(ApiServer::start);
    let client = server.client().await;
    CRDS.get_or_init(|| install_crds(client.clone())).await;
    client
}

/// The shared server (after [`admin_client`] started it).
pub fn server() -> &'static ApiServer {
    SERVER.get().expect("admin_client() starts the server")
}

/// Creates a namespace of its own for one test.
pub async fn fresh_namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{:08x}", rand::random::<u32>());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    name
}

/// Creates ServiceAccount `name` in `ns` and a client acting as it, with a token from the
/// TokenRequest API (what a pod of that ServiceAccount would hold).
pub async fn service_account_client(admin: &Client, ns: &str, name: &str) -> Client {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let accounts = Api::<ServiceAccount>::namespaced(admin.clone(), ns);
    let account: ServiceAccount = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    accounts.create(&PostParams::default(), &account).await.unwrap();
    token_client(admin, ns, name).await
}

/// A client holding a token of the existing ServiceAccount `ns/name`, from the TokenRequest
/// API (what a pod of that ServiceAccount would hold).
pub async fn token_client(admin: &Client, ns: &str, name: &str) -> Client {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    let request: TokenRequest =
        serde_json::from_value(serde_json::json!({"spec": {"expirationSeconds": 3600}})).unwrap();
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap();
    let mut config = server().config().await;
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.status.unwrap().token.into()),
        ..Default::default()
    };
    Client::try_from(config).unwrap()
}

impl ApiServer {
    fn start() -> ApiServer {
        let bins = bins_dir();
        let started = Instant::now();
        let dir = std::env::temp_dir().join(format!("llmb-apiserver-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki::generate(&dir);

        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_args = vec![
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--unsafe-no-fsync".into(),
            "--log-level=error".into(),
        ];
        let etcd = spawn_tied(&bins.join("etcd"), &etcd_args, &dir.join("etcd.log"), None);
        wait_port(etcd_port, &dir.join("etcd.log"));

        let p = |name: &str| dir.join(name).display().to_string();
        let api_args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--cert-dir={}", p("certs")),
            format!("--tls-cert-file={}", p("serving.crt")),
            format!("--tls-private-key-file={}", p("serving.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--secure-port={api_port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            // Configuration only: nothing is ever sent to this range.
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            // No controller manager creates default ServiceAccounts or reconciles endpoints.
            "--disable-admission-plugins=ServiceAccount".into(),
            "--endpoint-reconciler-type=none".into(),
            "--enable-priority-and-fairness=false".into(),
            "--v=0".into(),
        ];
        let apiserver = spawn_tied(
            &bins.join("kube-apiserver"),
            &api_args,
            &dir.join("apiserver.log"),
            Some(&dir),
        );
        wait_port(api_port, &dir.join("apiserver.log"));
        let server = ApiServer {
            _etcd: etcd,
            _apiserver: apiserver,
            _controller_manager: None,
            url: format!("https://127.0.0.1:{api_port}"),
            ca_pem: pki.ca_pem,
            admin_cert_pem: pki.admin_cert_pem,
            admin_key_pem: pki.admin_key_pem,
            started,
            dir,
        };
        server.start_controller_manager(&bins)
    }

    /// kube-controller-manager, when it was built: garbage collection of owned objects,
    /// namespace deletion, default ServiceAccounts. It retries until the API server answers.
    fn start_controller_manager(mut self, bins: &Path) -> ApiServer {
        let bin = bins.join("kube-controller-manager");
        if !bin.is_file() {
            return self;
        }
        std::fs::write(self.dir.join("kubeconfig"), self.kubeconfig_yaml()).unwrap();
        let p = |name: &str| self.dir.join(name).display().to_string();
        let args = vec![
            format!("--kubeconfig={}", p("kubeconfig")),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            "--secure-port=0".into(),
            format!("--service-account-private-key-file={}", p("sa.key")),
            format!("--root-ca-file={}", p("ca.crt")),
            "--use-service-account-credentials=false".into(),
            "--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-persistentvolume-binder,-attachdetach"
                .into(),
        ];
        self._controller_manager = Some(spawn_tied(&bin, &args, &self.dir.join("controller-manager.log"), None));
        self
    }

    /// A kubeconfig for the admin identity, for kubectl and helm.
    pub fn kubeconfig_yaml(&self) -> String {
        use base64::Engine as _;
        let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters: [{{name: test, cluster: {{server: '{}', certificate-authority-data: {}}}}}]\n\
             users: [{{name: admin, user: {{client-certificate-data: {}, client-key-data: {}}}}}]\n\
             contexts: [{{name: test, context: {{cluster: test, user: admin}}}}]\n",
            self.url,
            b64(&self.ca_pem),
            b64(&self.admin_cert_pem),
            b64(&self.admin_key_pem)
        )
    }

    /// A client authenticated as the admin (group system:masters), once /readyz answers ok.
    pub async fn client(&self) -> Client {
        let client = Client::try_from(self.config().await).expect("client from config");
        wait_until("the API server is not ready", START_DEADLINE, async || {
            let request = http::Request::get("/readyz").body(Vec::new()).unwrap();
            match client.request_text(request).await {
                Ok(text) if text.trim() == "ok" => Ok(()),
                other => Err(format!("{other:?}\n{}", tail(&self.dir.join("apiserver.log")))),
            }
        })
        .await;
        READY.get_or_init(|| self.started.elapsed());
        client
    }

    /// A kube Config for the admin identity (`<dir>/kubeconfig` holds the same for kubectl).
    pub async fn config(&self) -> Config {
        let yaml = self.kubeconfig_yaml();
        let kubeconfig = Kubeconfig::from_yaml(&yaml).expect("kubeconfig");
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kube config")
    }
}

/// Read at run time when cargo says where the clone is (a compiled-in path may be another clone's).
fn crds_file() -> String {
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    format!("{root}/crds/llmbatch.io.yaml")
}

/// Applies every CRD in crds/ and waits until each is Established.
async fn install_crds(client: Client) {
    let api = Api::<CustomResourceDefinition>::all(client);
    let text = std::fs::read_to_string(crds_file()).unwrap();
    let mut names = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let crd: CustomResourceDefinition = serde::Deserialize::deserialize(doc).unwrap();
        let name = crd.metadata.name.clone().unwrap();
        api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("the API server refused CRD {name}: {e}"));
        names.push(name);
    }
    for name in names {
        wait_until(
            &format!("CRD {name} was not established"),
            Duration::from_secs(30),
            async || {
                let conditions = api.get(&name).await.unwrap().status.map(|s| s.conditions);
                let established = conditions
                    .iter()
                    .flatten()
                    .flatten()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if established { Ok(()) } else { Err(conditions) }
            },
        )
        .await;
    }
    // Discovery of new CRDs lags establishment a little; wait until the group is served.
    let group = "llmbatch.io/v1alpha1 is not served";
    wait_until(group, Duration::from_secs(30), async || {
        let request = http::Request::get("/apis/llmbatch.io/v1alpha1")
            .body(Vec::new())
            .unwrap();
        match api.clone().into_client().request_text(request).await {
            Ok(text) if text.contains("batches") => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

fn bins_dir() -> PathBuf {
    let dir = std::env::var_os("LLMB_K8S_BINS").map(PathBuf::from).unwrap_or_default();
    for bin in ["etcd", "kube-apiserver"] {
        assert!(
            dir.join(bin).is_file(),
            "{bin} not found in LLMB_K8S_BINS={}: run scripts/test (it builds them with scripts/k8s-test-bins)",
            dir.display()
        );
    }
    dir
}

/// Starts `bin` under a bash watchdog that stops it (and removes `cleanup`) once this test
/// process has exited.
fn spawn_tied(bin: &Path, args: &[String], log: &Path, cleanup: Option<&Path>) -> Child {
    let log_file = std::fs::File::create(log).unwrap();
    let script = r#"parent=$1; cleanup=$2; shift 2
"$@" & child=$!
trap 'kill -9 $child 2>/dev/null; wait $child 2>/dev/null; [ -n "$cleanup" ] && rm -rf "$cleanup"' EXIT
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done"#;
    Command::new("bash")
        .args(["-c", script, "watchdog"])
        .arg(std::process::id().to_string())
        .arg(cleanup.map(|p| p.display().to_string()).unwrap_or_default())
        .arg(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()))
}

/// A 127.0.0.1 port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, log: &Path) {
    wait_until_blocking(&format!("nothing listens on {port}"), START_DEADLINE, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("{e}\n{}", tail(log)))
    });
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The certificates and keys of one server, written to its directory.
struct Pki {
    ca_pem: String,
    admin_cert_pem: String,
    admin_key_pem: String,
}

impl Pki {
    fn generate(dir: &Path) -> Pki {
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "llm-batch-operator test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let serving_key = KeyPair::generate().unwrap();
        let mut serving = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        serving.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&serving_key, &issuer).unwrap();

        let admin_key = KeyPair::generate().unwrap();
        let mut admin = CertificateParams::new(Vec::<String>::new()).unwrap();
        admin.distinguished_name.push(DnType::CommonName, "admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin.signed_by(&admin_key, &issuer).unwrap();

        write("ca.crt", &ca_cert.pem());
        write("serving.crt", &serving_cert.pem());
        write("serving.key", &serving_key.serialize_pem());
        let service_accounts = KeyPair::generate().unwrap();
        write("sa.key", &service_accounts.serialize_pem());
        write("sa.pub", &service_accounts.public_key_pem());
        Pki {
            ca_pem: ca_cert.pem(),
            admin_cert_pem: admin_cert.pem(),
            admin_key_pem: admin_key.serialize_pem(),
        }
    }
}
