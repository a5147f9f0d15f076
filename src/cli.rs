//! The command line: subcommands, the flags that override configuration
//! keys, and usage errors as one line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use peapod::cgroups::CgroupDriver;
use peapod::config::{self, rules, Config, DEFAULT_CONFIG_PATH};

/// A Kubernetes Container Runtime Interface (CRI) runtime.
#[derive(Parser)]
#[command(name = "peapod", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the CRI daemon.
    Serve(ServeArgs),
    /// Print peapod's version and the CRI API version it serves.
    Version,
    /// Print or check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check whether this host is fit to run peapod's pods: one line each,
    /// OK, WARN or FAIL, with the fix; exit status 1 if anything FAILs.
    Check(CheckArgs),
}

#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print the findings as a JSON array, for scripts.
    #[arg(long)]
    pub json: bool,
}

// Parsed once, at start: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the default configuration as TOML, every key documented.
    Default,
    /// Print the configuration in effect (file, then flags) as TOML.
    Show(ConfigArgs),
    /// Check a configuration file: every problem, with its key and line.
    Check {
        /// The file to check.
        #[arg(value_name = "FILE", env = "PEAPOD_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
        file: PathBuf,
    },
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The format of log lines (on stderr).
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object per line.
    Json,
}

/// The configuration file, and the flags that override its keys. Each
/// flag's help is its key's documentation (`peapod config default`).
#[derive(Args)]
#[command(args_override_self = true)]
pub struct ConfigArgs {
    /// The configuration file [default: /etc/peapod/config.toml, when present].
    #[arg(long, value_name = "FILE", env = "PEAPOD_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, value_name = "PATH", value_parser = absolute_path, help = key_help("socket"))]
    socket: Option<PathBuf>,
    #[arg(long, value_name = "DIR", value_parser = absolute_path, help = key_help("root_dir"))]
    root: Option<PathBuf>,
    #[arg(long, value_name = "DIR", value_parser = absolute_path, help = key_help("state_dir"))]
    state: Option<PathBuf>,
    #[arg(long, value_name = "FILTER", value_parser = log_filter, help = key_help("log_level"))]
    log_level: Option<String>,
    #[arg(long, value_name = "DRIVER", value_parser = rules::named::<CgroupDriver>,
          help = key_help("cgroup_driver"))]
    cgroup_driver: Option<CgroupDriver>,
    #[arg(long, value_name = "PATH", help = key_help("monitor_path"))]
    monitor_path: Option<PathBuf>,
    #[arg(long, value_name = "DIR", value_parser = absolute_path, help = key_help("cni.conf_dir"))]
    cni_conf_dir: Option<PathBuf>,
    #[arg(long, value_name = "DIR[:DIR...]", value_parser = dir_list,
          help = key_help("cni.bin_dirs"))]
    cni_bin_dir: Option<DirList>,
    #[arg(long, value_name = "IP", value_parser = ip_address, help = key_help("streaming.address"))]
    streaming_address: Option<String>,
    #[arg(long, value_name = "PORT", help = key_help("streaming.port"))]
    streaming_port: Option<u16>,
    #[arg(long, value_name = "IP:PORT", value_parser = socket_address,
          help = key_help("metrics.address"))]
    metrics_address: Option<String>,
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]",
          help = repeatable(key_help("images.insecure_registries")))]
    insecure_registries: Vec<String>,
    #[arg(long = "registry-mirror", value_name = "REGISTRY=URL", value_parser = mirror,
          help = repeatable(key_help("images.mirrors")))]
    registry_mirrors: Vec<(String, String)>,
}

/// `--cni-bin-dir`'s ':'-separated directories.
#[derive(Clone)]
struct DirList(Vec<PathBuf>);

impl ConfigArgs {
    /// The file's configuration (or the defaults) with the flags applied.
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        self.apply(&mut config);
        config.validate()?;
        Ok(config)
    }

    /// The one place a flag names the key it sets.
    fn apply(&self, c: &mut Config) {
        set(&mut c.socket, &self.socket);
        set(&mut c.root_dir, &self.root);
        set(&mut c.state_dir, &self.state);
        set(&mut c.log_level, &self.log_level);
        set(&mut c.cgroup_driver, &self.cgroup_driver);
        set(&mut c.monitor_path, &self.monitor_path);
        set(&mut c.cni.conf_dir, &self.cni_conf_dir);
        if let Some(DirList(dirs)) = &self.cni_bin_dir {
            c.cni.bin_dirs = dirs.clone();
        }
        set(&mut c.streaming.address, &self.streaming_address);
        set(&mut c.streaming.port, &self.streaming_port);
        set(&mut c.metrics.address, &self.metrics_address);
        // Repeatable: each adds to what the file has.
        let insecure = &mut c.images.insecure_registries;
        insecure.extend(self.insecure_registries.iter().cloned());
        for (registry, endpoint) in &self.registry_mirrors {
            let endpoints = c.images.mirrors.entry(registry.clone()).or_default();
            endpoints.push(endpoint.clone());
        }
    }
}

fn set<T: Clone>(key: &mut T, flag: &Option<T>) {
    if let Some(value) = flag {
        *key = value.clone();
    }
}

fn key_help(key: &str) -> String {
    format!("{} [key: {key}]", config::key_summary(key))
}

fn repeatable(help: String) -> String {
    format!("{help} [repeatable]")
}

// Value parsers: the configuration's own rules, so a bad value is a usage
// error naming the flag.

fn absolute_path(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    rules::absolute_path(&path)?;
    Ok(path)
}

fn dir_list(value: &str) -> Result<DirList, String> {
    let dirs = value
        .split(':')
        .map(absolute_path)
        .collect::<Result<_, _>>()?;
    Ok(DirList(dirs))
}

fn log_filter(value: &str) -> Result<String, String> {
    rules::log_filter(value)?;
    Ok(value.to_string())
}

fn ip_address(value: &str) -> Result<String, String> {
    rules::ip_address(value)?;
    Ok(value.to_string())
}

fn socket_address(value: &str) -> Result<String, String> {
    rules::socket_address(value)?;
    Ok(value.to_string())
}

fn mirror(value: &str) -> Result<(String, String), String> {
    let Some((registry, endpoint)) = value.split_once('=') else {
        return Err("expected REGISTRY=URL".to_string());
    };
    rules::mirror(registry, &[endpoint])?;
    Ok((registry.to_string(), endpoint.to_string()))
}

/// Parses the command line. Help and version go to stdout (exit 0); a usage
/// error is one line on stderr (exit 2).
pub fn parse() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    let err = match Cli::try_parse() {
        Ok(cli) => return Ok(cli),
        Err(err) => err,
    };
    let code = ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
        }
        _ => eprintln!("peapod: {}", one_line(&err.render().to_string())),
    }
    Err(code)
}

/// clap's message, its tips folded in, without the usage and the pointer
/// to --help that follow it.
fn one_line(rendered: &str) -> String {
    let mut lines = rendered.lines().map(str::trim);
    let first = lines.next().unwrap_or_default();
    let mut line = first.strip_prefix("error: ").unwrap_or(first).to_string();
    for tip in lines.filter_map(|l| l.strip_prefix("tip: ")) {
        line.push_str(&format!(" ({tip})"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        // Also looks up every flag's key documentation.
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_set_their_keys_over_the_file() {
        let cli = Cli::try_parse_from([
            "peapod",
            "serve",
            "--socket=/tmp/p.sock",
            "--cni-bin-dir",
            "/a:/b",
            "--cgroup-driver",
            "systemd",
            "--streaming-port",
            "10010",
            "--metrics-address",
            "127.0.0.1:9090",
            "--registry-mirror",
            "docker.io=https://m1",
            "--registry-mirror",
            "docker.io=m2:5000",
            "--insecure-registry",
            "r.lan",
            "--socket",
            "/tmp/q.sock",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let Command::Serve(serve) = cli.command else {
            panic!("not serve")
        };
        let mut c = Config::default();
        serve.config.apply(&mut c);
        assert_eq!(c.socket, PathBuf::from("/tmp/q.sock"), "the last one wins");
        assert_eq!(c.cni.bin_dirs, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(c.cgroup_driver, CgroupDriver::Systemd);
        assert_eq!(c.streaming.port, 10010);
        assert_eq!(c.metrics.address, "127.0.0.1:9090");
        assert_eq!(c.images.mirrors["docker.io"], ["https://m1", "m2:5000"]);
        assert_eq!(c.images.insecure_registries, ["r.lan"]);
        assert_eq!(c.root_dir, Config::default().root_dir);
        c.validate().unwrap();
    }

    #[test]
    fn usage_errors_are_one_line() {
        let cases: [(&[&str], &str); 6] = [
            (
                &["serve", "--metrics-address", "9090"],
                "is not an IP address and port",
            ),
            (&["serve", "--sockt", "/x"], "'--sockt'"),
            (&["serve", "--root", "rel"], "rel is not an absolute path"),
            (&["serve", "--registry-mirror", "docker.io"], "REGISTRY=URL"),
            (&["serve", "--registry-mirror", "=x"], "must not be empty"),
            (
                &["serve", "--cni-bin-dir", "/a:b"],
                "b is not an absolute path",
            ),
        ];
        for (args, expected) in cases {
            let err = Cli::try_parse_from(std::iter::once(&"peapod").chain(args)).err();
            let err = err.unwrap_or_else(|| panic!("{args:?} parsed"));
            let line = one_line(&err.render().to_string());
            assert!(line.contains(expected), "{args:?}: {line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }
}
