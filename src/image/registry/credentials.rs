//! Credentials from the CRI AuthConfig of a PullImage request.

use std::fmt;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::{hex, RegistryError};

/// Credentials from the CRI AuthConfig of a PullImage request.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token, exchanged at the token server.
    IdentityToken(String),
    /// A bearer token sent to the registry as is.
    RegistryToken(String),
}

impl fmt::Debug for Credentials {
    // Never print secrets into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Credentials::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

impl Credentials {
    /// From CRI AuthConfig fields. Precedence: registry_token, identity_token,
    /// username/password, then `auth` = base64("user:pass").
    pub fn from_auth_config(
        username: &str,
        password: &str,
        auth: &str,
        identity_token: &str,
        registry_token: &str,
    ) -> Result<Self, RegistryError> {
        if !registry_token.is_empty() {
            if !is_header_safe(registry_token) {
                return Err(RegistryError::InvalidCredentials {
                    field: "registry_token",
                    reason: "contains characters not allowed in an HTTP header".into(),
                });
            }
            return Ok(Credentials::RegistryToken(registry_token.to_string()));
        }
        if !identity_token.is_empty() {
            return Ok(Credentials::IdentityToken(identity_token.to_string()));
        }
        if !username.is_empty() {
            return Ok(Credentials::Basic {
                username: username.to_string(),
                password: password.to_string(),
            });
        }
        if !auth.trim().is_empty() {
            return decode_auth(auth).map_err(|reason| RegistryError::InvalidCredentials {
                field: "auth",
                reason,
            });
        }
        if !password.is_empty() {
            return Err(RegistryError::InvalidCredentials {
                field: "username",
                reason: "password given without a username".into(),
            });
        }
        Ok(Credentials::Anonymous)
    }

    /// Part of the token cache key, so one pull's token never serves a pull
    /// made with other (or no) credentials.
    pub(super) fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        match self {
            Credentials::Anonymous => return "anonymous".into(),
            Credentials::Basic { username, password } => {
                h.update(b"basic\0");
                h.update(username.as_bytes());
                h.update(b"\0");
                h.update(password.as_bytes());
            }
            Credentials::IdentityToken(t) => {
                h.update(b"identity\0");
                h.update(t.as_bytes());
            }
            Credentials::RegistryToken(t) => {
                h.update(b"registry\0");
                h.update(t.as_bytes());
            }
        }
        hex(&h.finalize())
    }
}

/// `auth` as Docker and containers-auth.json(5) write it: base64 of
/// "username:password".
pub(super) fn decode_auth(auth: &str) -> Result<Credentials, String> {
    // Docker writes padded standard base64; tolerate missing padding.
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = engine
        .decode(auth.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| "decoded value is not UTF-8".to_string())?;
    let Some((user, pass)) = decoded.split_once(':') else {
        return Err("decoded value is not \"username:password\"".into());
    };
    if user.is_empty() {
        return Err("decoded username is empty".into());
    }
    Ok(Credentials::Basic {
        username: user.to_string(),
        password: pass.to_string(),
    })
}

fn is_header_safe(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::registry::test_support::*;

    #[test]
    fn credentials_from_auth_config() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let c = |u: &str, p: &str, a: &str, i: &str, r: &str| {
            Credentials::from_auth_config(u, p, a, i, r)
        };
        assert_eq!(c("", "", "", "", "").unwrap(), Credentials::Anonymous);
        assert_eq!(c("u", "p", "", "", "").unwrap(), basic("u", "p"));
        assert_eq!(c("u", "", "", "", "").unwrap(), basic("u", ""));
        assert_eq!(
            c("", "", &b64("me:pa:ss"), "", "").unwrap(),
            basic("me", "pa:ss")
        );
        // Unpadded and with a trailing newline.
        assert_eq!(
            c(
                "",
                "",
                &format!("{}\n", b64("ab:c").trim_end_matches('=')),
                "",
                ""
            )
            .unwrap(),
            basic("ab", "c")
        );
        // Username wins over auth.
        assert_eq!(c("u", "p", "!!!", "", "").unwrap(), basic("u", "p"));
        assert_eq!(
            c("u", "p", "", "idt", "").unwrap(),
            Credentials::IdentityToken("idt".into())
        );
        assert_eq!(
            c("u", "p", "", "idt", "rt").unwrap(),
            Credentials::RegistryToken("rt".into())
        );
        for (auth, want) in [
            ("!!!not base64", "not base64"),
            (&b64("nocolon") as &str, "username:password"),
            (&b64(":pass"), "username is empty"),
        ] {
            let err = c("", "", auth, "", "").unwrap_err();
            assert!(
                matches!(
                    &err,
                    RegistryError::InvalidCredentials { field: "auth", .. }
                ),
                "{err:?}"
            );
            assert!(
                err.to_string().contains("`auth`") && err.to_string().contains(want),
                "{err}"
            );
        }
        assert!(matches!(
            c("", "p", "", "", ""),
            Err(RegistryError::InvalidCredentials {
                field: "username",
                ..
            })
        ));
        assert!(matches!(
            c("", "", "", "", "bad\ntoken"),
            Err(RegistryError::InvalidCredentials {
                field: "registry_token",
                ..
            })
        ));
        let dbg = format!("{:?}", basic("u", "secret"));
        assert!(!dbg.contains("secret"), "{dbg}");
    }
}
