//! Image references as kubelet and crictl write them, normalised the way the
//! Docker reference grammar does: `busybox` is
//! `docker.io/library/busybox:latest`, a first component with a `.` or a `:`
//! (or `localhost`) is a registry, a name may carry a tag, a digest or both.

use std::fmt;

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";
const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: String,
}

/// A normalised reference. `tag` and `digest` are never both absent: a bare
/// name gets the `latest` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host with optional port, e.g. `docker.io`, `127.0.0.1:5000`.
    pub domain: String,
    /// Repository path inside the registry, e.g. `library/busybox`.
    pub path: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let fail = |reason: &str| ReferenceError {
            reference: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(fail("it is empty"));
        }
        if input.trim() != input || input.contains(char::is_whitespace) {
            return Err(fail("it contains whitespace"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((name, digest)) => {
                validate_digest(digest).map_err(|r| fail(&r))?;
                (name, Some(digest.to_string()))
            }
            None => (input, None),
        };
        // A tag follows the last ':' unless that ':' is part of the
        // registry's port (then a '/' comes after it).
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => {
                let tag = &rest[i + 1..];
                validate_tag(tag).map_err(|r| fail(&r))?;
                (&rest[..i], Some(tag.to_string()))
            }
            _ => (rest, None),
        };
        if name.is_empty() {
            return Err(fail("the repository name is empty"));
        }
        if digest.is_none() && tag.is_none() && is_hex64(name) {
            return Err(fail(
                "a 64-character hexadecimal string is an image id, not a name",
            ));
        }
        let (domain, path) = split_domain(name);
        validate_domain(&domain).map_err(|r| fail(&r))?;
        validate_path(&path).map_err(|r| fail(&r))?;
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(fail(&format!(
                "the repository name is longer than {MAX_NAME_LEN} characters"
            )));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            _ => tag,
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `domain/path`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// `domain/path:tag`, the form that goes into `repo_tags`; none when the
    /// reference pins a digest (the digest decides what is pulled).
    pub fn repo_tag(&self) -> Option<String> {
        match (&self.tag, &self.digest) {
            (Some(tag), None) => Some(format!("{}:{tag}", self.repository())),
            _ => None,
        }
    }

    /// What to ask the registry's manifest endpoint for.
    pub fn manifest_reference(&self) -> &str {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d,
            (None, Some(t)) => t,
            (None, None) => DEFAULT_TAG,
        }
    }

    /// `domain/path@digest`, the form that goes into `repo_digests`.
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.repository())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn split_domain(name: &str) -> (String, String) {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        DOCKER_HUB.to_string()
    } else {
        domain
    };
    let path = if domain == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    (domain, path)
}

pub fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Accepts `sha256:<64 lowercase hex>`; other algorithms are refused, as
/// nothing here can verify them.
pub fn validate_digest(digest: &str) -> Result<(), String> {
    match digest.split_once(':') {
        Some(("sha256", hex)) if is_hex64(hex) => Ok(()),
        Some(("sha256", _)) => Err(format!(
            "digest {digest:?} is not sha256 followed by 64 lowercase hex characters"
        )),
        Some((alg, _)) if !alg.is_empty() => {
            Err(format!("digest algorithm {alg:?} is not supported"))
        }
        _ => Err(format!("digest {digest:?} is not of the form sha256:<hex>")),
    }
}

fn validate_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    let ok_first = matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_');
    if !ok_first
        || tag.len() > MAX_TAG_LEN
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!(
            "tag {tag:?} must be 1 to {MAX_TAG_LEN} of [A-Za-z0-9_.-], not starting with '.' or '-'"
        ));
    }
    Ok(())
}

fn validate_domain(domain: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        // [IPv6]:port
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("registry {domain:?} has an unclosed '['"))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("registry {domain:?} is not a valid IPv6 address"));
        }
        match after {
            "" => return Ok(()),
            p => (
                "",
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("registry {domain:?}: junk after ']'"))?,
                ),
            ),
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("registry {domain:?} has an invalid port {port:?}"));
        }
    }
    if domain.starts_with('[') {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !host.split('.').all(label_ok) {
        return Err(format!("registry {domain:?} is not a valid host name"));
    }
    Ok(())
}

/// Path components: lowercase alphanumerics joined by `.`, `_`, `__` or runs
/// of `-`.
fn validate_path(path: &str) -> Result<(), String> {
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("repository name must be lowercase".to_string());
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err(format!("repository {path:?} has an empty path component"));
        }
        let bytes = component.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
            return Err(format!(
                "path component {component:?} must start and end with a lowercase letter or digit"
            ));
        }
        let mut i = 0;
        while i < bytes.len() {
            if alnum(bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && !alnum(bytes[i]) {
                i += 1;
            }
            let sep = &component[start..i];
            let valid = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
            if !valid {
                return Err(format!(
                    "path component {component:?} has an invalid separator {sep:?}"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("user/app:v1"), "docker.io/user/app:v1");
        assert_eq!(
            norm("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            norm("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            norm("registry.k8s.io/pause:3.9"),
            "registry.k8s.io/pause:3.9"
        );
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("localhost:5000/a/b/c:t"), "localhost:5000/a/b/c:t");
        assert_eq!(
            norm("127.0.0.1:5000/busybox"),
            "127.0.0.1:5000/busybox:latest"
        );
        assert_eq!(norm("[::1]:5000/busybox:x"), "[::1]:5000/busybox:x");
        assert_eq!(
            norm("a__b/c-d/e.f/g--h_i"),
            "docker.io/a__b/c-d/e.f/g--h_i:latest"
        );
    }

    #[test]
    fn digests_and_tags() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(r.repo_tag(), None);
        assert_eq!(r.with_digest(&d), format!("docker.io/library/busybox@{d}"));

        let r = Reference::parse(&format!("127.0.0.1:5000/busybox:1.2@{d}")).unwrap();
        assert_eq!(r.domain, "127.0.0.1:5000");
        assert_eq!(r.path, "busybox");
        assert_eq!(r.tag.as_deref(), Some("1.2"));
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(r.repo_tag(), None);

        let r = Reference::parse("127.0.0.1:5000/busybox").unwrap();
        assert_eq!(r.manifest_reference(), "latest");
        assert_eq!(
            r.repo_tag().as_deref(),
            Some("127.0.0.1:5000/busybox:latest")
        );
    }

    #[test]
    fn refuses_bad_references() {
        let d = "ab".repeat(32);
        for bad in [
            "",
            " busybox",
            "Busybox",
            "docker.io/Library/busybox",
            "busybox:",
            "busybox:-x",
            "busybox:.x",
            &format!("busybox:{}", "a".repeat(129)),
            "busybox@sha256:abc",
            &format!("busybox@md5:{d}"),
            &format!("busybox@sha256:{}", d.to_uppercase()),
            "bus..ybox",
            "busybox/",
            "/busybox",
            "a//b",
            "-a/b",
            "a/b-",
            "a/b___c",
            "host:port/x",
            "host:99999999/x",
            "ho_st.com/x",
            "[::1/x",
            "[zz::1]:5000/x",
            &d,
            &format!("{}/x", "a".repeat(260)),
            "a b",
        ] {
            let e = Reference::parse(bad).expect_err(bad);
            assert_eq!(e.reference, bad);
            assert!(!e.reason.is_empty());
        }
        let e = Reference::parse("Busybox").unwrap_err();
        assert!(e.to_string().contains("lowercase"), "{e}");
    }

    #[test]
    fn long_tag_boundary() {
        assert!(Reference::parse(&format!("busybox:{}", "a".repeat(128))).is_ok());
    }
}
