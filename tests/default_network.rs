//! peapod's default network, used while the CNI conf dir is empty: what
//! Status says, the pod's address on the default bridge as the kernel
//! shows it, a config file taking over for new pods, a restart, and that
//! removal frees the address, the veth and the masquerade rule. Each test
//! gives the default network a bridge and subnet of its own.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use peapod::api;
use tonic::Code;

const DEFAULT_NAME: &str = "peapod-default";

/// A bridge and /24 of one test's own, deleted by name when dropped.
struct DefaultNet {
    bridge: String,
    prefix: String,
}

impl DefaultNet {
    fn new() -> DefaultNet {
        let r = rand_hex(6);
        let n = u32::from_str_radix(&r[..4], 16).unwrap();
        // 10.150-199.x: apart from the harness's test networks (10.200-249).
        DefaultNet {
            bridge: format!("ppd{r}"),
            prefix: format!("10.{}.{}", 150 + (n >> 8) % 50, n & 0xff),
        }
    }

    fn subnet(&self) -> String {
        format!("{}.0/24", self.prefix)
    }

    /// The `[cni]` section that puts the default network on this bridge
    /// and subnet, plus `extra` lines.
    fn config(&self, extra: &str) -> String {
        format!(
            "[cni]\ndefault_bridge = {:?}\ndefault_subnet = {:?}\n{extra}",
            self.bridge,
            self.subnet()
        )
    }
}

impl Drop for DefaultNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
    }
}

fn require_tools() {
    for tool in ["ping", "iptables"] {
        assert!(
            which(tool),
            "{tool} not found: install iputils-ping and iptables (hack/install-deps.sh)"
        );
    }
}

/// A daemon with an empty conf dir and `config` as its config file.
fn start(config: &str, cni_bin_dir: Option<String>) -> (tempfile::TempDir, TestDaemon) {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let d = TestDaemon::start_with(Options {
        cni: false,
        cni_bin_dir,
        extra_args: vec!["--config".into(), path.to_string_lossy().into_owned()],
        ..Default::default()
    });
    (dir, d)
}

async fn network_condition(d: &TestDaemon) -> api::RuntimeCondition {
    let s = d.runtime_status(false).await;
    s.status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .expect("a NetworkReady condition")
}

/// The pod's IP and netns file, from PodSandboxStatus.
async fn pod_ip_and_netns(d: &TestDaemon, id: &str) -> (String, String) {
    let st = d.status(id).await;
    let info: serde_json::Value = serde_json::from_str(&st.info["info"]).unwrap();
    let ip = st.status.unwrap().network.unwrap().ip;
    (ip, info["netns"].as_str().unwrap().to_string())
}

fn in_netns(netns: &str, args: &[&str]) -> String {
    let mut all = vec![format!("--net={netns}")];
    all.extend(args.iter().map(|a| a.to_string()));
    sh(
        "nsenter",
        &all.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

/// The links enslaved to `bridge` (the pods' host-side veths).
fn bridge_ports(bridge: &str) -> Vec<String> {
    sh("ip", &["-o", "link", "show", "master", bridge])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect()
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// host-local's allocation file of `ip` on the default network.
fn allocation(d: &TestDaemon, ip: &str) -> PathBuf {
    d.root.join("cni-ipam").join(DEFAULT_NAME).join(ip)
}

/// Whether a NAT rule mentions the pod (bridge's ipMasq comments name it).
fn nat_rules_mention(id: &str) -> bool {
    sh("iptables", &["-t", "nat", "-S"]).contains(id)
}

/// Asserts the pod is on the default network: its address in the subnet
/// on eth0, loopback up, a port of the default bridge, which holds the
/// gateway, and the host reaches it.
fn assert_on_default_network(net: &DefaultNet, ip: &str, netns: &str) {
    assert!(
        ip.starts_with(&format!("{}.", net.prefix)),
        "pod ip {ip} not in {}",
        net.subnet()
    );
    let eth0 = in_netns(netns, &["ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(eth0.contains(&format!("{ip}/24")), "{eth0}");
    let lo = in_netns(netns, &["ip", "-o", "link", "show", "lo"]);
    assert!(lo.contains("UP"), "{lo}");
    let route = in_netns(netns, &["ip", "-4", "route", "show", "default"]);
    assert!(route.contains(&format!("via {}.1", net.prefix)), "{route}");
    let gateway = sh("ip", &["-o", "-4", "addr", "show", "dev", &net.bridge]);
    assert!(
        gateway.contains(&format!("{}.1/24", net.prefix)),
        "{gateway}"
    );
    assert!(
        !bridge_ports(&net.bridge).is_empty(),
        "no veth on {}",
        net.bridge
    );
    sh("ping", &["-c", "1", "-W", "2", ip]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_conf_dir_gives_pods_the_default_network() {
    let net = DefaultNet::new();
    let (_cfg, d) = start(&net.config(""), None);

    let cond = network_condition(&d).await;
    assert!(cond.status, "{cond:?}");
    assert_eq!(cond.reason, "", "a true condition has no reason");
    for part in [DEFAULT_NAME, net.bridge.as_str(), &net.subnet()] {
        assert!(
            cond.message.contains(part),
            "{part} not in {:?}",
            cond.message
        );
    }

    let id = d.run_pod(d.pod_config("dflt")).await;
    let (ip, netns) = pod_ip_and_netns(&d, &id).await;
    assert_on_default_network(&net, &ip, &netns);
    let info: serde_json::Value = serde_json::from_str(&d.status(&id).await.info["info"]).unwrap();
    assert_eq!(info["cniNetwork"], DEFAULT_NAME);
    // host-local keeps its allocations under peapod's root dir, and
    // bridge masquerades the pod's traffic.
    assert!(
        allocation(&d, &ip).exists(),
        "{} missing",
        allocation(&d, &ip).display()
    );
    assert!(nat_rules_mention(&id), "no masquerade rule for {id}");

    d.remove_all().await;
    assert!(
        !allocation(&d, &ip).exists(),
        "address {ip} still allocated"
    );
    assert!(!nat_rules_mention(&id), "masquerade rule of {id} left");
    assert!(
        bridge_ports(&net.bridge).is_empty(),
        "veth left on {}",
        net.bridge
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_file_takes_over_for_new_pods_and_default_pods_survive_a_restart() {
    let net = DefaultNet::new();
    let (_cfg, mut d) = start(&net.config(""), None);
    let first = d.run_pod(d.pod_config("first")).await;
    let (first_ip, first_netns) = pod_ip_and_netns(&d, &first).await;
    assert_on_default_network(&net, &first_ip, &first_netns);
    let ports = bridge_ports(&net.bridge);
    assert_eq!(ports.len(), 1, "{ports:?}");
    let first_veth = ports[0].clone();

    // A config file appears: Status names it and the next pod joins it.
    d.write_network();
    let file = d.cni_conf_dir.join("10-test.conflist");
    let cond = network_condition(&d).await;
    assert!(cond.status, "{cond:?}");
    for part in ["peapod-test", file.to_str().unwrap()] {
        assert!(
            cond.message.contains(part),
            "{part} not in {:?}",
            cond.message
        );
    }
    let second = d.run_pod(d.pod_config("second")).await;
    let (second_ip, _) = pod_ip_and_netns(&d, &second).await;
    let test_net = d.network.as_ref().unwrap();
    assert!(
        second_ip.starts_with(&format!("{}.", test_net.subnet_prefix)),
        "second pod {second_ip} is not on the config file's network"
    );
    assert_eq!(d.allocated_ips(), vec![second_ip.clone()]);

    // The first pod keeps its network across a restart of the daemon.
    d.kill9();
    d.spawn();
    assert_eq!(
        d.status(&first).await.status.unwrap().state,
        api::PodSandboxState::SandboxReady as i32
    );
    assert_eq!(pod_ip_and_netns(&d, &first).await.0, first_ip);
    sh("ping", &["-c", "1", "-W", "2", &first_ip]);

    // Its removal goes to the network it was created on, not the file's.
    d.runtime()
        .await
        .remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: first.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("RemovePodSandbox: {e:?}\n{}", d.log_text()));
    assert!(
        !allocation(&d, &first_ip).exists(),
        "address {first_ip} still allocated"
    );
    assert!(!link_exists(&first_veth), "veth {first_veth} left");
    assert!(
        bridge_ports(&net.bridge).is_empty(),
        "veth left on {}",
        net.bridge
    );
    assert!(
        !nat_rules_mention(&first),
        "masquerade rule of {first} left"
    );
    let cache = d
        .root
        .join("cni-cache")
        .join(format!("{DEFAULT_NAME}-{first}-eth0"));
    assert!(!cache.exists(), "{} left", cache.display());
    assert_eq!(
        d.allocated_ips(),
        vec![second_ip],
        "the file's pod was touched"
    );

    d.remove_all().await;
    assert!(d.allocated_ips().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn default_network_off_leaves_the_network_not_ready() {
    let net = DefaultNet::new();
    let (_cfg, d) = start(&net.config("default_network = false\n"), None);
    let cond = network_condition(&d).await;
    assert!(!cond.status, "{cond:?}");
    assert_eq!(cond.reason, "NetworkPluginNotReady");
    assert!(
        cond.message.contains("cni.default_network"),
        "{}",
        cond.message
    );
    let err = d
        .runtime()
        .await
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(d.pod_config("nonet")),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("cni.default_network"),
        "{}",
        err.message()
    );
    assert!(!link_exists(&net.bridge), "bridge {} created", net.bridge);

    // A config file may not take the default network's name.
    std::fs::write(
        d.cni_conf_dir.join("10-mine.conflist"),
        format!(
            r#"{{"cniVersion":"1.0.0","name":"{DEFAULT_NAME}","plugins":[{{"type":"bridge"}}]}}"#
        ),
    )
    .unwrap();
    let cond = network_condition(&d).await;
    assert!(!cond.status, "{cond:?}");
    assert!(
        cond.message.contains("10-mine.conflist") && cond.message.contains("another name"),
        "{}",
        cond.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_plugin_of_the_default_network_is_named() {
    let bin = tempfile::tempdir().unwrap();
    for plugin in ["bridge", "host-local", "loopback"] {
        std::os::unix::fs::symlink(Path::new(CNI_BIN_DIR).join(plugin), bin.path().join(plugin))
            .unwrap();
    }
    let net = DefaultNet::new();
    let (_cfg, d) = start(
        &net.config(""),
        Some(bin.path().to_string_lossy().into_owned()),
    );
    let cond = network_condition(&d).await;
    assert!(!cond.status, "{cond:?}");
    assert_eq!(cond.reason, "NetworkPluginNotReady");
    assert!(cond.message.contains("\"portmap\""), "{}", cond.message);
    let err = d
        .runtime()
        .await
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(d.pod_config("noportmap")),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("portmap"), "{}", err.message());
}
