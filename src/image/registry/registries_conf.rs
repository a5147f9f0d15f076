//! containers-registries.conf(5), version 2, the file CRI-O, podman and
//! skopeo read: `/etc/containers/registries.conf`, then the `*.conf` files
//! of `/etc/containers/registries.conf.d` in name order. This module reads
//! them and maps them onto peapod's own registry settings: for one image
//! reference, which endpoints a pull tries and whether it may pull at all.
//!
//! Read here: `[[registry]]` with `prefix`, `location`, `insecure`,
//! `blocked`, `mirror-by-digest-only` and `[[registry.mirror]]` (`location`,
//! `insecure`, `pull-from-mirror`). `unqualified-search-registries` is read
//! and not used: kubelet pulls unqualified names from `docker.io` (its
//! image references are normalised that way before they reach the
//! runtime), so peapod never searches other registries for a short name.
//! Keys other programs read (`aliases`, `short-name-mode`,
//! `credential-helpers`, ...) are ignored; an unknown key inside a
//! `[[registry]]` table is an error, so that a misspelt `blocked` never
//! goes unnoticed.
//!
//! A `location` or mirror location names a registry and a namespace
//! (`host[:port][/path]`): peapod rewrites the repository, never the tag or
//! digest of a pull.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::endpoints::Endpoint;
use super::names::{check_digest, is_valid_tag, validate_repository, DigestCheck};
use super::repository::Source;
use super::RegistryError;

/// What a pull asks for: `domain/path` with its tag and digest.
#[derive(Debug, Clone, Copy)]
pub struct ImageName<'a> {
    pub domain: &'a str,
    pub path: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

/// The rules of every registries.conf file, merged.
#[derive(Debug, Clone, Default)]
pub struct RegistriesConf {
    rules: Vec<Rule>,
    /// As the files say; unused (see the module comment).
    pub unqualified_search_registries: Vec<String>,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    prefix: Prefix,
    /// `prefix` as written, for messages.
    prefix_text: String,
    /// `host[:port][/path]`; empty: the prefix's own (no rewrite).
    location: String,
    insecure: bool,
    blocked: bool,
    mirrors: Vec<Mirror>,
    /// The file that defined the rule.
    file: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
enum Prefix {
    /// `*.example.com`: held as `.example.com`, matched against the host.
    Subdomains(String),
    /// `host[:port][/path]`, optionally for one tag or digest only.
    Name {
        repository: String,
        selector: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct Mirror {
    location: String,
    insecure: bool,
    /// For pulls by digest, by tag, or both.
    by_digest: bool,
    by_tag: bool,
}

// ---- the file as TOML ----

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct File {
    unqualified_search_registries: Option<Vec<String>>,
    #[serde(default)]
    registry: Vec<RegistryTable>,
    /// Version 1's `[registries.search]` / `.insecure` / `.block`.
    registries: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RegistryTable {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror_by_digest_only: bool,
    #[serde(default)]
    mirror: Vec<MirrorTable>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct MirrorTable {
    location: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    pull_from_mirror: String,
}

impl RegistriesConf {
    /// Reads `file` and then the `*.conf` files of `dir` in name order.
    /// Missing files and a missing directory are fine.
    pub fn load(file: Option<&Path>, dir: Option<&Path>) -> Result<RegistriesConf, RegistryError> {
        let mut conf = RegistriesConf::default();
        if let Some(file) = file {
            if let Some(text) = read_if_present(file)? {
                conf.merge(&text, file)?;
            }
        }
        if let Some(dir) = dir {
            for path in drop_in_files(dir)? {
                if let Some(text) = read_if_present(&path)? {
                    conf.merge(&text, &path)?;
                }
            }
        }
        Ok(conf)
    }

    /// Adds one file: its `[[registry]]` tables replace earlier ones with
    /// the same prefix, its `unqualified-search-registries` replaces the
    /// earlier list (containers-registries.conf.d(5)).
    pub fn merge(&mut self, text: &str, path: &Path) -> Result<(), RegistryError> {
        let file: File = toml::from_str(text)
            .map_err(|e| file_error(path, "", e.to_string().trim_end().replace('\n', " ")))?;
        if file.registries.is_some() {
            return Err(file_error(
                path,
                "registries",
                "this is the version 1 format, which peapod does not read: \
                 write [[registry]] tables (containers-registries.conf(5))"
                    .into(),
            ));
        }
        if let Some(list) = file.unqualified_search_registries {
            self.unqualified_search_registries = list;
        }
        let mut seen: Vec<String> = Vec::new();
        for (i, table) in file.registry.into_iter().enumerate() {
            let rule = Rule::from_table(table, i, path)?;
            if seen.contains(&rule.prefix_text) {
                return Err(file_error(
                    path,
                    &format!("registry[{i}].prefix"),
                    format!("prefix {:?} is defined twice", rule.prefix_text),
                ));
            }
            seen.push(rule.prefix_text.clone());
            self.rules.retain(|r| r.prefix_text != rule.prefix_text);
            self.rules.push(rule);
        }
        self.files.push(path.to_path_buf());
        Ok(())
    }

    /// How many `[[registry]]` rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The one rule that applies to `name`: the longest match, a name
    /// prefix over a wildcard of the same length, then the longer prefix.
    fn rule_for(&self, name: &ImageName) -> Option<(&Rule, usize)> {
        self.rules
            .iter()
            .filter_map(|rule| rule.prefix.matched(name).map(|len| (rule, len)))
            .max_by_key(|(rule, len)| {
                let exact = matches!(rule.prefix, Prefix::Name { .. });
                (*len, exact, rule.prefix_text.len())
            })
    }

    /// Where a pull of `name` goes, in order: mirrors, then the registry
    /// (or the rule's location). `peapod_mirrors` are `images.mirrors`
    /// for `name`'s registry, already parsed; `insecure` is
    /// `images.insecure_registries`.
    ///
    /// How peapod's settings and registries.conf combine (the one place
    /// this is decided):
    /// - `blocked` and `location` come from registries.conf alone; peapod
    ///   has neither.
    /// - Mirrors: where `images.mirrors` names the registry, its list is
    ///   used and the registries.conf rule's mirrors are not.
    /// - Plain HTTP: an endpoint is spoken to over plain HTTP when either
    ///   says so (`images.insecure_registries`, loopback, or `insecure =
    ///   true`); registries.conf cannot turn TLS back on for a host peapod
    ///   calls insecure.
    pub(super) fn route(
        &self,
        name: &ImageName,
        peapod_mirrors: Option<&[Endpoint]>,
        insecure: &[String],
    ) -> Result<Vec<Source>, RegistryError> {
        let Some((rule, matched)) = self.rule_for(name) else {
            let mut sources = peapod_sources(name, peapod_mirrors);
            sources.push(registry_source(name.domain, name.path, false, insecure)?);
            return Ok(sources);
        };
        if rule.blocked {
            return Err(RegistryError::Blocked {
                reference: name.to_string(),
                file: rule.file.clone(),
                prefix: rule.prefix_text.clone(),
            });
        }
        let mut sources = match peapod_mirrors {
            Some(_) => peapod_sources(name, peapod_mirrors),
            None => rule.mirror_sources(name, matched, insecure)?,
        };
        let (host, path) = rule.rewrite(name, matched, &rule.location)?;
        sources.push(registry_source(&host, &path, rule.insecure, insecure)?);
        Ok(sources)
    }
}

impl Rule {
    /// The rule's mirrors that serve this pull (by tag or by digest), in
    /// order.
    fn mirror_sources(
        &self,
        name: &ImageName,
        matched: usize,
        insecure: &[String],
    ) -> Result<Vec<Source>, RegistryError> {
        let by_digest = name.digest.is_some();
        self.mirrors
            .iter()
            .filter(|m| if by_digest { m.by_digest } else { m.by_tag })
            .map(|m| {
                let (host, path) = self.rewrite(name, matched, &m.location)?;
                let mut source = registry_source(&host, &path, m.insecure, insecure)?;
                source.endpoint.mirror_of = Some(name.domain.to_string());
                Ok(source)
            })
            .collect()
    }
}

/// The registry `host` (a location, or the reference's own registry) as a
/// source of `repository`.
fn registry_source(
    host: &str,
    repository: &str,
    plain_http: bool,
    insecure: &[String],
) -> Result<Source, RegistryError> {
    let endpoint = Endpoint::registry(host, insecure, plain_http)
        .map_err(|reason| invalid_name(host, repository, reason))?;
    Ok(Source::new(endpoint, repository))
}

fn peapod_sources(name: &ImageName, mirrors: Option<&[Endpoint]>) -> Vec<Source> {
    mirrors
        .unwrap_or_default()
        .iter()
        .map(|endpoint| Source::new(endpoint.clone(), name.path))
        .collect()
}

fn invalid_name(host: &str, repository: &str, reason: String) -> RegistryError {
    RegistryError::InvalidReference {
        what: "image".into(),
        from: format!("{host}/{repository}"),
        reason,
    }
}

impl std::fmt::Display for ImageName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl Prefix {
    /// How many characters of `name` the prefix covers, if it matches: it
    /// must end where a path component (or the tag or digest) ends.
    fn matched(&self, name: &ImageName) -> Option<usize> {
        match self {
            Prefix::Subdomains(suffix) => (name.domain.len() > suffix.len()
                && name.domain.ends_with(suffix.as_str()))
            .then_some(name.domain.len()),
            Prefix::Name {
                repository,
                selector,
            } => {
                let full = format!("{}/{}", name.domain, name.path);
                match selector {
                    None => {
                        let whole = full == *repository
                            || (full.starts_with(repository.as_str())
                                && full.as_bytes()[repository.len()] == b'/');
                        whole.then_some(repository.len())
                    }
                    Some(sel) => {
                        let pinned = match sel.strip_prefix('@') {
                            Some(digest) => name.digest == Some(digest),
                            None => name.tag == sel.strip_prefix(':'),
                        };
                        (full == *repository && pinned).then_some(repository.len() + sel.len())
                    }
                }
            }
        }
    }
}

impl Rule {
    fn from_table(table: RegistryTable, i: usize, path: &Path) -> Result<Rule, RegistryError> {
        let key = |k: &str| format!("registry[{i}].{k}");
        let location = table.location.unwrap_or_default().trim().to_string();
        let prefix_text = match table.prefix {
            Some(p) if !p.trim().is_empty() => p.trim().to_string(),
            _ if !location.is_empty() => location.clone(),
            _ => {
                return Err(file_error(
                    path,
                    &format!("registry[{i}]"),
                    "needs a prefix or a location".into(),
                ))
            }
        };
        let prefix = parse_prefix(&prefix_text).map_err(|m| file_error(path, &key("prefix"), m))?;
        // Without a location the prefix is pulled from where it names.
        if !location.is_empty() {
            check_location(&location)
                .map_err(|m| file_error(path, &key("location"), format!("{location:?}: {m}")))?;
        }
        let mirrors = table
            .mirror
            .into_iter()
            .enumerate()
            .map(|(j, m)| {
                mirror_from_table(m, table.mirror_by_digest_only)
                    .map_err(|(k, msg)| file_error(path, &key(&format!("mirror[{j}].{k}")), msg))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rule {
            prefix,
            prefix_text,
            location,
            insecure: table.insecure,
            blocked: table.blocked,
            mirrors,
            file: path.to_path_buf(),
        })
    }

    /// `name`'s registry host and repository once the `matched` characters
    /// the prefix covered are replaced by `location` (kept as they are when
    /// `location` is empty).
    fn rewrite(
        &self,
        name: &ImageName,
        matched: usize,
        location: &str,
    ) -> Result<(String, String), RegistryError> {
        if location.is_empty() {
            return Ok((name.domain.to_string(), name.path.to_string()));
        }
        let full = format!("{}/{}", name.domain, name.path);
        // A prefix pinned to a tag or digest covers the whole repository.
        let rest = &full[matched.min(full.len())..];
        let rewritten = format!("{location}{rest}");
        let Some((host, path)) = rewritten.split_once('/') else {
            return Err(invalid_name(
                name.domain,
                name.path,
                format!(
                    "registries.conf {} (prefix {:?}) rewrites it to {rewritten:?}, which names no repository",
                    self.file.display(),
                    self.prefix_text
                ),
            ));
        };
        // Docker Hub's official images live under library/, as in names.
        let path = if is_docker_hub(host) && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        Ok((host.to_string(), path))
    }
}

fn is_docker_hub(host: &str) -> bool {
    matches!(host, "docker.io" | "index.docker.io")
}

fn mirror_from_table(m: MirrorTable, digest_only: bool) -> Result<Mirror, (&'static str, String)> {
    let location = m.location.trim().to_string();
    if location.is_empty() {
        return Err(("location", "must not be empty".into()));
    }
    check_location(&location).map_err(|msg| ("location", format!("{location:?}: {msg}")))?;
    let (by_digest, by_tag) = match m.pull_from_mirror.as_str() {
        "" | "all" => (true, !digest_only),
        _ if digest_only => {
            return Err((
                "pull-from-mirror",
                "must not be set when the registry has mirror-by-digest-only = true".into(),
            ))
        }
        "digest-only" => (true, false),
        "tag-only" => (false, true),
        other => {
            return Err((
                "pull-from-mirror",
                format!("{other:?} is none of \"all\", \"digest-only\", \"tag-only\""),
            ))
        }
    };
    Ok(Mirror {
        location,
        insecure: m.insecure,
        by_digest,
        by_tag,
    })
}

/// `host[:port]`, `host[:port]/path`, optionally ending in `:tag` or
/// `@digest`, or `*.domain`.
fn parse_prefix(s: &str) -> Result<Prefix, String> {
    if let Some(domain) = s.strip_prefix("*.") {
        if domain.is_empty() || domain.contains(['/', ':', '*', '@']) || !is_host(domain) {
            return Err(format!(
                "{s:?}: a wildcard prefix is *.domain, with nothing after the domain"
            ));
        }
        return Ok(Prefix::Subdomains(format!(".{domain}")));
    }
    let (repository, selector) = split_selector(s);
    check_location(repository).map_err(|m| format!("{s:?}: {m}"))?;
    if let Some(sel) = &selector {
        if !repository.contains('/') {
            return Err(format!(
                "{s:?}: a tag or digest needs a repository before it"
            ));
        }
        let ok = match sel.strip_prefix('@') {
            Some(digest) => matches!(check_digest(digest), DigestCheck::Sha256(_)),
            None => is_valid_tag(&sel[1..]),
        };
        if !ok {
            return Err(format!(
                "{s:?}: {sel:?} is not a valid tag or sha256 digest"
            ));
        }
    }
    Ok(Prefix::Name {
        repository: repository.to_string(),
        selector,
    })
}

/// Splits `repo:tag` / `repo@digest` (the port of a bare `host:port` is
/// not a tag).
fn split_selector(s: &str) -> (&str, Option<String>) {
    if let Some(at) = s.find('@') {
        return (&s[..at], Some(s[at..].to_string()));
    }
    let last_slash = s.rfind('/');
    match (last_slash, s.rfind(':')) {
        (Some(slash), Some(colon)) if colon > slash => (&s[..colon], Some(s[colon..].to_string())),
        _ => (s, None),
    }
}

/// `host[:port][/path]`: a registry and an optional namespace.
fn check_location(s: &str) -> Result<(), String> {
    if s.contains("://") {
        return Err("write host[:port][/path], without a scheme".into());
    }
    if s.contains('@') || split_selector(s).1.is_some() {
        return Err("peapod rewrites repositories only; a location names no tag or digest".into());
    }
    let (host, path) = s.split_once('/').unwrap_or((s, ""));
    if !is_host(host) {
        return Err(format!("{host:?} is not host[:port]"));
    }
    if s.contains('/') {
        validate_repository(path)?;
    }
    Ok(())
}

fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

fn file_error(path: &Path, key: &str, message: String) -> RegistryError {
    RegistryError::NodeFile {
        path: path.to_path_buf(),
        key: key.to_string(),
        message,
    }
}

fn read_if_present(path: &Path) -> Result<Option<String>, RegistryError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_error(path, "", format!("cannot read: {e}"))),
    }
}

/// The `*.conf` files of `dir` (not subdirectories), by name.
fn drop_in_files(dir: &Path) -> Result<Vec<PathBuf>, RegistryError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(file_error(dir, "", format!("cannot read: {e}"))),
    };
    let mut files = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| file_error(dir, "", format!("cannot read: {e}")))?;
        let path = entry.path();
        let is_conf = path.extension().is_some_and(|x| x == "conf");
        if is_conf && path.is_file() {
            files.insert(entry.file_name(), path);
        }
    }
    Ok(files.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::reference::Reference;
    use crate::image::registry::test_support::settings;
    use crate::image::registry::RegistryClient;

    fn conf(files: &[(&str, &str)]) -> RegistriesConf {
        let mut conf = RegistriesConf::default();
        for (path, text) in files {
            conf.merge(text, Path::new(path)).unwrap();
        }
        conf
    }

    fn error(text: &str) -> String {
        let err = RegistriesConf::default()
            .merge(text, Path::new("/etc/containers/registries.conf"))
            .unwrap_err();
        assert!(matches!(err, RegistryError::NodeFile { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/containers/registries.conf"), "{msg}");
        msg
    }

    /// "base/v2/repository" of each place a pull of `image` tries.
    fn route_with(
        conf: &RegistriesConf,
        image: &str,
        mirrors: Option<&[Endpoint]>,
        insecure: &[String],
    ) -> Result<Vec<String>, RegistryError> {
        let r = Reference::parse(image).unwrap();
        let name = ImageName {
            domain: &r.domain,
            path: &r.path,
            tag: r.tag.as_deref(),
            digest: r.digest.as_deref(),
        };
        Ok(conf
            .route(&name, mirrors, insecure)?
            .iter()
            .map(|s| format!("{}/v2/{}", s.endpoint.base, s.repository))
            .collect())
    }

    fn route(conf: &RegistriesConf, image: &str) -> Vec<String> {
        route_with(conf, image, None, &[]).unwrap()
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn the_man_page_example() {
        let c = conf(&[(
            "/etc/containers/registries.conf",
            r#"
            unqualified-search-registries = ["example.com"]

            [[registry]]
            prefix = "example.com/foo"
            insecure = false
            blocked = false
            location = "internal-registry-for-example.com/bar"

            [[registry.mirror]]
            location = "example-mirror-0.local/mirror-for-foo"

            [[registry.mirror]]
            location = "example-mirror-1.local/mirrors/foo"
            insecure = true

            [[registry]]
            location = "registry.com"

            [[registry.mirror]]
            location = "mirror.registry.com"
            "#,
        )]);
        assert_eq!(c.unqualified_search_registries, ["example.com"]);
        assert_eq!(
            route(&c, "example.com/foo/image:latest"),
            [
                "https://example-mirror-0.local/v2/mirror-for-foo/image",
                "http://example-mirror-1.local/v2/mirrors/foo/image",
                "https://internal-registry-for-example.com/v2/bar/image",
            ]
        );
        // A mirror belongs to its own table only.
        assert_eq!(
            route(&c, "registry.com/image:latest"),
            [
                "https://mirror.registry.com/v2/image",
                "https://registry.com/v2/image"
            ]
        );
        // Matched by whole path components only.
        assert_eq!(
            route(&c, "example.com/foobar/image"),
            ["https://example.com/v2/foobar/image"]
        );
        assert_eq!(route(&c, "quay.io/x/y"), ["https://quay.io/v2/x/y"]);
    }

    #[test]
    fn the_most_specific_prefix_wins() {
        let c = conf(&[(
            "/r.conf",
            r#"
            [[registry]]
            prefix = "docker.io"
            location = "hub.internal"

            [[registry]]
            prefix = "docker.io/library"
            location = "library.internal/hub"

            [[registry]]
            prefix = "docker.io/library/busybox:1.36"
            location = "pinned.internal/busybox"

            [[registry]]
            prefix = "*.example.com"
            blocked = true

            [[registry]]
            prefix = "*.ok.example.com"

            [[registry]]
            prefix = "a.ok.example.com"
            location = "a.internal"

            [[registry]]
            prefix = "localhost"
            location = "plain.internal"
            "#,
        )]);
        assert_eq!(
            route(&c, "alpine"),
            ["https://library.internal/v2/hub/alpine"]
        );
        assert_eq!(route(&c, "user/app"), ["https://hub.internal/v2/user/app"]);
        assert_eq!(
            route(&c, "busybox:1.36"),
            ["https://pinned.internal/v2/busybox"]
        );
        assert_eq!(
            route(&c, "busybox:1.37"),
            ["https://library.internal/v2/hub/busybox"]
        );
        // A wildcard covers subdomains at any depth, not the domain itself.
        assert!(matches!(
            route_with(&c, "x.y.example.com/app", None, &[]),
            Err(RegistryError::Blocked { .. })
        ));
        assert_eq!(route(&c, "example.com/app"), ["https://example.com/v2/app"]);
        // The longer wildcard beats the shorter, a name beats a wildcard.
        assert_eq!(
            route(&c, "b.ok.example.com/app"),
            ["https://b.ok.example.com/v2/app"]
        );
        assert_eq!(
            route(&c, "a.ok.example.com/app"),
            ["https://a.internal/v2/app"]
        );
        // A host prefix is not a prefix of the host with a port.
        assert_eq!(
            route(&c, "localhost:5000/app"),
            ["http://localhost:5000/v2/app"]
        );
        assert_eq!(
            route(&c, "localhost/app"),
            ["https://plain.internal/v2/app"]
        );
    }

    #[test]
    fn blocked_names_the_rule_and_a_longer_prefix_unblocks() {
        let c = conf(&[(
            "/etc/containers/registries.conf.d/50-block.conf",
            r#"
            [[registry]]
            prefix = "quay.io/evil"
            location = "quay.io/evil"
            blocked = true

            [[registry]]
            prefix = "quay.io/evil/but-fine"
            location = "quay.io/evil/but-fine"
            "#,
        )]);
        let err = route_with(&c, "quay.io/evil/app:1", None, &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/etc/containers/registries.conf.d/50-block.conf")
                && msg.contains("\"quay.io/evil\"")
                && msg.contains("quay.io/evil/app:1"),
            "{msg}"
        );
        assert_eq!(
            route(&c, "quay.io/evil/but-fine/app"),
            ["https://quay.io/v2/evil/but-fine/app"]
        );
        assert_eq!(
            route(&c, "quay.io/evilish/app"),
            ["https://quay.io/v2/evilish/app"]
        );
    }

    #[test]
    fn mirrors_by_digest_or_tag() {
        let c = conf(&[(
            "/r.conf",
            r#"
            [[registry]]
            location = "by-digest.example"
            mirror-by-digest-only = true
            [[registry.mirror]]
            location = "m1.example"

            [[registry]]
            location = "mixed.example"
            [[registry.mirror]]
            location = "digests.example"
            pull-from-mirror = "digest-only"
            [[registry.mirror]]
            location = "tags.example"
            pull-from-mirror = "tag-only"
            [[registry.mirror]]
            location = "all.example"
            pull-from-mirror = "all"
            "#,
        )]);
        assert_eq!(
            route(&c, "by-digest.example/a:1"),
            ["https://by-digest.example/v2/a"]
        );
        assert_eq!(
            route(&c, &format!("by-digest.example/a@{DIGEST}")),
            ["https://m1.example/v2/a", "https://by-digest.example/v2/a"]
        );
        assert_eq!(
            route(&c, "mixed.example/a"),
            [
                "https://tags.example/v2/a",
                "https://all.example/v2/a",
                "https://mixed.example/v2/a"
            ]
        );
        assert_eq!(
            route(&c, &format!("mixed.example/a:1@{DIGEST}")),
            [
                "https://digests.example/v2/a",
                "https://all.example/v2/a",
                "https://mixed.example/v2/a"
            ]
        );
    }

    #[test]
    fn peapod_settings_win_where_both_speak() {
        let c = conf(&[(
            "/r.conf",
            r#"
            [[registry]]
            prefix = "docker.io"
            location = "docker.io"
            [[registry.mirror]]
            location = "conf-mirror.example"

            [[registry]]
            location = "plain.example"
            insecure = false

            [[registry]]
            location = "quay.io"
            insecure = true
            [[registry.mirror]]
            location = "quay-mirror.example"
            "#,
        )]);
        let client = {
            let mut s = settings();
            s.mirrors
                .insert("docker.io".into(), vec!["peapod-mirror.example".into()]);
            RegistryClient::new(s).unwrap()
        };
        let peapod = client.peapod_mirrors("docker.io");
        assert_eq!(
            route_with(&c, "busybox", peapod, &[]).unwrap(),
            [
                "https://peapod-mirror.example/v2/library/busybox",
                "https://registry-1.docker.io/v2/library/busybox"
            ]
        );
        assert_eq!(
            route(&c, "busybox"),
            [
                "https://conf-mirror.example/v2/library/busybox",
                "https://registry-1.docker.io/v2/library/busybox"
            ]
        );
        // peapod's insecure list, and loopback, stay plain HTTP.
        let insecure = ["plain.example".to_string()];
        assert_eq!(
            route_with(&c, "plain.example/a", None, &insecure).unwrap(),
            ["http://plain.example/v2/a"]
        );
        // registries.conf's insecure: its own endpoint only, not its mirror.
        assert_eq!(
            route(&c, "quay.io/a/b"),
            [
                "https://quay-mirror.example/v2/a/b",
                "http://quay.io/v2/a/b"
            ]
        );
    }

    #[test]
    fn drop_ins_replace_same_prefix_and_search_list() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("registries.conf");
        let d = dir.path().join("registries.conf.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(
            &main,
            "unqualified-search-registries = [\"a.example\"]\n\
             [[registry]]\nprefix = \"x.example\"\nblocked = true\nlocation = \"x.example\"\n\
             [[registry]]\nlocation = \"kept.example\"\ninsecure = true\n",
        )
        .unwrap();
        std::fs::write(
            d.join("20-second.conf"),
            "[[registry]]\nprefix = \"x.example\"\nlocation = \"second.example\"\n",
        )
        .unwrap();
        std::fs::write(
            d.join("10-first.conf"),
            "unqualified-search-registries = [\"docker.io\"]\n\
             [[registry]]\nprefix = \"x.example\"\nlocation = \"first.example\"\n",
        )
        .unwrap();
        // Not read: another suffix, a directory.
        std::fs::write(d.join("99-broken.conf.bak"), "not toml [").unwrap();
        std::fs::create_dir(d.join("sub.conf")).unwrap();
        let c = RegistriesConf::load(Some(&main), Some(&d)).unwrap();
        assert_eq!(
            c.files,
            [
                main.clone(),
                d.join("10-first.conf"),
                d.join("20-second.conf")
            ]
        );
        assert_eq!(c.unqualified_search_registries, ["docker.io"]);
        assert_eq!(
            route(&c, "x.example/app"),
            ["https://second.example/v2/app"]
        );
        assert_eq!(
            route(&c, "kept.example/app"),
            ["http://kept.example/v2/app"]
        );
        assert_eq!(c.len(), 2);

        // Nothing there is no rule.
        let none = RegistriesConf::load(
            Some(&dir.path().join("absent.conf")),
            Some(&dir.path().join("absent.d")),
        )
        .unwrap();
        assert!(none.is_empty() && none.files.is_empty());
    }

    #[test]
    fn what_distributions_ship_parses() {
        // Debian's registries.conf.d/shortnames.conf and keys other tools
        // read.
        let c = conf(&[(
            "/etc/containers/registries.conf.d/shortnames.conf",
            r#"
            short-name-mode = "enforcing"
            credential-helpers = ["containers-auth.json"]
            [aliases]
              # almalinux
              "almalinux" = "docker.io/library/almalinux"
              "centos" = "quay.io/centos/centos"
            "#,
        )]);
        assert!(c.is_empty());
    }

    #[test]
    fn invalid_files_name_the_file_and_key() {
        for (text, needle) in [
            ("[[registry]\nlocation = 1", "TOML"),
            ("[[registry]]\nlocation = \"a.example\"\ninsecure = \"yes\"", "insecure"),
            ("[[registry]]\nlocation = \"a.example\"\nblockd = true", "blockd"),
            ("[[registry]]\ninsecure = true", "registry[0]: needs a prefix or a location"),
            (
                "[[registry]]\nlocation = \"https://a.example\"",
                "registry[0].prefix",
            ),
            (
                "[[registry]]\nprefix = \"a.example\"\nlocation = \"https://b.example\"",
                "registry[0].location: \"https://b.example\": write host[:port][/path], without a scheme",
            ),
            (
                "[[registry]]\nprefix = \"a.example\"\nlocation = \"b.example/x:1\"",
                "registry[0].location",
            ),
            ("[[registry]]\nprefix = \"*.a.example/x\"", "registry[0].prefix"),
            ("[[registry]]\nprefix = \"a.*.example\"", "registry[0].prefix"),
            ("[[registry]]\nprefix = \"a.example/Up\"\nlocation=\"b.example\"", "registry[0].prefix"),
            (
                "[[registry]]\nlocation = \"a.example\"\n[[registry.mirror]]\nlocation = \"\"",
                "registry[0].mirror[0].location: must not be empty",
            ),
            (
                "[[registry]]\nlocation = \"a.example\"\n[[registry.mirror]]\nlocation = \"m.example\"\npull-from-mirror = \"sometimes\"",
                "registry[0].mirror[0].pull-from-mirror",
            ),
            (
                "[[registry]]\nlocation = \"a.example\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.example\"\npull-from-mirror = \"tag-only\"",
                "registry[0].mirror[0].pull-from-mirror: must not be set",
            ),
            (
                "[[registry]]\nlocation = \"a.example\"\n[[registry]]\nprefix = \"a.example\"\nlocation = \"b.example\"",
                "registry[1].prefix: prefix \"a.example\" is defined twice",
            ),
            (
                "[registries.search]\nregistries = ['docker.io']",
                "registries: this is the version 1 format",
            ),
        ] {
            let msg = error(text);
            assert!(msg.contains(needle), "{text:?}: {msg}");
        }
    }

    #[test]
    fn a_rewrite_that_leaves_no_repository_is_refused() {
        let c = conf(&[(
            "/r.conf",
            "[[registry]]\nprefix = \"docker.io/library/busybox\"\nlocation = \"mirror.example\"\n",
        )]);
        let err = route_with(&c, "busybox", None, &[]).unwrap_err();
        assert!(
            matches!(err, RegistryError::InvalidReference { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("names no repository"), "{err}");
    }
}
