//! The CRI calls' metrics, taken where every call passes: a layer around
//! the gRPC router, so that unary and streaming calls, and the methods
//! answered Unimplemented, are all counted the same way. A call is counted
//! when it arrives; its status and duration when its status is known: in
//! the response's headers (a failure before any message) or in the
//! trailers at the end of its body. A call whose response is dropped
//! before its status (the client went away) ends as `Cancelled`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::{HeaderMap, Request, Response};
use tonic::body::Body;
use tonic::codegen::Service;

/// The gRPC services whose methods are labelled by name; a call to any
/// other path is labelled `unknown` (a client cannot make up labels).
const SERVICES: [&str; 2] = ["runtime.v1.RuntimeService", "runtime.v1.ImageService"];

/// Wraps the gRPC router (`Server::builder().layer(GrpcMetricsLayer)`).
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for GrpcMetrics<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let call = Call::start(method_of(request.uri().path()));
        let response = self.inner.call(request);
        Box::pin(async move {
            match response.await {
                Ok(response) => Ok(call.follow(response)),
                Err(e) => {
                    call.finish(tonic::Code::Unknown);
                    Err(e)
                }
            }
        })
    }
}

/// `/runtime.v1.RuntimeService/Version` → `Version`.
fn method_of(path: &str) -> String {
    let known = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .filter(|(service, method)| SERVICES.contains(service) && is_name(method));
    match known {
        Some((_, method)) => method.to_string(),
        None => "unknown".to_string(),
    }
}

fn is_name(method: &str) -> bool {
    (1..=64).contains(&method.len()) && method.chars().all(|c| c.is_ascii_alphanumeric())
}

/// One call, until its status is known.
struct Call {
    method: String,
    started: Instant,
    finished: bool,
}

impl Call {
    fn start(method: String) -> Call {
        super::rpc_started(&method);
        Call {
            method,
            started: Instant::now(),
            finished: false,
        }
    }

    fn finish(mut self, code: tonic::Code) {
        self.record(code);
    }

    fn record(&mut self, code: tonic::Code) {
        if !self.finished {
            self.finished = true;
            super::rpc_finished(&self.method, code, self.started.elapsed());
        }
    }

    /// The status now when the headers carry it, else at the body's end.
    fn follow(self, response: Response<Body>) -> Response<Body> {
        if let Some(code) = status_in(response.headers()) {
            self.finish(code);
            return response;
        }
        // A gRPC response ends with trailers: without them its status is
        // unknown to the client too.
        if response.body().is_end_stream() {
            self.finish(tonic::Code::Unknown);
            return response;
        }
        response.map(|body| Body::new(FollowedBody { body, call: self }))
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.record(tonic::Code::Cancelled);
    }
}

fn status_in(headers: &HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?;
    Some(tonic::Code::from_bytes(value.as_bytes()))
}

/// A response body that records its call's status from its trailers.
struct FollowedBody {
    body: Body,
    call: Call,
}

impl HttpBody for FollowedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(code) = f.trailers_ref().and_then(status_in) {
                    this.call.record(code);
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => this.call.record(tonic::Code::Unknown),
            Poll::Pending => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_named_by_the_cri_services_only() {
        assert_eq!(method_of("/runtime.v1.RuntimeService/Version"), "Version");
        assert_eq!(method_of("/runtime.v1.ImageService/PullImage"), "PullImage");
        assert_eq!(method_of("/other.Service/Version"), "unknown");
        assert_eq!(method_of("/runtime.v1.RuntimeService/a{b}"), "unknown");
        assert_eq!(method_of("/"), "unknown");
    }
}
