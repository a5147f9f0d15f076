//! The CRI driver: one timed call with its deadline, and the runtime and
//! image service clients of a target.

use std::future::Future;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use crate::args::Target;
use crate::error::BenchError;

pub mod image;
pub mod runtime;

/// Kubelet's deadline for RunPodSandbox.
pub const RUN_LIMIT: Duration = Duration::from_secs(240);

/// Kubelet's deadline for every other call.
pub const CALL_LIMIT: Duration = Duration::from_secs(120);

/// Kubelet puts no deadline on PullImage; this only ends a stuck run.
pub const PULL_LIMIT: Duration = Duration::from_secs(600);

/// Opens a channel to `target`'s socket.
pub async fn connect(target: &Target) -> Result<Channel, BenchError> {
    peapod_cri_client::connect(&target.socket)
        .await
        .map_err(|source| BenchError::Connect {
            target: target.name.clone(),
            endpoint: target.endpoint.clone(),
            source,
        })
}

/// One call `name` to `target` within `limit`: its reply and how long it took.
pub async fn call<T, F>(
    target: &str,
    name: &'static str,
    limit: Duration,
    fut: F,
) -> Result<(T, Duration), BenchError>
where
    F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let start = Instant::now();
    match tokio::time::timeout(limit, fut).await {
        Err(_) => Err(BenchError::Timeout {
            target: target.to_string(),
            call: name,
            limit,
        }),
        Ok(Err(status)) => Err(BenchError::Rpc {
            target: target.to_string(),
            call: name,
            code: status.code(),
            message: status.message().to_string(),
        }),
        Ok(Ok(resp)) => {
            let took = start.elapsed();
            Ok((resp.into_inner(), took))
        }
    }
}
