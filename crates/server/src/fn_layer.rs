//! Middleware written as async functions, `f(state, request, next)`, as
//! with axum's `from_fn_with_state`, but with the service beneath held by
//! its own type in [`Next`] rather than boxed again on every request.
//!
//! axum's `from_fn` boxes the inner service (a clone of it) and then that
//! service's future on every request, on top of the middleware's own
//! future: three allocations and two copies of ever larger futures per
//! layer and request. Here only the middleware's own future is boxed.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// The layer of middleware function `f` with its state.
#[derive(Clone)]
pub struct FnLayer<F, St> {
    f: F,
    state: St,
}

impl<F, St> FnLayer<F, St> {
    pub fn new(state: St, f: F) -> Self {
        Self { f, state }
    }
}

impl<F: Clone, St: Clone, S> Layer<S> for FnLayer<F, St> {
    type Service = FnService<F, St, S>;

    fn layer(&self, inner: S) -> Self::Service {
        FnService {
            f: self.f.clone(),
            state: self.state.clone(),
            inner,
        }
    }
}

/// [`FnLayer`] around service `S`.
#[derive(Clone)]
pub struct FnService<F, St, S> {
    f: F,
    state: St,
    inner: S,
}

/// What a middleware function's [`Next`] can run: the rest of the stack,
/// answering every request. One name for the bounds every middleware
/// function carries.
pub trait Stack:
    Service<Request, Error = Infallible, Response = Self::Reply, Future = Self::Pending>
    + Send
    + 'static
{
    type Reply: IntoResponse;
    type Pending: Future<Output = Result<Self::Reply, Infallible>> + Send;
}

impl<T> Stack for T
where
    T: Service<Request, Error = Infallible> + Send + 'static,
    T::Response: IntoResponse,
    T::Future: Send,
{
    type Reply = T::Response;
    type Pending = T::Future;
}

/// The rest of the stack, for a middleware to call (or not).
pub struct Next<S> {
    inner: S,
}

impl<S> Next<S>
where
    S: Service<Request, Error = Infallible>,
    S::Response: IntoResponse,
{
    /// Runs the rest of the stack on `req`, once it is ready.
    pub async fn run(mut self, req: Request) -> Response {
        let ready = std::future::poll_fn(|cx| self.inner.poll_ready(cx)).await;
        if let Err(never) = ready {
            match never {}
        }
        match self.inner.call(req).await {
            Ok(response) => response.into_response(),
            Err(never) => match never {},
        }
    }
}

impl<F, Fut, St, S> Service<Request> for FnService<F, St, S>
where
    F: Fn(St, Request, Next<S>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response> + Send + 'static,
    St: Clone + Send + 'static,
    S: Service<Request, Error = Infallible> + Clone + Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The inner service's readiness is awaited by `Next::run`, on the
        // clone that goes with the request (see `call`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // A clone goes with the request; `Next::run` waits for it to be ready.
        let inner = self.inner.clone();
        let (f, state) = (self.f.clone(), self.state.clone());
        // The middleware's future is made inside the box, where it runs: made
        // here and moved in, its kilobytes (it holds the rest of the stack's
        // futures) would be copied twice per layer and request.
        Box::pin(async move { Ok(f(state, req, Next { inner }).await) })
    }
}
