//! `WWW-Authenticate` challenges: parsing the header and picking the one
//! to answer.

use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};

/// An authentication challenge from `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses a `WWW-Authenticate` value (RFC 7235: comma-separated challenges,
/// each a scheme and comma-separated `name=value` parameters whose quoted
/// values may hold commas and backslash escapes) into (lowercase scheme,
/// [(lowercase name, value)]).
fn parse_www_authenticate(value: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut header = Scanner {
        s: value.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        header.skip_separators();
        if header.at_end() {
            break;
        }
        let scheme = header.token();
        if scheme.is_empty() {
            // Not a token: skip the stray byte.
            header.i += 1;
            continue;
        }
        let params = header.params();
        out.push((scheme.to_ascii_lowercase(), params));
    }
    out
}

/// A position in a header value being parsed.
struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b',' | b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    /// The `name=value` parameters of one challenge, up to the end or the
    /// token that starts the next challenge.
    fn params(&mut self) -> Vec<(String, String)> {
        let mut params = Vec::new();
        loop {
            let restart = self.i;
            self.skip_separators();
            let name = self.token();
            if name.is_empty() {
                if self.peek().is_some_and(|b| b != b',') {
                    // Garbage inside a challenge: skip it.
                    self.i += 1;
                    continue;
                }
                break;
            }
            self.skip_ws();
            if self.peek() != Some(b'=') {
                // A token without '=' starts the next challenge.
                self.i = restart;
                break;
            }
            self.i += 1;
            if self.peek() == Some(b'=') {
                // token68 padding ("abc=="): not a parameter.
                while self.peek() == Some(b'=') {
                    self.i += 1;
                }
                continue;
            }
            self.skip_ws();
            let value = self.value();
            params.push((
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(&value).into_owned(),
            ));
        }
        params
    }

    /// A quoted value without its quotes and escapes, or a bare one.
    fn value(&mut self) -> Vec<u8> {
        let s = self.s;
        let mut value = Vec::new();
        if self.peek() == Some(b'"') {
            self.i += 1;
            while self.i < s.len() && s[self.i] != b'"' {
                if s[self.i] == b'\\' && self.i + 1 < s.len() {
                    self.i += 1;
                }
                value.push(s[self.i]);
                self.i += 1;
            }
            // Closing quote (absent when the value is cut off).
            self.i = (self.i + 1).min(s.len());
        } else {
            // Lenient: unquoted values up to the next separator, so a bare
            // realm URL with ':' and '/' still parses.
            while self
                .peek()
                .is_some_and(|b| b != b',' && b != b' ' && b != b'\t')
            {
                value.push(s[self.i]);
                self.i += 1;
            }
        }
        value
    }
}

/// The challenge to answer: Bearer when offered (with a realm), else Basic.
pub(super) fn pick_challenge(headers: &HeaderMap) -> Option<Challenge> {
    let mut basic = false;
    for value in headers.get_all(WWW_AUTHENTICATE) {
        let Ok(value) = value.to_str() else { continue };
        for (scheme, params) in parse_www_authenticate(value) {
            let get = |key: &str| {
                params
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            };
            match scheme.as_str() {
                "bearer" => {
                    if let Some(realm) = get("realm").filter(|r| !r.is_empty()) {
                        return Some(Challenge::Bearer {
                            realm,
                            service: get("service"),
                            scope: get("scope"),
                        });
                    }
                }
                "basic" => basic = true,
                _ => {}
            }
        }
    }
    basic.then_some(Challenge::Basic)
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn challenge_of(values: &[&str]) -> Option<Challenge> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(WWW_AUTHENTICATE, HeaderValue::from_str(v).unwrap());
        }
        pick_challenge(&h)
    }

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Challenge {
        Challenge::Bearer {
            realm: realm.into(),
            service: service.map(String::from),
            scope: scope.map(String::from),
        }
    }

    #[test]
    fn www_authenticate_parsing() {
        assert_eq!(
            challenge_of(&[
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#
            ]),
            Some(bearer(
                "https://auth.docker.io/token",
                Some("registry.docker.io"),
                Some("repository:library/busybox:pull,push")
            ))
        );
        // Case, spacing, escapes, unquoted values, parameter order.
        assert_eq!(
            challenge_of(&[r#"bEaReR  scope = "a,\"b\"" , Service=svc,REALM=https://x/t?a=1"#]),
            Some(bearer("https://x/t?a=1", Some("svc"), Some(r#"a,"b""#)))
        );
        // Several challenges in one header: Bearer preferred over Basic.
        assert_eq!(
            challenge_of(&[r#"Basic realm="r", Bearer realm="https://t",scope="x,y", Negotiate"#]),
            Some(bearer("https://t", None, Some("x,y")))
        );
        // Several headers.
        assert_eq!(
            challenge_of(&[r#"Basic realm="registry""#, r#"Bearer realm="https://t""#]),
            Some(bearer("https://t", None, None))
        );
        assert_eq!(
            challenge_of(&[r#"Basic realm="registry""#]),
            Some(Challenge::Basic)
        );
        assert_eq!(challenge_of(&["Basic"]), Some(Challenge::Basic));
        // Bearer without a realm is unusable.
        assert_eq!(challenge_of(&[r#"Bearer service="x""#]), None);
        assert_eq!(challenge_of(&[r#"Bearer realm="""#]), None);
        assert_eq!(challenge_of(&["Negotiate abc=="]), None);
        assert_eq!(challenge_of(&[""]), None);
        // token68 before another challenge; an unterminated quote.
        assert_eq!(
            challenge_of(&[r#"Negotiate abc==, Bearer realm="https://t"#]),
            Some(bearer("https://t", None, None))
        );
        let parsed = parse_www_authenticate(r#"Bearer realm="r", error="insufficient_scope""#);
        assert_eq!(
            parsed,
            vec![(
                "bearer".to_string(),
                vec![
                    ("realm".to_string(), "r".to_string()),
                    ("error".to_string(), "insufficient_scope".to_string())
                ]
            )]
        );
        // Garbage does not panic.
        for junk in [
            "=",
            ",,,",
            "\"",
            "Bearer ,=,\"",
            "Bearer realm=",
            "Bearer realm=\"\\",
        ] {
            let _ = parse_www_authenticate(junk);
        }
    }
}
