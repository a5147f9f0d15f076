//! Finding the network config: the lexically first loadable
//! `.conflist`, `.conf` or `.json` file of the conf dir, as libcni does.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{CniError, CniNetwork, NetworkOrigin, DEFAULT_EXEC_TIMEOUT};

const CONFIG_EXTENSIONS: [&str; 3] = ["conflist", "conf", "json"];

/// The pieces of a config file that describe the network.
#[derive(Debug)]
struct ParsedList {
    name: String,
    cni_version: String,
    disable_check: bool,
    plugins: Vec<Map<String, Value>>,
}

impl CniNetwork {
    /// Loads the lexically first valid config in `conf_dir`; `Ok(None)` when
    /// there is none (the network is not ready). Invalid files are skipped
    /// with a warning so one bad file does not take the node's network down.
    pub fn load(
        conf_dir: &Path,
        bin_dirs: &[PathBuf],
        cache_dir: &Path,
    ) -> Result<Option<CniNetwork>, CniError> {
        let found = first_valid_config(config_files(conf_dir)?, |_| true);
        Ok(found.map(|(path, list)| CniNetwork::from_file(path, list, bin_dirs, cache_dir)))
    }

    /// Loads the lexically first valid config in `conf_dir` that defines
    /// the network `name`, in force or not: a pod is detached from the
    /// network it was attached to even when another file now comes first.
    pub fn load_named(
        conf_dir: &Path,
        name: &str,
        bin_dirs: &[PathBuf],
        cache_dir: &Path,
    ) -> Result<Option<CniNetwork>, CniError> {
        let found = first_valid_config(config_files(conf_dir)?, |list| list.name == name);
        Ok(found.map(|(path, list)| CniNetwork::from_file(path, list, bin_dirs, cache_dir)))
    }

    fn from_file(
        path: PathBuf,
        list: ParsedList,
        bin_dirs: &[PathBuf],
        cache_dir: &Path,
    ) -> CniNetwork {
        tracing::debug!(path = %path.display(), network = %list.name, "loaded CNI network config");
        CniNetwork::from_list(list, NetworkOrigin::File(path), bin_dirs, cache_dir)
    }

    fn from_list(
        list: ParsedList,
        origin: NetworkOrigin,
        bin_dirs: &[PathBuf],
        cache_dir: &Path,
    ) -> CniNetwork {
        CniNetwork {
            name: list.name,
            cni_version: list.cni_version,
            disable_check: list.disable_check,
            plugins: list.plugins,
            origin,
            bin_dirs: bin_dirs.to_vec(),
            cache_dir: cache_dir.to_path_buf(),
            exec_timeout: DEFAULT_EXEC_TIMEOUT,
        }
    }
}

/// The files of `conf_dir` with a config extension, sorted; none when the
/// directory does not exist.
fn config_files(conf_dir: &Path) -> Result<Vec<PathBuf>, CniError> {
    let read_error = |source| CniError::ReadConfDir {
        path: conf_dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(conf_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(read_error(source)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(read_error)?.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| CONFIG_EXTENSIONS.contains(&e));
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The first file that reads, parses and is `wanted`, with what it says.
fn first_valid_config(
    files: Vec<PathBuf>,
    wanted: impl Fn(&ParsedList) -> bool,
) -> Option<(PathBuf, ParsedList)> {
    for path in files {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping unreadable CNI config");
                continue;
            }
        };
        let is_list = path.extension().and_then(|e| e.to_str()) == Some("conflist");
        match parse_config(&bytes, is_list) {
            Ok(list) if wanted(&list) => return Some((path, list)),
            Ok(_) => {}
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "skipping invalid CNI config");
            }
        }
    }
    None
}

/// Parses a config file; the error says why the file is skipped.
fn parse_config(bytes: &[u8], is_list: bool) -> Result<ParsedList, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(mut obj) = value else {
        return Err("not a JSON object".to_string());
    };
    let name = string_field(&obj, "name")?;
    if !valid_network_name(&name) {
        return Err(format!(
            "\"name\" {name:?} must start with a letter or digit followed by letters, digits, '_', '.' or '-'"
        ));
    }
    let cni_version = string_field(&obj, "cniVersion")?;

    // A .conf that is really a list is taken as one rather than rejected.
    let plugins = if is_list || obj.contains_key("plugins") {
        plugin_list(obj.remove("plugins"))?
    } else {
        check_plugin_type(&obj)?;
        vec![obj.clone()]
    };
    let disable_check = match obj.get("disableCheck") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    Ok(ParsedList {
        name,
        cni_version,
        disable_check,
        plugins,
    })
}

/// A top-level string field; absent reads as empty.
fn string_field(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    match obj.get(key) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{key:?} is not a string")),
    }
}

/// The `plugins` of a list: a non-empty array of objects that name a type.
fn plugin_list(plugins: Option<Value>) -> Result<Vec<Map<String, Value>>, String> {
    let Some(Value::Array(list)) = plugins else {
        return Err("\"plugins\" is missing or not a list".to_string());
    };
    if list.is_empty() {
        return Err("\"plugins\" is empty".to_string());
    }
    let mut plugins = Vec::with_capacity(list.len());
    for (i, p) in list.into_iter().enumerate() {
        let Value::Object(p) = p else {
            return Err(format!("plugins[{i}] is not an object"));
        };
        check_plugin_type(&p).map_err(|e| format!("plugins[{i}]: {e}"))?;
        plugins.push(p);
    }
    Ok(plugins)
}

fn check_plugin_type(plugin: &Map<String, Value>) -> Result<(), String> {
    match plugin.get("type") {
        Some(Value::String(t)) if !t.is_empty() && !t.contains('/') && t != "." && t != ".." => {
            Ok(())
        }
        Some(Value::String(t)) => Err(format!("\"type\" {t:?} is not a plugin name")),
        _ => Err("\"type\" is missing or not a string".to_string()),
    }
}

fn valid_network_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Whether a "x.y.z" version is older than `than`; unparsable counts as not.
pub(super) fn version_before(version: &str, than: (u64, u64, u64)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u64>());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b)), c) => {
            let c = match c {
                Some(Ok(c)) => c,
                None => 0,
                Some(Err(_)) => return false,
            };
            (a, b, c) < than
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::not_ready_message;
    use super::*;

    #[test]
    fn load_takes_the_lexically_first_valid_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path();
        let cache = Path::new("/nonexistent-cache");
        assert!(CniNetwork::load(&conf.join("missing"), &[], cache)
            .expect("load")
            .is_none());
        assert!(CniNetwork::load(conf, &[], cache).expect("load").is_none());

        let files = [
            ("00-broken.conflist", "{not json"),
            (
                "01-noplugins.conflist",
                r#"{"cniVersion":"1.0.0","name":"a","plugins":[]}"#,
            ),
            ("02-notype.conf", r#"{"cniVersion":"1.0.0","name":"b"}"#),
            (
                "03-badname.conf",
                r#"{"cniVersion":"1.0.0","name":"../x","type":"bridge"}"#,
            ),
            (
                "04-readme.md",
                r#"{"cniVersion":"1.0.0","name":"md","type":"bridge"}"#,
            ),
            (
                "10-single.conf",
                r#"{"cniVersion":"0.4.0","name":"single","type":"bridge","bridge":"cni0"}"#,
            ),
            (
                "20-list.conflist",
                r#"{"cniVersion":"1.0.0","name":"list","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
            ),
        ];
        for (name, body) in files {
            std::fs::write(conf.join(name), body).expect("write");
        }
        let net = CniNetwork::load(conf, &[], cache)
            .expect("load")
            .expect("config");
        assert_eq!(net.name(), "single");
        assert_eq!(net.cni_version(), "0.4.0");
        assert_eq!(net.plugin_types(), vec!["bridge"]);
        assert_eq!(net.source(), Some(conf.join("10-single.conf").as_path()));

        std::fs::remove_file(conf.join("10-single.conf")).expect("rm");
        let net = CniNetwork::load(conf, &[], cache)
            .expect("load")
            .expect("config");
        assert_eq!(net.name(), "list");
        assert_eq!(net.plugin_types(), vec!["bridge", "portmap"]);

        // By name: a file that no longer comes first still defines its network.
        std::fs::write(
            conf.join("05-other.conf"),
            r#"{"name":"other","type":"bridge"}"#,
        )
        .expect("write");
        let by_name = |name| CniNetwork::load_named(conf, name, &[], cache).expect("load");
        assert_eq!(
            by_name("list").expect("list").source(),
            Some(conf.join("20-list.conflist").as_path())
        );
        assert!(by_name("missing").is_none());
        assert!(not_ready_message(conf).contains(&conf.display().to_string()));
    }

    #[test]
    fn versions_compare_by_number() {
        assert!(version_before("0.3.1", (0, 4, 0)));
        assert!(!version_before("1.0.0", (0, 4, 0)));
    }
}
