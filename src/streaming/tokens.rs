//! The requests waiting for their streaming connection, each under a
//! single-use token: 16 bytes from the OS's random source, base64url
//! without padding (22 characters), so a URL cannot be guessed. A token is
//! taken out on first use, whatever the use then does, and expires after
//! the configured time. At most a configured number wait at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

/// Random bytes in a token.
const TOKEN_BYTES: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("too many streaming requests waiting for their connection (at most {0})")]
    Full(usize),
    #[error("no random bytes for a token: {0}")]
    Random(String),
}

struct Waiting<R> {
    request: R,
    expires: Instant,
}

/// Requests by token.
pub struct RequestCache<R> {
    ttl: Duration,
    max: usize,
    waiting: Mutex<HashMap<String, Waiting<R>>>,
}

impl<R> RequestCache<R> {
    pub fn new(ttl: Duration, max: usize) -> RequestCache<R> {
        RequestCache {
            ttl,
            max,
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `request` and returns its new token.
    pub fn insert(&self, request: R) -> Result<String, TokenError> {
        let token = new_token()?;
        let now = Instant::now();
        let mut waiting = self.lock();
        waiting.retain(|_, w| w.expires > now);
        if waiting.len() >= self.max {
            return Err(TokenError::Full(self.max));
        }
        let expires = now + self.ttl;
        waiting.insert(token.clone(), Waiting { request, expires });
        Ok(token)
    }

    /// Takes the request of `token` out; `None` when the token is unknown,
    /// used or expired.
    pub fn take(&self, token: &str) -> Option<R> {
        let waiting = self.lock().remove(token)?;
        (waiting.expires > Instant::now()).then_some(waiting.request)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting<R>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn new_token() -> Result<String, TokenError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_used_once() {
        let cache = RequestCache::new(Duration::from_secs(60), 10);
        let token = cache.insert("exec").unwrap();
        assert_eq!(token.len(), 22);
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(cache.take(&token), Some("exec"));
        assert_eq!(cache.take(&token), None);
        assert_eq!(cache.take("unknown"), None);
    }

    #[test]
    fn tokens_differ() {
        let cache = RequestCache::new(Duration::from_secs(60), 100);
        let a = cache.insert(1).unwrap();
        let b = cache.insert(2).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn an_expired_token_is_gone() {
        let cache = RequestCache::new(Duration::from_millis(1), 10);
        let token = cache.insert(()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(cache.take(&token), None);
    }

    #[test]
    fn at_most_max_wait_and_expired_ones_make_room() {
        let cache = RequestCache::new(Duration::from_millis(20), 2);
        cache.insert(1).unwrap();
        cache.insert(2).unwrap();
        assert_eq!(cache.insert(3), Err(TokenError::Full(2)));
        std::thread::sleep(Duration::from_millis(30));
        assert!(cache.insert(4).is_ok());
    }
}
