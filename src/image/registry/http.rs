//! Reading registry responses: bodies up to a limit, and the registry's
//! own explanation of an error status.

use bytes::BytesMut;
use serde::Deserialize;

const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

/// An error and its causes on one line (reqwest's own message alone says
/// little more than "error sending request").
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Reads at most `limit` bytes of the body; the flag says whether there was
/// more.
pub(super) async fn read_body(
    resp: &mut reqwest::Response,
    limit: usize,
) -> Result<(BytesMut, bool), reqwest::Error> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > limit {
            let room = limit - buf.len();
            buf.extend_from_slice(&chunk[..room]);
            return Ok((buf, true));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf, false))
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
    // Token servers: Docker Hub's {"details": ...} and OAuth2's error fields.
    details: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    code: Option<String>,
    message: Option<String>,
}

/// The registry's explanation of an error status: the messages of the
/// distribution `errors` body, else a short piece of the text, else the
/// status.
pub(super) async fn registry_message(mut resp: reqwest::Response) -> String {
    let status = resp.status();
    let body = read_body(&mut resp, MAX_ERROR_BODY_BYTES)
        .await
        .map(|(b, _)| b)
        .unwrap_or_default();
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(&body) {
        let messages: Vec<String> = parsed
            .errors
            .iter()
            .filter_map(|e| {
                e.message
                    .clone()
                    .filter(|m| !m.is_empty())
                    .or_else(|| e.code.clone())
            })
            .collect();
        if !messages.is_empty() {
            return messages.join("; ");
        }
        if let Some(m) = parsed
            .details
            .or(parsed.error_description)
            .or(parsed.error)
            .filter(|m| !m.is_empty())
        {
            return m;
        }
    }
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    if !text.is_empty() && !text.starts_with('<') {
        let short: String = text.chars().take(200).collect();
        return short.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    status.to_string()
}
