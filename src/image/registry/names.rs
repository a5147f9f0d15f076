//! What repository names, tags and digests may be: checked before they
//! go into a URL path.

/// `[a-z0-9]+([._-][a-z0-9]+)*` components joined by '/': keeps the name
/// from escaping its URL path.
pub(super) fn validate_repository(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!(
            "repository name {name:?} must be 1 to 255 characters"
        ));
    }
    for component in name.split('/') {
        let ok = !component.is_empty()
            && component
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && component
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && component
                .bytes()
                .last()
                .is_some_and(|b| b.is_ascii_alphanumeric());
        if !ok {
            return Err(format!(
                "repository name {name:?}: component {component:?} is not [a-z0-9]+([._-][a-z0-9]+)*"
            ));
        }
    }
    Ok(())
}

pub(super) enum DigestCheck {
    Sha256(String),
    Unsupported(String),
    Invalid(String),
}

/// Accepts "sha256:<64 lowercase hex>"; recognises other well-formed
/// digests only to name them as unsupported.
pub(super) fn check_digest(digest: &str) -> DigestCheck {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return DigestCheck::Invalid(format!("{digest:?} is not algorithm:hex"));
    };
    if algorithm == "sha256" {
        if encoded.len() == 64
            && encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return DigestCheck::Sha256(encoded.to_string());
        }
        return DigestCheck::Invalid(format!(
            "{digest:?}: a sha256 digest is 64 lowercase hex digits"
        ));
    }
    let algorithm_ok = !algorithm.is_empty()
        && algorithm
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
    let encoded_ok = !encoded.is_empty()
        && encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
    if algorithm_ok && encoded_ok {
        DigestCheck::Unsupported(format!(
            "digest {digest}: only sha256 digests are supported"
        ))
    } else {
        DigestCheck::Invalid(format!("{digest:?} is not a valid digest"))
    }
}

pub(super) fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b))
}

#[cfg(test)]
mod tests {
    use crate::image::registry::test_support::*;
    use crate::image::registry::{Credentials, RegistryError};

    #[tokio::test]
    async fn invalid_names_fail_on_use() {
        let client = client();
        for (registry, repo) in [
            ("127.0.0.1:5000", "Busybox"),
            ("127.0.0.1:5000", "a/../b"),
            ("127.0.0.1:5000", "a//b"),
            ("127.0.0.1:5000", "a?b"),
            ("host/x", "busybox"),
            ("", "busybox"),
        ] {
            let r = client.repository(registry, repo, Credentials::Anonymous);
            let err = r.manifest("latest").await.unwrap_err();
            assert!(
                matches!(err, RegistryError::InvalidReference { .. }),
                "{registry} {repo}: {err:?}"
            );
        }
    }
}
