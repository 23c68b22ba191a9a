//! Faults the API server will not produce on demand, injected in front of a real client:
//! a tower layer that drops chosen requests before they are sent, as a crash or a broken
//! connection would.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http::{Request, Response};
use kube::client::{Body, ClientBuilder, DynBody};
use tower::util::BoxService;
use tower::{BoxError, Layer, Service};

/// The service stack kube's ClientBuilder builds from a Config.
type GenericResponse = Response<Box<DynBody>>;
type Generic = BoxService<Request<Body>, GenericResponse, BoxError>;

/// Drops every second request that `matches` (the 1st, 3rd, ... pass; the 2nd, 4th, ... fail).
#[derive(Clone)]
pub struct FailEverySecond {
    matches: fn(&Request<Body>) -> bool,
    seen: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
}

impl FailEverySecond {
    pub fn new(matches: fn(&Request<Body>) -> bool) -> Self {
        FailEverySecond {
            matches,
            seen: Arc::default(),
            failed: Arc::default(),
        }
    }

    /// A client of `config` behind this layer.
    pub fn client(&self, config: kube::Config) -> kube::Client {
        ClientBuilder::try_from(config).unwrap().with_layer(self).build()
    }

    /// How many requests were dropped.
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }
}

/// Status writes (PATCH .../status).
pub fn status_writes(request: &Request<Body>) -> bool {
    request.method() == http::Method::PATCH && request.uri().path().ends_with("/status")
}

impl Layer<Generic> for FailEverySecond {
    type Service = Generic;

    fn layer(&self, inner: Generic) -> Generic {
        BoxService::new(Faulty {
            inner,
            rule: self.clone(),
        })
    }
}

struct Faulty {
    inner: Generic,
    rule: FailEverySecond,
}

impl Service<Request<Body>> for Faulty {
    type Response = GenericResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<GenericResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if (self.rule.matches)(&request) && self.rule.seen.fetch_add(1, Ordering::SeqCst) % 2 == 1 {
            self.rule.failed.fetch_add(1, Ordering::SeqCst);
            return Box::pin(async { Err::<GenericResponse, BoxError>("injected fault: connection dropped".into()) });
        }
        Box::pin(self.inner.call(request))
    }
}
