//! Counts the requests a client sends to the API server, by verb and resource: a tower layer in
//! front of a real client (what the controller asks of the API server, measured rather than
//! guessed). Verbs as RBAC names them: get, list, watch, create, patch, update, delete.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request};
use kube::client::{Body, ClientBuilder};
use tower::{Layer, Service};

/// Requests seen, by (verb, resource[/subresource]).
#[derive(Clone, Default)]
pub struct Tally {
    seen: Arc<Mutex<BTreeMap<(String, String), u64>>>,
}

impl Tally {
    /// A client of `config` whose requests are counted.
    pub fn client(&self, config: kube::Config) -> kube::Client {
        ClientBuilder::try_from(config).unwrap().with_layer(self).build()
    }

    /// Requests of `verb` on `resource` (e.g. `("patch", "batches/status")`).
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        let seen = self.seen.lock().unwrap();
        seen.get(&(verb.to_string(), resource.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Every count, as `verb resource: n` lines.
    pub fn table(&self) -> Vec<(String, String, u64)> {
        let seen = self.seen.lock().unwrap();
        seen.iter().map(|((v, r), n)| (v.clone(), r.clone(), *n)).collect()
    }

    fn note(&self, request: &Request<Body>) {
        let (verb, resource) = classify(request.method(), request.uri());
        *self.seen.lock().unwrap().entry((verb, resource)).or_default() += 1;
    }
}

/// The RBAC verb and resource of a request to the API server.
fn classify(method: &Method, uri: &http::Uri) -> (String, String) {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.first() {
        Some(&"api") => &segments[2.min(segments.len())..],
        _ => &segments[3.min(segments.len())..],
    };
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let resource = match rest {
        [resource, _, sub] => format!("{resource}/{sub}"),
        [resource, ..] => resource.to_string(),
        [] => "?".to_string(),
    };
    let named = rest.len() >= 2;
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match *method {
        Method::GET if watch => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PATCH => "patch",
        Method::PUT => "update",
        Method::DELETE => "delete",
        _ => "other",
    };
    (verb.to_string(), resource)
}

impl<S> Layer<S> for Tally {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            tally: self.clone(),
        }
    }
}

pub struct Counted<S> {
    inner: S,
    tally: Tally,
}

impl<S: Service<Request<Body>>> Service<Request<Body>> for Counted<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> S::Future {
        self.tally.note(&request);
        self.inner.call(request)
    }
}

#[test]
fn requests_are_named_as_rbac_names_them() {
    let cases = [
        (
            "GET",
            "/apis/llmbatch.io/v1alpha1/namespaces/a/batches?watch=true&x=1",
            "watch",
            "batches",
        ),
        (
            "GET",
            "/apis/llmbatch.io/v1alpha1/namespaces/a/batches",
            "list",
            "batches",
        ),
        ("GET", "/apis/llmbatch.io/v1alpha1/batches", "list", "batches"),
        (
            "PATCH",
            "/apis/llmbatch.io/v1alpha1/namespaces/a/batches/b/status",
            "patch",
            "batches/status",
        ),
        ("GET", "/api/v1/namespaces/a/configmaps/input", "get", "configmaps"),
        ("POST", "/apis/events.k8s.io/v1/namespaces/a/events", "create", "events"),
    ];
    for (method, uri, verb, resource) in cases {
        let got = classify(&method.parse().unwrap(), &uri.parse().unwrap());
        assert_eq!(got, (verb.to_string(), resource.to_string()), "{method} {uri}");
    }
}
