//! gRPC adapters: validate the request, call the domain, map the result.
//! Every RPC goes through [`rpc`], which logs it with its duration and maps
//! domain errors to gRPC codes in one place.

mod convert;
mod events;
mod image;
mod lists;
mod pod_metrics;
mod runtime;
mod stats;
mod status;
mod streaming;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tonic::{Response, Status};
use tracing::{debug, error, warn};

use crate::config::Config;
use crate::container::Containers;
use crate::errors::Error;
use crate::image::Images;
use crate::pods::Pods;
use crate::sandbox::Sandboxes;
use crate::streaming::StreamingServer;

// The services name the conversions by family.

pub use events::ContainerEvents;
pub use image::ImageApi;
pub use runtime::{RuntimeApi, CRI_VERSION};

/// What the gRPC services share.
pub struct Daemon {
    pub config: Arc<Config>,
    pub sandboxes: Arc<Sandboxes>,
    pub images: Arc<Images>,
    pub containers: Arc<Containers>,
    pub pods: Pods,
    pub streaming: Arc<StreamingServer>,
    pub events: Arc<ContainerEvents>,
}

/// A sandbox or container error as a gRPC status: the one mapping.
pub fn status_of(e: Error) -> Status {
    match e {
        Error::NotFound(m) => Status::not_found(m),
        e @ Error::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
        Error::AlreadyExists(m) => Status::already_exists(m),
        Error::FailedPrecondition(m) => Status::failed_precondition(m),
        Error::DeadlineExceeded(m) => Status::deadline_exceeded(m),
        Error::Internal(m) => Status::internal(m),
    }
}

/// Runs one RPC: logs it at debug with its duration, and failures at warn
/// (client errors) or error (ours), naming the object it concerns.
pub async fn rpc<T, F>(method: &'static str, object: &str, work: F) -> Result<Response<T>, Status>
where
    F: Future<Output = Result<T, Status>>,
{
    let start = Instant::now();
    let result = work.await;
    let elapsed = start.elapsed();
    match &result {
        Ok(_) => debug!(rpc = method, id = object, ?elapsed, "ok"),
        Err(s) => match s.code() {
            tonic::Code::Internal | tonic::Code::Unknown => {
                error!(rpc = method, id = object, ?elapsed, code = ?s.code(), "{}", s.message())
            }
            tonic::Code::NotFound => debug!(
                rpc = method,
                id = object,
                ?elapsed,
                "not found: {}",
                s.message()
            ),
            _ => warn!(rpc = method, id = object, ?elapsed, code = ?s.code(), "{}", s.message()),
        },
    }
    result.map(Response::new)
}

/// Items per message of the `Stream*` RPCs.
const STREAM_CHUNK: usize = 100;

/// A `Stream*` RPC's answer: the items of its `List*` counterpart, in
/// messages of at most [`STREAM_CHUNK`]; one empty message when there are none.
pub fn stream_in_chunks<T: Clone, R: Send + 'static>(
    items: Vec<T>,
    message: impl Fn(Vec<T>) -> R,
) -> tonic::codegen::BoxStream<R> {
    let mut messages: Vec<Result<R, Status>> = items
        .chunks(STREAM_CHUNK)
        .map(|c| Ok(message(c.to_vec())))
        .collect();
    if messages.is_empty() {
        messages.push(Ok(message(vec![])));
    }
    Box::pin(tokio_stream::iter(messages))
}
