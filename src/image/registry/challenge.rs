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
    let s = value.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && (s[*i] == b' ' || s[*i] == b'\t') {
            *i += 1;
        }
    };
    let read_token = |i: &mut usize| {
        let start = *i;
        while *i < s.len() && is_tchar(s[*i]) {
            *i += 1;
        }
        String::from_utf8_lossy(&s[start..*i]).into_owned()
    };
    loop {
        while i < s.len() && (s[i] == b',' || s[i] == b' ' || s[i] == b'\t') {
            i += 1;
        }
        if i >= s.len() {
            break;
        }
        let scheme = read_token(&mut i);
        if scheme.is_empty() {
            // Not a token: skip the stray byte.
            i += 1;
            continue;
        }
        let mut params = Vec::new();
        loop {
            let restart = i;
            while i < s.len() && (s[i] == b',' || s[i] == b' ' || s[i] == b'\t') {
                i += 1;
            }
            let name = read_token(&mut i);
            if name.is_empty() {
                if i < s.len() && s[i] != b',' {
                    // Garbage inside a challenge: skip it.
                    i += 1;
                    continue;
                }
                break;
            }
            skip_ws(&mut i);
            if i >= s.len() || s[i] != b'=' {
                // A token without '=' starts the next challenge.
                i = restart;
                break;
            }
            i += 1;
            if i < s.len() && s[i] == b'=' {
                // token68 padding ("abc=="): not a parameter.
                while i < s.len() && s[i] == b'=' {
                    i += 1;
                }
                continue;
            }
            skip_ws(&mut i);
            let mut value = Vec::new();
            if i < s.len() && s[i] == b'"' {
                i += 1;
                while i < s.len() && s[i] != b'"' {
                    if s[i] == b'\\' && i + 1 < s.len() {
                        i += 1;
                    }
                    value.push(s[i]);
                    i += 1;
                }
                // Closing quote (absent when the value is cut off).
                i = (i + 1).min(s.len());
            } else {
                // Lenient: unquoted values up to the next separator, so a
                // bare realm URL with ':' and '/' still parses.
                while i < s.len() && s[i] != b',' && s[i] != b' ' && s[i] != b'\t' {
                    value.push(s[i]);
                    i += 1;
                }
            }
            params.push((
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(&value).into_owned(),
            ));
        }
        out.push((scheme.to_ascii_lowercase(), params));
    }
    out
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
