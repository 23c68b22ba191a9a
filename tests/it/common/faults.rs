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

/// Drops some of the requests that `matches`: which ones, by their position among them.
#[derive(Clone)]
pub struct FailSome {
    matches: fn(&Request<Body>) -> bool,
    fails: fn(usize) -> bool,
    seen: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
}

impl FailSome {
    /// Every second match fails (the 1st, 3rd, ... pass).
    pub fn every_second(matches: fn(&Request<Body>) -> bool) -> Self {
        Self::new(matches, |n| n % 2 == 1)
    }

    /// About one match in eight fails, scattered (a fixed hash of the position, so runs
    /// repeat), so that no fixed step of a reconcile always meets the fault.
    pub fn one_in_eight(matches: fn(&Request<Body>) -> bool) -> Self {
        Self::new(matches, |n| (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61 == 0)
    }

    /// Every match fails.
    pub fn all(matches: fn(&Request<Body>) -> bool) -> Self {
        Self::new(matches, |_| true)
    }

    fn new(matches: fn(&Request<Body>) -> bool, fails: fn(usize) -> bool) -> Self {
        FailSome {
            matches,
            fails,
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

/// The body of a request whose body is in memory (as kube's JSON bodies are), else empty.
pub fn body_bytes(request: &Request<Body>) -> bytes::Bytes {
    let Some(body) = request.body().try_clone() else {
        return bytes::Bytes::new();
    };
    futures::executor::block_on(body.collect_bytes()).unwrap_or_default()
}

impl Layer<Generic> for FailSome {
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
    rule: FailSome,
}

impl Service<Request<Body>> for Faulty {
    type Response = GenericResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<GenericResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if (self.rule.matches)(&request) && (self.rule.fails)(self.rule.seen.fetch_add(1, Ordering::SeqCst)) {
            self.rule.failed.fetch_add(1, Ordering::SeqCst);
            return Box::pin(async { Err::<GenericResponse, BoxError>("injected fault: connection dropped".into()) });
        }
        Box::pin(self.inner.call(request))
    }
}
