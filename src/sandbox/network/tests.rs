//! The client against real plugins (bridge, host-local, loopback, portmap;
//! root needed) and scripted ones that record what they were given.

use super::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command as StdCommand, Stdio};
use std::time::Instant;

const LIB_CNI: &str = "/usr/lib/cni";

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (network namespaces, bridges, iptables)"
    );
}

fn require_plugins() {
    for p in ["bridge", "host-local", "loopback", "portmap"] {
        assert!(
            Path::new(LIB_CNI).join(p).is_file(),
            "{LIB_CNI}/{p} missing: install containernetworking-plugins (hack/install-deps.sh)"
        );
    }
}

fn rand_u32() -> u32 {
    getrandom::u32().expect("getrandom")
}

/// Runs a command, returning (success, stdout+stderr).
fn sh(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = StdCommand::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn write_script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn iptables_nat() -> String {
    let (ok, text) = sh("iptables", &["-w", "-t", "nat", "-S"]);
    assert!(ok, "iptables -t nat -S failed (install iptables): {text}");
    text
}

/// A netns, a bridge name, a subnet and a temp dir of one test; removed
/// on drop even when the test fails.
struct Fixture {
    dir: tempfile::TempDir,
    netns: String,
    bridge: String,
    /// "10.a.b" of the /24.
    subnet: String,
    network: String,
    /// The sandbox id every ADD of this test uses.
    cid: String,
    /// A random host port for portmap, so parallel tests do not collide.
    host_port: i32,
}

impl Fixture {
    fn new() -> Fixture {
        require_root();
        require_plugins();
        let r = rand_u32();
        let fx = Fixture {
            dir: tempfile::tempdir().expect("tempdir"),
            netns: format!("ppt-{r:08x}"),
            bridge: format!("ppt{:08x}", r),
            subnet: format!("10.{}.{}", 200 + (r >> 8) % 56, r & 0xff),
            network: format!("ppt-net-{r:08x}"),
            cid: format!("{:08x}{:08x}", rand_u32(), rand_u32()),
            host_port: 20000 + (rand_u32() % 10000) as i32,
        };
        let (ok, text) = sh("ip", &["netns", "add", &fx.netns]);
        assert!(ok, "ip netns add {}: {text}", fx.netns);
        fx
    }

    fn netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }

    fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    /// loopback, bridge, [extra plugins], portmap (if `portmap`) into `dir`.
    fn write_conflist_to(&self, dir: &Path, extra: &[Value], portmap: bool) {
        let mut plugins = vec![
            json!({"type": "loopback"}),
            json!({
                "type": "bridge",
                "bridge": self.bridge,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "dataDir": self.ipam_dir(),
                    "ranges": [[{"subnet": format!("{}.0/24", self.subnet)}]],
                    "routes": [{"dst": "0.0.0.0/0"}]
                }
            }),
        ];
        plugins.extend(extra.iter().cloned());
        if portmap {
            plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
        }
        let list = json!({"cniVersion": "1.0.0", "name": self.network, "plugins": plugins});
        std::fs::create_dir_all(dir).expect("mkdir net.d");
        std::fs::write(dir.join("10-test.conflist"), list.to_string()).expect("write conflist");
    }

    fn write_conflist(&self, extra: &[Value]) {
        self.write_conflist_to(&self.conf_dir(), extra, true);
    }

    fn load(&self, bin_dirs: &[PathBuf]) -> CniNetwork {
        CniNetwork::load(&self.conf_dir(), bin_dirs, &self.cache_dir())
            .expect("load")
            .expect("a network config")
    }

    fn eth0(&self) -> (bool, String) {
        sh("ip", &["-n", &self.netns, "-o", "addr", "show", "eth0"])
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // A failed test never reached DEL: drop its portmap rules, which
        // live in the host's nat table, not in the netns or the bridge.
        if std::thread::panicking() {
            // portmap's DEL is a no-op without the mappings.
            let conf = json!({
                "cniVersion": "1.0.0",
                "name": self.network,
                "type": "portmap",
                "runtimeConfig": {"portMappings": [
                    {"hostPort": self.host_port, "containerPort": 80, "protocol": "tcp"}
                ]}
            });
            if let Ok(mut child) = StdCommand::new(Path::new(LIB_CNI).join("portmap"))
                .env("CNI_COMMAND", "DEL")
                .env("CNI_CONTAINERID", &self.cid)
                .env("CNI_NETNS", "")
                .env("CNI_IFNAME", "eth0")
                .env("CNI_PATH", LIB_CNI)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
            {
                if let Some(mut stdin) = child.stdin.take() {
                    use std::io::Write;
                    let _ = stdin.write_all(conf.to_string().as_bytes());
                }
                let _ = child.wait();
            }
        }
        let _ = sh("ip", &["netns", "del", &self.netns]);
        let _ = sh("ip", &["link", "del", &self.bridge]);
    }
}

fn attachment<'a>(
    container_id: &'a str,
    netns: &'a Path,
    ports: &'a [PortMapping],
) -> Attachment<'a> {
    Attachment {
        container_id,
        netns,
        ifname: "eth0",
        pod_name: "web",
        pod_namespace: "default",
        pod_uid: "0b7c9a52-1d8e-4a4b-9f0e-5d2c7e9b6a11",
        port_mappings: ports,
        pod_cidr: None,
    }
}

fn ping(ip: &str) -> (bool, String) {
    if Path::new("/usr/bin/ping").exists() || Path::new("/bin/ping").exists() {
        sh("ping", &["-c1", "-W1", ip])
    } else {
        assert!(
            Path::new("/usr/bin/busybox").exists() || Path::new("/bin/busybox").exists(),
            "no ping: install iputils-ping or busybox-static"
        );
        sh("busybox", &["ping", "-c1", "-W1", ip])
    }
}

/// A TCP port with a host port and a UDP one without: kubelet sends every
/// containerPort; those without a host port stay out.
fn web_and_dns_ports(host_port: i32) -> [PortMapping; 2] {
    [
        PortMapping {
            protocol: "TCP".into(),
            container_port: 80,
            host_port,
            host_ip: String::new(),
        },
        PortMapping {
            protocol: "UDP".into(),
            container_port: 53,
            host_port: 0,
            host_ip: String::new(),
        },
    ]
}

/// The kernel's view after ADD: the address on eth0 in the pod's netns,
/// lo up, the pod reachable, its IP allocated and its port mapped.
fn assert_attached(fx: &Fixture, ip: &str) {
    let (ok, text) = fx.eth0();
    assert!(
        ok && text.contains(&format!("inet {ip}/24")),
        "eth0 in netns: {text}"
    );
    let (ok, text) = sh("ip", &["-n", &fx.netns, "-o", "link", "show", "lo"]);
    assert!(ok && text.contains(",UP"), "lo not up in netns: {text}");
    let (ok, text) = ping(ip);
    assert!(ok, "host cannot ping the pod at {ip}: {text}");
    let alloc = fx.ipam_dir().join(&fx.network).join(ip);
    assert!(
        alloc.exists(),
        "host-local allocation {} missing",
        alloc.display()
    );
    let dport = format!("--dport {} ", fx.host_port);
    assert!(
        iptables_nat().contains(&dport),
        "portmap rule for {} missing",
        fx.host_port
    );
}

/// portmap's CHECK wrongly demands IPv6 rules for an IPv4-only pod
/// (containernetworking/plugins#819), so CHECK the same attachment
/// through a list without it: bridge verifies eth0 and its address.
async fn check_without_portmap(fx: &Fixture, a: &Attachment<'_>) {
    let no_portmap = fx.dir.path().join("net.d-check");
    fx.write_conflist_to(&no_portmap, &[], false);
    let checker = CniNetwork::load(&no_portmap, &[PathBuf::from(LIB_CNI)], &fx.cache_dir())
        .expect("load")
        .expect("config");
    checker.check(a).await.expect("CHECK");
    let (ok, text) = sh("ip", &["-n", &fx.netns, "addr", "flush", "dev", "eth0"]);
    assert!(ok, "ip addr flush: {text}");
    let err = checker
        .check(a)
        .await
        .expect_err("CHECK of an eth0 without its IP");
    assert!(err.to_string().contains("\"bridge\""), "{err}");
}

/// The kernel's view after DEL: no eth0, no allocation, no port rule, no
/// cached result.
fn assert_detached(fx: &Fixture, ip: &str, cache: &Path) {
    let (_, text) = fx.eth0();
    assert!(
        !text.contains("inet "),
        "eth0 still configured after DEL: {text}"
    );
    let (ok, _) = sh("ip", &["-n", &fx.netns, "link", "show", "eth0"]);
    assert!(!ok, "eth0 still exists in the netns after DEL");
    let alloc = fx.ipam_dir().join(&fx.network).join(ip);
    assert!(!alloc.exists(), "host-local allocation survived DEL");
    let dport = format!("--dport {} ", fx.host_port);
    assert!(
        !iptables_nat().contains(&dport),
        "portmap rule survived DEL"
    );
    assert!(!cache.exists(), "result cache survived DEL");
}

#[tokio::test]
async fn add_check_del_with_bridge_portmap_loopback() {
    let fx = Fixture::new();
    fx.write_conflist(&[]);
    let net = fx.load(&[
        PathBuf::from("/nonexistent-cni-bin"),
        PathBuf::from(LIB_CNI),
    ]);
    let ports = web_and_dns_ports(fx.host_port);
    let netns = fx.netns_path();
    let a = attachment(&fx.cid, &netns, &ports);

    let result = net.add(&a).await.expect("ADD");
    assert_eq!(result.ips.len(), 1, "one IPv4 expected: {:?}", result.raw);
    let ip = result.ips[0].to_string();
    assert!(
        ip.starts_with(&format!("{}.", fx.subnet)),
        "{ip} outside the test subnet"
    );
    assert_attached(&fx, &ip);
    let cache = net.cache_path(&a);
    let cached: Value =
        serde_json::from_slice(&std::fs::read(&cache).expect("cache file")).expect("cache JSON");
    assert_eq!(cached["result"], result.raw);

    check_without_portmap(&fx, &a).await;

    // The caller may have lost the port mappings by now (a restart): the
    // cached ADD still lets portmap find its rules.
    let bare = attachment(&fx.cid, &netns, &[]);
    net.del(&bare).await.expect("DEL");
    assert_detached(&fx, &ip, &cache);

    net.del(&a).await.expect("second DEL");
}

#[tokio::test]
async fn del_after_netns_is_gone_releases_everything() {
    let fx = Fixture::new();
    fx.write_conflist(&[]);
    let net = fx.load(&[PathBuf::from(LIB_CNI)]);
    let host_port = fx.host_port;
    let ports = [PortMapping {
        protocol: "tcp".into(),
        container_port: 80,
        host_port,
        host_ip: "127.0.0.1".into(),
    }];
    let netns = fx.netns_path();
    let a = attachment(&fx.cid, &netns, &ports);
    let result = net.add(&a).await.expect("ADD");
    let alloc = fx
        .ipam_dir()
        .join(&fx.network)
        .join(result.ips[0].to_string());
    assert!(alloc.exists());
    let dport = format!("--dport {host_port} ");
    assert!(
        iptables_nat().contains(&dport),
        "portmap rule for {host_port} missing"
    );

    let (ok, text) = sh("ip", &["netns", "del", &fx.netns]);
    assert!(ok, "ip netns del: {text}");
    net.del(&a).await.expect("DEL without netns");
    assert!(!alloc.exists(), "host-local allocation survived DEL");
    assert!(
        !iptables_nat().contains(&dport),
        "portmap rule survived DEL"
    );
    net.del(&a).await.expect("second DEL without netns");
}

#[tokio::test]
async fn failed_add_is_rolled_back_by_del() {
    let fx = Fixture::new();
    let bin = fx.dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    write_script(
        &bin,
        "fail-add",
        r#"cat >/dev/null
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion":"1.0.0","code":111,"msg":"refusing on purpose","details":"injected failure"}'
  exit 1
fi"#,
    );
    fx.write_conflist(&[json!({"type": "fail-add"})]);
    let net = fx.load(&[bin, PathBuf::from(LIB_CNI)]);
    let netns = fx.netns_path();
    let a = attachment(&fx.cid, &netns, &[]);

    let err = net.add(&a).await.expect_err("ADD must fail");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            CniError::PluginFailed {
                code: Some(111),
                ..
            }
        ),
        "unexpected error: {msg}"
    );
    assert!(
        msg.contains("fail-add")
            && msg.contains("refusing on purpose")
            && msg.contains("injected failure"),
        "error lacks plugin name or message: {msg}"
    );
    // bridge ran before the failure: the kernel shows its work.
    let (ok, text) = fx.eth0();
    assert!(
        ok && text.contains("inet "),
        "bridge did not configure eth0: {text}"
    );
    let net_dir = fx.ipam_dir().join(&fx.network);
    let allocated = |d: &Path| {
        std::fs::read_dir(d)
            .map(|it| {
                it.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().parse::<IpAddr>().is_ok())
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(allocated(&net_dir), 1, "host-local should hold one IP");
    assert!(
        !net.cache_path(&a).exists(),
        "a failed ADD must not be cached"
    );

    net.del(&a).await.expect("rollback DEL");
    let (ok, _) = sh("ip", &["-n", &fx.netns, "link", "show", "eth0"]);
    assert!(!ok, "eth0 survived the rollback");
    assert_eq!(allocated(&net_dir), 0, "IP leaked by the rollback");
}

#[tokio::test]
async fn missing_plugin_is_named_and_skipped_on_del() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("net.d");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(
        conf.join("10-x.conflist"),
        r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"no-such-plugin-ppt"}]}"#,
    )
    .expect("write");
    let netns = dir.path().join("fake-netns");
    std::fs::write(&netns, "").expect("write");
    let net = CniNetwork::load(&conf, &[dir.path().join("bin")], &dir.path().join("cache"))
        .expect("load")
        .expect("config");
    let a = attachment("c1", &netns, &[]);
    let err = net.add(&a).await.expect_err("ADD must fail");
    assert!(matches!(err, CniError::PluginNotFound { .. }), "{err}");
    assert!(err.to_string().contains("no-such-plugin-ppt"), "{err}");
    net.del(&a)
        .await
        .expect("DEL skips a plugin that is not installed");
}

fn pid_alive(pid: i32) -> bool {
    // A zombie is dead, only not yet reaped by its parent.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

#[tokio::test]
async fn hanging_plugin_is_killed_at_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let pids = dir.path().join("pids");
    write_script(
        &bin,
        "hang",
        &format!(
            "echo $$ > {p}.sh\nsleep 600 &\necho $! > {p}.sleep\nwait",
            p = pids.display()
        ),
    );
    let conf = dir.path().join("net.d");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(
        conf.join("a.conf"),
        r#"{"cniVersion":"1.0.0","name":"hang","type":"hang"}"#,
    )
    .expect("write");
    let netns = dir.path().join("fake-netns");
    std::fs::write(&netns, "").expect("write");
    let net = CniNetwork::load(&conf, &[bin], &dir.path().join("cache"))
        .expect("load")
        .expect("config")
        .with_exec_timeout(Duration::from_millis(1500));
    let a = attachment("c1", &netns, &[]);

    let started = Instant::now();
    let err = net.add(&a).await.expect_err("ADD must time out");
    assert!(matches!(err, CniError::PluginTimeout { .. }), "{err}");
    assert!(err.to_string().contains("\"hang\""), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    let read_pid = |suffix: &str| -> i32 {
        let p = PathBuf::from(format!("{}.{suffix}", pids.display()));
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .parse()
            .expect("pid")
    };
    let (sh_pid, sleep_pid) = (read_pid("sh"), read_pid("sleep"));
    let deadline = Instant::now() + Duration::from_secs(3);
    while (pid_alive(sh_pid) || pid_alive(sleep_pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!pid_alive(sh_pid), "plugin {sh_pid} still running");
    assert!(
        !pid_alive(sleep_pid),
        "plugin's child {sleep_pid} still running"
    );

    // A caller that gives up (a dropped request future) kills them too.
    std::fs::remove_file(format!("{}.sh", pids.display())).expect("rm");
    std::fs::remove_file(format!("{}.sleep", pids.display())).expect("rm");
    let patient = net.with_exec_timeout(Duration::from_secs(60));
    let dropped = tokio::time::timeout(Duration::from_millis(1500), patient.add(&a)).await;
    assert!(dropped.is_err(), "ADD should still be running");
    let (sh_pid, sleep_pid) = (read_pid("sh"), read_pid("sleep"));
    let deadline = Instant::now() + Duration::from_secs(3);
    while (pid_alive(sh_pid) || pid_alive(sleep_pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !pid_alive(sh_pid),
        "plugin {sh_pid} survived its dropped caller"
    );
    assert!(
        !pid_alive(sleep_pid),
        "plugin's child {sleep_pid} survived its dropped caller"
    );
}

/// Two scripted plugins, `rec-a` then `rec-b`, that record what they are
/// given (stdin, the CNI_ environment, the order of the calls) in `rec`.
struct RecordingPlugins {
    dir: tempfile::TempDir,
    bin: PathBuf,
    rec: PathBuf,
    netns: PathBuf,
    net: CniNetwork,
}

impl RecordingPlugins {
    fn new() -> RecordingPlugins {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        let rec = dir.path().join("rec");
        std::fs::create_dir_all(&rec).expect("mkdir");
        for name in ["rec-a", "rec-b"] {
            write_script(
                &bin,
                name,
                &format!(
                    r#"n=$(ls {rec} | wc -l)
cat > {rec}/$n-{name}-$CNI_COMMAND.json
env | grep '^CNI_' | sort > {rec}/$n-{name}-$CNI_COMMAND.env
[ "$CNI_COMMAND" = ADD ] || exit 0
echo '{{"cniVersion":"1.0.0","interfaces":[{{"name":"veth1"}},{{"name":"eth0","sandbox":"'$CNI_NETNS'"}}],"ips":[{{"address":"fd00::5/64","interface":1}},{{"address":"10.9.0.5/24","gateway":"10.9.0.1","interface":1}},{{"address":"10.9.9.9/24","interface":0}}]}}'"#,
                    rec = rec.display()
                ),
            );
        }
        let conf = dir.path().join("net.d");
        std::fs::create_dir_all(&conf).expect("mkdir");
        std::fs::write(
            conf.join("net.conflist"),
            json!({"cniVersion": "1.0.0", "name": "recnet", "plugins": [
                {"type": "rec-a", "name": "ignored", "cniVersion": "0.3.1",
                 "capabilities": {"portMappings": true, "ipRanges": true, "bandwidth": true}},
                {"type": "rec-b", "capabilities": {"portMappings": false}}
            ]})
            .to_string(),
        )
        .expect("write");
        let netns = dir.path().join("fake-netns");
        std::fs::write(&netns, "").expect("write");
        let cache = dir.path().join("cache");
        let net = CniNetwork::load(&conf, &[dir.path().join("nope"), bin.clone()], &cache)
            .expect("load")
            .expect("config");
        RecordingPlugins {
            dir,
            bin,
            rec,
            netns,
            net,
        }
    }

    /// What the `n`th call, to plugin `name` with `cmd`, got on stdin and
    /// in its environment.
    fn read(&self, n: usize, name: &str, cmd: &str) -> (Value, String) {
        let base = self.rec.join(format!("{n}-{name}-{cmd}"));
        let stdin = std::fs::read(base.with_extension("json")).expect("stdin record");
        let env = std::fs::read_to_string(base.with_extension("env")).expect("env record");
        (serde_json::from_slice(&stdin).expect("stdin is JSON"), env)
    }
}

/// A scripted plugin records what it was given: env, stdin, order.
#[tokio::test]
async fn plugins_get_the_spec_env_and_config() {
    let plugins = RecordingPlugins::new();
    let (net, netns) = (&plugins.net, &plugins.netns);
    let ports = [PortMapping {
        protocol: "SCTP".into(),
        container_port: 9,
        host_port: 9009,
        host_ip: "192.0.2.7".into(),
    }];
    let mut a = attachment("cid1", netns, &ports);
    a.pod_cidr = Some("10.9.0.0/16");

    let result = net.add(&a).await.expect("ADD");
    assert_eq!(
        result.ips,
        vec![
            "10.9.0.5".parse::<IpAddr>().unwrap(),
            "fd00::5".parse().unwrap()
        ]
    );
    let cached: Value =
        serde_json::from_slice(&std::fs::read(net.cache_path(&a)).expect("cache file"))
            .expect("cache JSON");
    assert_eq!(cached["result"], result.raw);
    // DEL with the bare sandbox id still hands plugins the ADD's values.
    let mut bare = attachment("cid1", netns, &[]);
    bare.pod_cidr = None;
    net.del(&bare).await.expect("DEL");

    // Records are numbered in exec order: ADD a, b; DEL b, a.
    let (a_add, env) = plugins.read(0, "rec-a", "ADD");
    assert_eq!(a_add["name"], "recnet");
    assert_eq!(a_add["cniVersion"], "1.0.0");
    assert!(a_add.get("prevResult").is_none());
    assert_eq!(
        a_add["runtimeConfig"],
        json!({
            "portMappings": [{"hostPort": 9009, "containerPort": 9, "protocol": "sctp", "hostIP": "192.0.2.7"}],
            "ipRanges": [[{"subnet": "10.9.0.0/16"}]]
        })
    );
    let expected_env = format!(
        "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=cid1;K8S_POD_UID=0b7c9a52-1d8e-4a4b-9f0e-5d2c7e9b6a11\n\
         CNI_COMMAND=ADD\nCNI_CONTAINERID=cid1\nCNI_IFNAME=eth0\nCNI_NETNS={}\nCNI_PATH={}:{}\n",
        netns.display(),
        plugins.dir.path().join("nope").display(),
        plugins.bin.display()
    );
    assert_eq!(env, expected_env);

    let (b_add, _) = plugins.read(2, "rec-b", "ADD");
    assert!(b_add.get("runtimeConfig").is_none(), "{b_add}");
    assert_eq!(b_add["prevResult"]["ips"][1]["address"], "10.9.0.5/24");

    let (b_del, env) = plugins.read(4, "rec-b", "DEL");
    assert_eq!(b_del["prevResult"], result.raw);
    // Not a mounted netns: DEL goes without one, as the spec allows.
    assert!(env.contains("CNI_NETNS=\n"), "{env}");
    let (a_del, _) = plugins.read(6, "rec-a", "DEL");
    assert_eq!(a_del["prevResult"], result.raw);
    assert_eq!(a_del["runtimeConfig"], a_add["runtimeConfig"]);
    assert!(!net.cache_path(&a).exists());

    // Second DEL: no cache, so no prevResult and the caller's values.
    net.del(&a).await.expect("second DEL");
    let (b_del2, _) = plugins.read(8, "rec-b", "DEL");
    assert!(b_del2.get("prevResult").is_none());
    let (a_del2, _) = plugins.read(10, "rec-a", "DEL");
    assert_eq!(a_del2["runtimeConfig"], a_add["runtimeConfig"]);
}

#[test]
fn invalid_attachment_names_are_rejected() {
    let p = Path::new("/x");
    let mut a = attachment("../etc", p, &[]);
    assert!(matches!(
        validate(&a),
        Err(CniError::InvalidArgument {
            field: "container_id",
            ..
        })
    ));
    a.container_id = "ok";
    a.pod_name = "a;K8S_POD_UID=x";
    assert!(matches!(
        validate(&a),
        Err(CniError::InvalidArgument {
            field: "pod_name",
            ..
        })
    ));
}

#[test]
fn plugin_binaries_include_ipam_and_missing_ones_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (conf, bin) = (dir.path().join("net.d"), dir.path().join("bin"));
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::fs::write(
        conf.join("10-x.conflist"),
        r#"{"cniVersion":"1.0.0","name":"x","plugins":[
            {"type":"bridge","ipam":{"type":"host-local"}},
            {"type":"portmap"},
            {"type":"bridge","ipam":{"type":"host-local"}}]}"#,
    )
    .expect("write");
    write_script(&bin, "bridge", "exit 0");
    let net = CniNetwork::load(&conf, std::slice::from_ref(&bin), &dir.path().join("cache"))
        .expect("load")
        .expect("config");
    assert_eq!(net.plugin_binaries(), ["bridge", "host-local", "portmap"]);
    assert_eq!(net.missing_plugins(), ["host-local", "portmap"]);
    assert_eq!(net.bin_dirs(), [bin]);
}
