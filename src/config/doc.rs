//! The configuration reference: what each key does and its unit, and the
//! documented template `peapod config default` prints. The template's keys,
//! order of tables and values come from `Config::default()` serialized, the
//! same definitions the daemon parses; the tests below fail when a key has
//! no entry here or an entry names no key.

use std::fmt::Write;

use super::Config;

/// One key's documentation. `*` in a key stands for any name of a map
/// (a runtime handler's name).
struct KeyDoc {
    key: &'static str,
    /// What the key does. The first sentence (up to the first ". ") is
    /// also the help of the command-line flag that sets it.
    text: &'static str,
    /// The unit of a number, empty for other values.
    unit: &'static str,
}

const fn key(key: &'static str, text: &'static str) -> KeyDoc {
    KeyDoc {
        key,
        text,
        unit: "",
    }
}

const fn key_in(key: &'static str, unit: &'static str, text: &'static str) -> KeyDoc {
    KeyDoc { key, text, unit }
}

/// In the order the template lists them (within each table).
const KEYS: &[KeyDoc] = &[
    key(
        "socket",
        "The CRI socket kubelet and crictl connect to. It is created mode 0660, \
         owned by root; a stale socket is replaced, a daemon answering on it is refused.",
    ),
    key(
        "root_dir",
        "Directory of persistent data. It holds the metadata store, images, \
         containers' writable layers and the CNI result cache.",
    ),
    key(
        "state_dir",
        "Directory of volatile state. It holds pod and container directories, \
         network namespace files and monitor sockets; a tmpfs such as /run fits.",
    ),
    key(
        "log_level",
        "Log filter in tracing's EnvFilter syntax, such as info, debug or peapod=debug. \
         `debug` logs every CRI call with its duration; the RUST_LOG environment \
         variable overrides this key.",
    ),
    key(
        "cgroup_driver",
        "How cgroup parents are named: cgroupfs or systemd. It must match \
         kubelet's --cgroup-driver, to which it is reported.",
    ),
    key(
        "default_cgroup_parent",
        "Cgroup of pods whose request names no cgroup_parent (an absolute cgroup path).",
    ),
    key(
        "monitor_path",
        "The peapod-monitor binary. Empty means the one next to the peapod binary.",
    ),
    key_in(
        "shm_size",
        "bytes",
        "Size of the tmpfs mounted on a pod's /dev/shm (at least 4096).",
    ),
    key(
        "default_runtime",
        "Runtime handler used when a request names none; a key of [runtimes].",
    ),
    key(
        "restrict_oom_score_adj",
        "Whether a container's oom_score_adj is raised to at least the daemon's own: \
         auto, always or never. The kernel refuses a lower value to a process without \
         CAP_SYS_RESOURCE, and the OCI runtime then fails to start the container; \
         auto restricts when the daemon lacks that capability.",
    ),
    key_in(
        "container_log_max_line",
        "bytes",
        "Longest line a container log holds in one record (at least 256). \
         Longer output is split into partial (P) records.",
    ),
    key("cni", "The pod network (CNI)."),
    key(
        "cni.conf_dir",
        "Directory of CNI network configurations. The first .conflist, .conf or \
         .json file in it, by name, is the pod network; without one, pods join \
         the default network (cni.default_network).",
    ),
    key(
        "cni.bin_dirs",
        "Directories of CNI plugins, searched in order (absolute paths).",
    ),
    key_in(
        "cni.plugin_timeout_secs",
        "seconds",
        "Time one CNI plugin invocation may take before it is killed.",
    ),
    key(
        "cni.default_network",
        "Whether pods join peapod's own network peapod-default while conf_dir holds \
         no network config. A bridge with host-local addresses, portmap and \
         loopback; false: NetworkReady is false until a config exists.",
    ),
    key(
        "cni.default_subnet",
        "The IPv4 range (CIDR) of the default network's pod addresses.",
    ),
    key(
        "cni.default_bridge",
        "The bridge of the default network, the pods' gateway.",
    ),
    key("images", "Image pulls."),
    key(
        "images.insecure_registries",
        "Registries (host or host:port) reached over plain HTTP. localhost, \
         127.0.0.0/8 and ::1 always are.",
    ),
    key(
        "images.mirrors",
        "Mirrors tried in order before a registry, by registry name as in image \
         names. Endpoints are host[:port] or http(s)://host[:port][/prefix], e.g. \
         mirrors = { \"docker.io\" = [\"https://mirror.lan\", \"registry.lan:5000\"] }.",
    ),
    key_in(
        "images.max_concurrent_downloads",
        "layers",
        "Layers one pull downloads at once.",
    ),
    key_in(
        "images.connect_timeout_secs",
        "seconds",
        "Time to wait for a connection to a registry.",
    ),
    key(
        "images.registries_conf",
        "The node's containers-registries.conf(5) (version 2), read at start and by \
         every pull. Its blocked registries, locations and mirrors apply; peapod's \
         own mirrors and insecure_registries win where both speak; empty: not read.",
    ),
    key(
        "images.registries_conf_dir",
        "Drop-in *.conf files read after registries_conf, in name order. Empty: not read.",
    ),
    key(
        "images.auth_file",
        "Credentials (containers-auth.json(5)) for pulls whose request carries none. \
         Empty: $REGISTRY_AUTH_FILE, else /etc/containers/auth.json.",
    ),
    key_in(
        "images.pull_progress_timeout_secs",
        "seconds",
        "A pull that receives no byte for this long is cancelled (DeadlineExceeded, \
         naming the blob). 0: never.",
    ),
    key(
        "runtimes",
        "OCI runtime handlers, by the name a RuntimeClass's handler gives. Each has \
         runc's command line (runc, crun, youki). Handlers declared here \
         ([runtimes.NAME]) are added to the built-in runc.",
    ),
    key("runtimes.*", "A runtime handler."),
    key(
        "runtimes.*.path",
        "The OCI runtime binary, a path or a name looked up in PATH.",
    ),
    key(
        "runtimes.*.root",
        "The runtime's --root state directory. Empty means <state_dir>/runtimes/NAME.",
    ),
    key(
        "streaming",
        "The streaming server: the URLs Exec, Attach and PortForward return.",
    ),
    key(
        "streaming.address",
        "The streaming server's IP address. Loopback keeps it out of pods' reach; \
         kubelet on the same node reaches it there.",
    ),
    key(
        "streaming.port",
        "The streaming server's TCP port. 0 takes a free one (the URLs carry the real port).",
    ),
    key_in(
        "streaming.token_ttl_secs",
        "seconds",
        "Time a streaming URL stays valid before its first use.",
    ),
    key_in(
        "streaming.max_pending",
        "URLs",
        "Streaming URLs issued and not used yet, at most; more are refused with \
         ResourceExhausted.",
    ),
    key(
        "events",
        "GetContainerEvents, the stream of container and pod sandbox lifecycle events \
         kubelet's Evented PLEG reads.",
    ),
    key_in(
        "events.buffer",
        "events",
        "Events held for a subscriber that does not keep up, at most (at least 1). \
         Then its stream ends with ResourceExhausted, and kubelet lists again; \
         lifecycle operations and other subscribers never wait for it.",
    ),
    key(
        "metrics",
        "peapod's own Prometheus endpoint: GET /metrics in the text format \
         (README: the list of metrics).",
    ),
    key(
        "metrics.address",
        "The IP address and port of the Prometheus endpoint, such as 127.0.0.1:9090. \
         Empty: no endpoint. An address that cannot be bound stops the daemon at start.",
    ),
];

const HEADER: &str = "\
# peapod's configuration, as `peapod config default` prints it: every key,
# set to its default. Keys left out keep their defaults; unknown keys and
# invalid values are errors that name the key. `peapod serve` reads
# /etc/peapod/config.toml (or --config FILE); its flags override the file.
# `peapod config check FILE` validates a file, `peapod config show` prints
# the configuration in effect.
";

/// Wraps comments at this width.
const WIDTH: usize = 78;

/// The documented default configuration, as TOML.
pub fn default_template() -> String {
    let defaults = toml::Value::try_from(Config::default())
        .expect("the default configuration serializes to TOML");
    let mut out = String::from(HEADER);
    write_table(&mut out, &[], defaults.as_table().expect("a table"));
    out
}

/// The first sentence of a key's documentation (a flag's help).
///
/// Panics when `key` is not documented: a flag for an undocumented key is a
/// programming error the CLI's tests catch.
pub fn key_summary(key: &str) -> &'static str {
    let path: Vec<&str> = key.split('.').collect();
    let doc = doc_for(&path).unwrap_or_else(|| panic!("config key {key} has no documentation"));
    match doc.text.find(". ") {
        Some(end) => &doc.text[..=end],
        None => doc.text,
    }
}

fn doc_for<S: AsRef<str>>(path: &[S]) -> Option<&'static KeyDoc> {
    KEYS.iter().find(|d| matches(d.key, path))
}

fn doc_index<S: AsRef<str>>(path: &[S]) -> usize {
    KEYS.iter()
        .position(|d| matches(d.key, path))
        .unwrap_or(KEYS.len())
}

fn matches<S: AsRef<str>>(doc_key: &str, path: &[S]) -> bool {
    let segments: Vec<&str> = doc_key.split('.').collect();
    segments.len() == path.len()
        && segments
            .iter()
            .zip(path)
            .all(|(s, p)| *s == "*" || *s == p.as_ref())
}

/// A non-empty table is a `[section]`; every other value, an empty map
/// included (`mirrors = {}`), is written as `key = value`.
fn is_section(value: &toml::Value) -> bool {
    value.as_table().is_some_and(|t| !t.is_empty())
}

/// Writes a table's plain keys, then its sections: TOML puts a table's keys
/// before its sub-tables.
fn write_table(out: &mut String, path: &[String], table: &toml::Table) {
    let mut entries: Vec<(Vec<String>, &toml::Value)> =
        table.iter().map(|(k, v)| (child(path, k), v)).collect();
    entries.sort_by_key(|(p, _)| doc_index(p));
    let (sections, keys): (Vec<_>, Vec<_>) = entries.into_iter().partition(|(_, v)| is_section(v));
    for (key_path, value) in keys {
        out.push('\n');
        write_comment(out, &key_path, Some(value));
        let _ = writeln!(out, "{} = {value}", toml_key(key_path.last().unwrap()));
    }
    for (section_path, value) in sections {
        let section = value.as_table().unwrap();
        out.push('\n');
        write_comment(out, &section_path, None);
        // A table of tables only (runtimes) needs no header of its own.
        if !section.values().all(is_section) {
            let header: Vec<String> = section_path.iter().map(|s| toml_key(s)).collect();
            let _ = writeln!(out, "[{}]", header.join("."));
        }
        write_table(out, &section_path, section);
    }
}

fn child(path: &[String], key: &str) -> Vec<String> {
    let mut p = path.to_vec();
    p.push(key.to_string());
    p
}

fn write_comment(out: &mut String, path: &[String], default: Option<&toml::Value>) {
    let Some(doc) = doc_for(path) else {
        let _ = writeln!(out, "# (not documented)");
        return;
    };
    for line in wrap(doc.text, WIDTH - 2) {
        let _ = writeln!(out, "# {line}");
    }
    if let Some(value) = default {
        let unit = if doc.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", doc.unit)
        };
        let _ = writeln!(out, "# Default: {value}{unit}");
    }
}

/// A key as TOML writes it: bare when it can be, quoted otherwise.
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        toml::Value::String(key.to_string()).to_string()
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every key path of the default configuration, tables included.
    fn default_paths() -> Vec<Vec<String>> {
        fn walk(path: &[String], table: &toml::Table, out: &mut Vec<Vec<String>>) {
            for (k, v) in table {
                let p = child(path, k);
                out.push(p.clone());
                if let Some(t) = v.as_table() {
                    walk(&p, t, out);
                }
            }
        }
        let value = toml::Value::try_from(Config::default()).unwrap();
        let mut out = Vec::new();
        walk(&[], value.as_table().unwrap(), &mut out);
        out
    }

    #[test]
    fn every_key_of_the_default_is_documented() {
        let missing: Vec<String> = default_paths()
            .iter()
            .filter(|p| doc_for(p).is_none())
            .map(|p| p.join("."))
            .collect();
        assert!(
            missing.is_empty(),
            "config keys without documentation (add them to KEYS in src/config/doc.rs): {missing:?}"
        );
    }

    #[test]
    fn every_documented_key_exists() {
        let paths = default_paths();
        let stale: Vec<&str> = KEYS
            .iter()
            .filter(|d| !paths.iter().any(|p| matches(d.key, p)))
            .map(|d| d.key)
            .collect();
        assert!(
            stale.is_empty(),
            "KEYS in src/config/doc.rs documents keys the configuration does not have: {stale:?}"
        );
    }

    #[test]
    fn the_template_parses_back_to_the_defaults() {
        let template = default_template();
        let parsed = Config::from_toml(&template, Path::new("template.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{template}"));
        assert_eq!(parsed, Config::default(), "{template}");
    }

    #[test]
    fn every_key_has_its_comment_and_default_above_it() {
        let template = default_template();
        let lines: Vec<&str> = template.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.starts_with('#') || line.is_empty() || line.starts_with('[') {
                continue;
            }
            let key = line.split(" = ").next().unwrap();
            assert!(
                lines[i - 1].starts_with("# Default: "),
                "{key} has no default above it:\n{template}"
            );
            assert!(
                lines[i - 2].starts_with("# ") && !lines[i - 2].starts_with("# Default"),
                "{key} has no documentation above it:\n{template}"
            );
        }
        assert!(template.contains("# Default: 67108864 bytes\nshm_size = 67108864\n"));
        assert!(template.contains("[runtimes.runc]\n"));
        assert!(template.contains("mirrors = {}\n"));
    }

    #[test]
    fn key_summaries_are_first_sentences() {
        assert_eq!(
            key_summary("socket"),
            "The CRI socket kubelet and crictl connect to."
        );
        assert_eq!(
            key_summary("streaming.port"),
            "The streaming server's TCP port."
        );
        assert_eq!(
            key_summary("runtimes.runc.path"),
            "The OCI runtime binary, a path or a name looked up in PATH."
        );
    }

    #[test]
    fn comments_wrap() {
        let lines = wrap("aaa bbb ccc", 7);
        assert_eq!(lines, ["aaa bbb", "ccc"]);
    }
}
