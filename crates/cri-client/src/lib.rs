//! A gRPC channel to a CRI endpoint over a unix socket, for peapod's
//! benchmark and integration tests. The CRI client stubs that speak over it
//! are generated in `peapod::api`.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// Opens a gRPC channel to a CRI endpoint listening on `path`.
pub async fn connect(path: &Path) -> Result<Channel, tonic::transport::Error> {
    dial(path, endpoint()?).await
}

/// [`connect`] with HTTP/2 flow-control windows of `bytes` (per stream and
/// for the connection): a client that stops reading a stream holds at most
/// this much of it, as a slow kubelet would.
pub async fn connect_with_window(
    path: &Path,
    bytes: u32,
) -> Result<Channel, tonic::transport::Error> {
    let endpoint = endpoint()?
        .initial_stream_window_size(bytes)
        .initial_connection_window_size(bytes);
    dial(path, endpoint).await
}

fn endpoint() -> Result<Endpoint, tonic::transport::Error> {
    // The URI is required by tonic but unused: the connector dials the socket.
    Endpoint::try_from("http://[::1]:50051")
}

async fn dial(path: &Path, endpoint: Endpoint) -> Result<Channel, tonic::transport::Error> {
    let path: PathBuf = path.to_path_buf();
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
}

/// Strips an optional `unix://` scheme from an endpoint as crictl writes it.
pub fn socket_path(endpoint: &str) -> PathBuf {
    PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_takes_crictl_endpoints_and_plain_paths() {
        assert_eq!(socket_path("unix:///run/p.sock"), Path::new("/run/p.sock"));
        assert_eq!(socket_path("/run/p.sock"), Path::new("/run/p.sock"));
    }
}
