//! A gRPC channel to a CRI endpoint over a unix socket, for peapod's
//! benchmark and integration tests. The CRI client stubs that speak over it
//! are generated in `peapod::api`.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// Opens a gRPC channel to a CRI endpoint listening on `path`.
pub async fn connect(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path: PathBuf = path.to_path_buf();
    // The URI is required by tonic but unused: the connector dials the socket.
    Endpoint::try_from("http://[::1]:50051")?
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
