//! A tiny HTTP/1.1 server and the helpers the registry client's tests share.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

#[derive(Debug, Clone)]
pub(super) struct Req {
    pub(super) method: String,
    pub(super) target: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Req {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub(super) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
    pub(super) fn query(&self, key: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        form_get(q, key)
    }
    pub(super) fn form(&self, key: &str) -> Option<String> {
        form_get(std::str::from_utf8(&self.body).ok()?, key)
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let v = u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap();
                out.push(v);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn form_get(q: &str, key: &str) -> Option<String> {
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

pub(super) enum Reply {
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Written as is, then the connection is closed.
    Raw(Vec<u8>),
    /// Written as is, then nothing more for `hold` before closing.
    Stall { raw: Vec<u8>, hold: Duration },
}

pub(super) fn reply(status: u16, body: impl Into<Vec<u8>>) -> Reply {
    Reply::Full {
        status,
        headers: Vec::new(),
        body: body.into(),
    }
}

impl Reply {
    pub(super) fn header(mut self, k: &str, v: &str) -> Reply {
        if let Reply::Full { headers, .. } = &mut self {
            headers.push((k.to_string(), v.to_string()));
        }
        self
    }
}

type Handler = dyn Fn(&Req) -> Reply + Send + Sync;

pub(super) struct Server {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Req>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub(super) async fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let task_log = log.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let log = task_log.clone();
                tokio::spawn(async move {
                    let _ = serve_conn(conn, handler, log).await;
                });
            }
        });
        Server { addr, log, task }
    }

    pub(super) fn host(&self) -> String {
        self.addr.to_string()
    }

    pub(super) fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }
}

async fn serve_conn(
    mut conn: tokio::net::TcpStream,
    handler: Arc<Handler>,
    log: Arc<Mutex<Vec<Req>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut tmp = [0u8; 4096];
        let n = conn.read(&mut tmp).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap().split(' ');
    let method = first.next().unwrap().to_string();
    let target = first.next().unwrap().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let mut tmp = [0u8; 4096];
        let n = conn.read(&mut tmp).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    let req = Req {
        method,
        target,
        headers,
        body,
    };
    log.lock().unwrap().push(req.clone());
    match handler(&req) {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut out = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            {
                out.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            conn.write_all(out.as_bytes()).await?;
            conn.write_all(&body).await?;
        }
        Reply::Raw(bytes) => conn.write_all(&bytes).await?,
        Reply::Stall { raw, hold } => {
            conn.write_all(&raw).await?;
            tokio::time::sleep(hold).await;
        }
    }
    conn.shutdown().await
}

// ---- helpers ----

pub(super) fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

pub(super) fn settings() -> RegistrySettings {
    RegistrySettings {
        connect_timeout: Duration::from_secs(5),
        ..RegistrySettings::default()
    }
}

pub(super) fn client() -> RegistryClient {
    RegistryClient::new(settings()).unwrap()
}

pub(super) const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;

pub(super) async fn read_all(stream: &mut BlobStream) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    while let Some(c) = stream.chunk().await? {
        out.extend_from_slice(&c);
    }
    Ok(out)
}

/// Serves MANIFEST under any tag and `blob` under its digest.
pub(super) fn plain_registry(blob: Vec<u8>) -> impl Fn(&Req) -> Reply + Send + Sync + 'static {
    let digest = sha(&blob);
    move |req: &Req| {
        let p = req.path();
        if p.starts_with("/v2/busybox/manifests/") {
            reply(200, MANIFEST).header("Content-Type", MEDIA_TYPE_OCI_MANIFEST)
        } else if p == format!("/v2/busybox/blobs/{digest}") {
            reply(200, blob.clone())
        } else {
            reply(
                404,
                r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#,
            )
        }
    }
}

pub(super) fn basic(user: &str, pass: &str) -> Credentials {
    Credentials::Basic {
        username: user.into(),
        password: pass.into(),
    }
}
