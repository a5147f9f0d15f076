//! A small HTTP/1.1 proxy in front of a test registry, on 127.0.0.1: it
//! counts requests and can corrupt, truncate, stall or slow down one blob,
//! or demand
//! bearer tokens the way Docker Hub does (a `WWW-Authenticate: Bearer`
//! challenge and a token endpoint of its own).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
pub enum Fault {
    None,
    /// Flips one byte of the blob's body.
    Corrupt(String),
    /// Sends half of the blob's body, then closes the connection.
    Truncate(String),
    /// Sends half of the blob's body, then waits until `release()`.
    Stall(String),
    /// Sends the blob's body in `pieces` pieces with `pause` before each
    /// but the first: a slow download that never stops for long.
    Throttle {
        digest: String,
        pieces: usize,
        pause: Duration,
    },
}

#[derive(Default)]
struct State {
    requests: Vec<String>,
    token_requests: Vec<String>,
    stalled: usize,
}

pub struct Proxy {
    pub addr: String,
    upstream: String,
    upstream_creds: Option<String>,
    fault: Mutex<Fault>,
    /// `USER:PASS` the token endpoint wants; `Some` turns bearer auth on.
    bearer: Option<String>,
    state: Mutex<State>,
    released: AtomicBool,
}

pub const TOKEN: &str = "peapod-test-token";

impl Proxy {
    pub fn start(upstream: &str, upstream_creds: Option<&str>, bearer: Option<&str>) -> Arc<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = Arc::new(Proxy {
            addr: listener.local_addr().unwrap().to_string(),
            upstream: upstream.to_string(),
            upstream_creds: upstream_creds.map(str::to_string),
            fault: Mutex::new(Fault::None),
            bearer: bearer.map(str::to_string),
            state: Mutex::new(State::default()),
            released: AtomicBool::new(false),
        });
        let p = proxy.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let p = p.clone();
                std::thread::spawn(move || {
                    let _ = p.serve(conn);
                });
            }
        });
        proxy
    }

    pub fn set_fault(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }

    /// `METHOD PATH` of every registry request so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Query strings (or form bodies) the token endpoint received.
    pub fn token_requests(&self) -> Vec<String> {
        self.state.lock().unwrap().token_requests.clone()
    }

    /// GETs of a blob's body.
    pub fn blob_gets(&self, digest: &str) -> usize {
        let suffix = format!("/blobs/{digest}");
        self.requests()
            .iter()
            .filter(|r| r.starts_with("GET ") && r.ends_with(&suffix))
            .count()
    }

    /// Requests now held by `Fault::Stall`.
    pub fn stalled(&self) -> usize {
        self.state.lock().unwrap().stalled
    }

    pub fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
    }

    fn serve(&self, mut conn: TcpStream) -> std::io::Result<()> {
        conn.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut reader = BufReader::new(conn.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end().to_string();
            if h.is_empty() {
                break;
            }
            headers.push(h);
        }
        let header = |name: &str| {
            headers.iter().find_map(|h| {
                let (k, v) = h.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let mut body = vec![
            0u8;
            header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        ];
        reader.read_exact(&mut body)?;

        if let Some(query) = target.strip_prefix("/token") {
            return self.token(&mut conn, query, header("authorization"), &body);
        }
        self.state.lock().unwrap().requests.push(format!(
            "{method} {}",
            target.split('?').next().unwrap_or("")
        ));
        if let Some(creds) = &self.bearer {
            let _ = creds;
            if header("authorization").as_deref() != Some(&format!("Bearer {TOKEN}")) {
                let repo = target
                    .strip_prefix("/v2/")
                    .and_then(|t| t.split("/manifests/").next())
                    .and_then(|t| t.split("/blobs/").next())
                    .unwrap_or("");
                let challenge = format!(
                    "Bearer realm=\"http://{}/token\",service=\"peapod-test\",scope=\"repository:{repo}:pull\"",
                    self.addr
                );
                let msg =
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
                return write!(
                    conn,
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {challenge}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                    msg.len()
                );
            }
        }

        // Forward to the registry.
        let mut up = TcpStream::connect(&self.upstream)?;
        let mut req = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.upstream
        );
        for h in &headers {
            let name = h.split(':').next().unwrap_or("").to_ascii_lowercase();
            if !matches!(name.as_str(), "host" | "connection" | "authorization") {
                req.push_str(h);
                req.push_str("\r\n");
            }
        }
        if let Some(c) = &self.upstream_creds {
            use base64::Engine;
            let b = base64::engine::general_purpose::STANDARD.encode(c);
            req.push_str(&format!("Authorization: Basic {b}\r\n"));
        }
        req.push_str("\r\n");
        up.write_all(req.as_bytes())?;
        let mut resp = Vec::new();
        up.read_to_end(&mut resp)?;
        let split = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4)
            .unwrap_or(resp.len());
        let (head, payload) = resp.split_at(split);
        let mut payload = payload.to_vec();
        let head = String::from_utf8_lossy(head).into_owned();

        let fault = self.fault.lock().unwrap().clone();
        let is_blob = |d: &str| method == "GET" && target.ends_with(&format!("/blobs/{d}"));
        match fault {
            Fault::Corrupt(d) if is_blob(&d) && !payload.is_empty() => {
                let i = payload.len() / 2;
                payload[i] ^= 0xff;
                conn.write_all(head.as_bytes())?;
                conn.write_all(&payload)
            }
            Fault::Truncate(d) if is_blob(&d) => {
                conn.write_all(head.as_bytes())?;
                conn.write_all(&payload[..payload.len() / 2])?;
                conn.flush()
            }
            Fault::Throttle {
                digest,
                pieces,
                pause,
            } if is_blob(&digest) => {
                conn.write_all(head.as_bytes())?;
                let size = payload.len().div_ceil(pieces.max(1)).max(1);
                for (i, piece) in payload.chunks(size).enumerate() {
                    if i > 0 {
                        std::thread::sleep(pause);
                    }
                    conn.write_all(piece)?;
                    conn.flush()?;
                }
                Ok(())
            }
            Fault::Stall(d) if is_blob(&d) => {
                conn.write_all(head.as_bytes())?;
                conn.write_all(&payload[..payload.len() / 2])?;
                conn.flush()?;
                self.state.lock().unwrap().stalled += 1;
                while !self.released.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                self.state.lock().unwrap().stalled -= 1;
                Ok(())
            }
            _ => {
                conn.write_all(head.as_bytes())?;
                conn.write_all(&payload)
            }
        }
    }

    fn token(
        &self,
        conn: &mut TcpStream,
        query: &str,
        authorization: Option<String>,
        body: &[u8],
    ) -> std::io::Result<()> {
        let form = String::from_utf8_lossy(body).into_owned();
        self.state.lock().unwrap().token_requests.push(format!(
            "{}{}",
            query.trim_start_matches('?'),
            form
        ));
        use base64::Engine;
        let want = self.bearer.as_ref().map(|c| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(c)
            )
        });
        let refresh_ok = form.contains("grant_type=refresh_token")
            && form.contains("refresh_token=peapod-refresh");
        if want.is_some() && (authorization == want || refresh_ok) {
            let body = format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#);
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        } else {
            let msg =
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials for the token"}]}"#;
            write!(
                conn,
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                msg.len()
            )
        }
    }
}
