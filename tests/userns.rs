//! Pods with a user namespace of their own (`hostUsers: false`): what the
//! kernel shows of the mappings, the namespaces' owner, the owners of the
//! root filesystem's and the volumes' files through id-mapped mounts, and
//! what is refused before anything is made.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::containers::*;
use common::*;
use peapod::api;
use tonic::Code;

/// Host ids as kubelet 1.32 picks them: 65536 ids at a multiple of 65536.
const UID_BASE: u32 = 65536 * 41;
const GID_BASE: u32 = 65536 * 42;
const LENGTH: u32 = 65536;

fn mapping(host_id: u32) -> api::IdMapping {
    api::IdMapping {
        host_id,
        container_id: 0,
        length: LENGTH,
    }
}

fn pod_userns() -> api::UserNamespace {
    api::UserNamespace {
        mode: api::NamespaceMode::Pod as i32,
        uids: vec![mapping(UID_BASE)],
        gids: vec![mapping(GID_BASE)],
    }
}

/// A pod config with its own user namespace, a hostname and namespaced
/// sysctls.
fn userns_pod_config(d: &TestDaemon, name: &str) -> api::PodSandboxConfig {
    let mut c = d.pod_config(name);
    pod_namespace_options(&mut c).userns_options = Some(pod_userns());
    let sysctls = &mut c.linux.as_mut().unwrap().sysctls;
    sysctls.insert("net.ipv4.ip_unprivileged_port_start".into(), "81".into());
    sysctls.insert("kernel.shmmni".into(), "2048".into());
    // As kubelet sets it: every group, narrowed to the pod's own.
    sysctls.insert("net.ipv4.ping_group_range".into(), "0 2147483647".into());
    c
}

/// A container config as kubelet sends it in such a pod: the pod's user
/// namespace repeated.
fn userns_container(d: &TestDaemon, name: &str, image: &str, cmd: &[&str]) -> api::ContainerConfig {
    let mut c = d.container_config(name, image, cmd);
    container_namespace_options(&mut c).userns_options = Some(pod_userns());
    c
}

fn bind(host: &Path, container: &str) -> api::Mount {
    api::Mount {
        container_path: container.into(),
        host_path: host.to_string_lossy().into_owned(),
        ..Default::default()
    }
}

/// `/proc/<pid>/<file>` as `(container, host, length)` lines, whitespace
/// normalised.
fn id_map(pid: i32, file: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
    normalise(&text)
}

fn normalise(text: &str) -> String {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The inode of the user namespace that owns `/proc/<pid>/ns/<ns>`, read
/// with the NS_GET_USERNS ioctl.
fn owner_of(pid: i32, ns: &str) -> String {
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    let f = std::fs::File::open(format!("/proc/{pid}/ns/{ns}")).unwrap();
    // SAFETY: the ioctl takes no argument and returns a new descriptor.
    let fd = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_USERNS) };
    assert!(
        fd >= 0,
        "NS_GET_USERNS on {ns}: {}",
        std::io::Error::last_os_error()
    );
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
    // SAFETY: closing the descriptor the ioctl gave us.
    unsafe { libc::close(fd) };
    link.to_string_lossy().into_owned()
}

fn owner(path: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid())
}

/// A host directory for a volume: a file owned by host root and an empty
/// directory anyone may write to.
fn host_volume(d: &TestDaemon) -> std::path::PathBuf {
    let vol = d.dir.path().join("volume");
    std::fs::create_dir_all(vol.join("shared")).unwrap();
    std::fs::set_permissions(
        vol.join("shared"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::write(vol.join("host-file"), "from the host\n").unwrap();
    vol
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_with_its_own_user_namespace() {
    let d = TestDaemon::start();
    let image = d.pull("busybox:latest").await;
    let pod = d.pod_with(userns_pod_config(&d, "userns")).await;
    let infra = d.infra_pid(&pod.id).await;

    // The infra process: exactly the mappings sent, and every namespace
    // of the pod owned by its new user namespace.
    assert_eq!(id_map(infra, "uid_map"), format!("0 {UID_BASE} {LENGTH}"));
    assert_eq!(id_map(infra, "gid_map"), format!("0 {GID_BASE} {LENGTH}"));
    let userns = ns_link(&infra.to_string(), "user");
    assert_ne!(userns, ns_link("self", "user"), "not a new user namespace");
    for ns in ["net", "ipc", "uts", "pid"] {
        assert_eq!(owner_of(infra, ns), userns, "{ns} namespace's owner");
    }

    let vol = host_volume(&d);
    let mut c = userns_container(
        &d,
        "app",
        &image,
        &["sh", "-c", "echo hello from the pod; sleep 1000"],
    );
    c.mounts = vec![bind(&vol, "/vol")];
    let id = d.run(&pod, c).await;
    let pid = d.cpid(&id).await;

    // The container is in the pod's user namespace, and the kernel shows
    // it the same mappings.
    assert_eq!(ns_link(&pid.to_string(), "user"), userns);
    assert_eq!(id_map(pid, "uid_map"), format!("0 {UID_BASE} {LENGTH}"));
    assert_eq!(
        normalise(&d.exec_ok(&id, &["cat", "/proc/self/uid_map"]).await),
        format!("0 {UID_BASE} {LENGTH}")
    );
    assert_eq!(
        normalise(&d.exec_ok(&id, &["cat", "/proc/self/gid_map"]).await),
        format!("0 {GID_BASE} {LENGTH}")
    );
    // Root inside is the mapped ids outside, and ContainerStatus agrees
    // with what the process sees.
    let st = proc_status(pid);
    assert_eq!(
        st["Uid"].split_whitespace().next(),
        Some(&*UID_BASE.to_string())
    );
    assert_eq!(
        st["Gid"].split_whitespace().next(),
        Some(&*GID_BASE.to_string())
    );
    assert_eq!(d.exec_ok(&id, &["id", "-u"]).await, "0\n");
    let user = d.cstatus(&id).await.user.unwrap().linux.unwrap();
    assert_eq!((user.uid, user.gid), (0, 0));

    // Owners through the id-mapped root filesystem and volume: the
    // image's root-owned files and the host's root-owned file are root's.
    for path in ["/bin/busybox", "/etc/passwd", "/", "/vol/host-file"] {
        assert_eq!(
            d.exec_ok(&id, &["stat", "-c", "%u:%g", path]).await,
            "0:0\n",
            "{path}"
        );
    }
    assert_eq!(
        d.exec_ok(&id, &["cat", "/vol/host-file"]).await,
        "from the host\n"
    );

    // Written by the container's root: on the volume, through the
    // id-mapped mount, the file is the host's root's as it is the
    // container's; in the writable layer it is the mapped host ids.
    d.exec_ok(
        &id,
        &[
            "sh",
            "-c",
            "echo a > /vol/shared/by-root; echo b > /in-rootfs",
        ],
    )
    .await;
    assert_eq!(owner(&vol.join("shared/by-root")), (0, 0));
    let upper = d.cinfo(&id).await["upperDir"].as_str().unwrap().to_string();
    assert_eq!(
        owner(&Path::new(&upper).join("in-rootfs")),
        (UID_BASE, GID_BASE)
    );

    // Another user of the pod writes with its own id on both sides.
    let mut c = userns_container(
        &d,
        "other",
        &image,
        &["sh", "-c", "echo c > /vol/shared/by-1234; sleep 1000"],
    );
    container_security(&mut c).run_as_user = Some(api::Int64Value { value: 1234 });
    // Its own mappings on one mount (0..1000 on disk are 1000..1999 in the
    // container), and the image as a read-only volume, stacked from
    // id-mapped layers.
    let mut mapped = bind(&vol, "/mapped");
    let own = api::IdMapping {
        host_id: UID_BASE + 1000,
        container_id: 0,
        length: 1000,
    };
    mapped.uid_mappings = vec![own];
    mapped.gid_mappings = vec![api::IdMapping {
        host_id: GID_BASE + 1000,
        ..own
    }];
    let image_volume = api::Mount {
        container_path: "/image".into(),
        image: Some(api::ImageSpec {
            image: image.clone(),
            ..Default::default()
        }),
        readonly: true,
        ..Default::default()
    };
    c.mounts = vec![bind(&vol, "/vol"), mapped, image_volume];
    let other = d.run(&pod, c).await;
    assert_eq!(
        d.exec_ok(&other, &["stat", "-c", "%u:%g", "/mapped/host-file"])
            .await,
        "1000:1000\n"
    );
    assert_eq!(
        d.exec_ok(&other, &["stat", "-c", "%u:%g", "/image/bin/busybox"])
            .await,
        "0:0\n"
    );
    let write = d.exec(&other, &["touch", "/image/x"], 10).await.unwrap();
    assert_ne!(write.exit_code, 0, "the image volume is writable");
    eventually("the file of uid 1234", || {
        vol.join("shared/by-1234").exists()
    })
    .await;
    assert_eq!(owner(&vol.join("shared/by-1234")).0, 1234);
    assert_eq!(
        proc_status(d.cpid(&other).await)["Uid"]
            .split_whitespace()
            .next(),
        Some(&*(UID_BASE + 1234).to_string())
    );

    // The pod's hostname and namespaced sysctls hold inside it.
    assert_eq!(d.exec_ok(&id, &["hostname"]).await, "userns\n");
    assert_eq!(
        d.exec_ok(
            &id,
            &["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]
        )
        .await,
        "81\n"
    );
    assert_eq!(
        d.exec_ok(&id, &["cat", "/proc/sys/kernel/shmmni"]).await,
        "2048\n"
    );
    assert_eq!(
        normalise(
            &d.exec_ok(&id, &["cat", "/proc/sys/net/ipv4/ping_group_range"])
                .await
        ),
        format!("0 {}", LENGTH - 1)
    );

    // Logs and stats as in any pod.
    let log = Path::new(&pod.log_dir()).join("app/0.log");
    let lines = read_log(&log);
    assert_eq!(log_text(&lines, "stdout"), ["hello from the pod"]);
    let stats = d
        .runtime()
        .await
        .container_stats(api::ContainerStatsRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert!(stats.memory.unwrap().working_set_bytes.unwrap().value > 0);

    // Stop and removal leave nothing behind, id-mapped mounts included.
    for c in [&id, &other] {
        d.stop_container(c, 0).await;
        d.remove_container(c).await;
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&id) && !mounts.contains(&other),
        "{mounts}"
    );
    d.assert_no_containers_left();
    remove_pod(&d, &pod).await;
    d.assert_nothing_left(&pod.cgroup_parent());
}

async fn remove_pod(d: &TestDaemon, pod: &Pod) {
    let mut rt = d.runtime().await;
    rt.stop_pod_sandbox(api::StopPodSandboxRequest {
        pod_sandbox_id: pod.id.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(api::RemovePodSandboxRequest {
        pod_sandbox_id: pod.id.clone(),
    })
    .await
    .unwrap();
}

fn invalid_field(e: tonic::Status) -> String {
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    e.message().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_user_namespace_requests_create_nothing() {
    let d = TestDaemon::start();
    const NS: &str = "config.linux.security_context.namespace_options";
    type Spoil = Box<dyn Fn(&mut api::NamespaceOption)>;
    let cases: Vec<(Spoil, String)> = vec![
        (
            Box::new(|ns| {
                ns.userns_options.as_mut().unwrap().mode = api::NamespaceMode::Container as i32
            }),
            format!("{NS}.userns_options.mode"),
        ),
        (
            Box::new(|ns| {
                ns.userns_options.as_mut().unwrap().mode = api::NamespaceMode::Target as i32
            }),
            format!("{NS}.userns_options.mode"),
        ),
        (
            Box::new(|ns| {
                let u = ns.userns_options.as_mut().unwrap();
                u.uids.push(api::IdMapping {
                    host_id: UID_BASE + LENGTH,
                    container_id: LENGTH,
                    length: 10,
                });
            }),
            format!("{NS}.userns_options.uids"),
        ),
        (
            Box::new(|ns| ns.userns_options.as_mut().unwrap().gids[0].container_id = 1),
            format!("{NS}.userns_options.gids"),
        ),
        (
            Box::new(|ns| ns.userns_options.as_mut().unwrap().uids.clear()),
            format!("{NS}.userns_options.uids"),
        ),
        (
            Box::new(|ns| ns.network = api::NamespaceMode::Node as i32),
            format!("{NS}.network"),
        ),
    ];
    let mut rt = d.runtime().await;
    for (spoil, field) in cases {
        let mut c = userns_pod_config(&d, "bad");
        spoil(pod_namespace_options(&mut c));
        let e = rt
            .run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(c),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_err();
        let message = invalid_field(e);
        assert!(message.starts_with(&field), "{field}: {message}");
    }
    assert!(d.list_ids().await.is_empty());
    d.assert_nothing_left(&d.cgroup_parent);

    // A container cannot leave its pod's user namespace, nor id-map a
    // mount in a pod without one.
    let image = d.pull("busybox:latest").await;
    let pod = d.pod_with(userns_pod_config(&d, "pod")).await;
    let mut c = d.container_config("host-users", &image, &["sleep", "1000"]);
    container_namespace_options(&mut c).userns_options = Some(api::UserNamespace {
        mode: api::NamespaceMode::Node as i32,
        ..Default::default()
    });
    let message = invalid_field(d.try_create(&pod, c).await.unwrap_err());
    assert!(
        message.starts_with(&format!("{NS}.userns_options")),
        "{message}"
    );
    let plain = d.pod("plain").await;
    let mut c = d.container_config("idmapped", &image, &["sleep", "1000"]);
    let mut m = bind(d.dir.path(), "/x");
    m.uid_mappings = vec![mapping(UID_BASE)];
    m.gid_mappings = vec![mapping(GID_BASE)];
    c.mounts = vec![m];
    let message = invalid_field(d.try_create(&plain, c).await.unwrap_err());
    assert!(
        message.starts_with("config.mounts[0].uidMappings"),
        "{message}"
    );
    assert!(d.list_containers(None).await.is_empty());
    d.assert_no_containers_left();
    d.remove_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_that_cannot_be_idmapped_is_refused_with_its_path() {
    let d = TestDaemon::start();
    let image = d.pull("busybox:latest").await;
    let pod = d.pod_with(userns_pod_config(&d, "overlay-volume")).await;
    // overlayfs cannot be id-mapped: a host path on one is refused.
    let base = d.dir.path().join("ovl");
    for dir in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir_all(base.join(dir)).unwrap();
    }
    let options = format!(
        "lowerdir={0}/lower,upperdir={0}/upper,workdir={0}/work",
        base.display()
    );
    sh(
        "mount",
        &[
            "-t",
            "overlay",
            "overlay",
            "-o",
            &options,
            &base.join("merged").to_string_lossy(),
        ],
    );
    let mut c = userns_container(&d, "app", &image, &["sleep", "1000"]);
    c.mounts = vec![bind(&base.join("merged"), "/data")];
    let e = d.try_create(&pod, c).await.unwrap_err();
    sh("umount", &[&base.join("merged").to_string_lossy()]);
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message()
            .contains(&*base.join("merged").to_string_lossy()),
        "{e:?}"
    );
    // Nothing of the container is left: no record, directory or mount.
    assert!(d.list_containers(None).await.is_empty());
    d.assert_no_containers_left();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let containers = d.state.join("containers");
    assert!(!mounts.contains(&*containers.to_string_lossy()), "{mounts}");
    d.remove_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_says_user_namespaces_work_and_where_the_state_is() {
    let d = TestDaemon::start();
    let st = d.runtime_status(true).await;
    assert!(!st.runtime_handlers.is_empty());
    for h in &st.runtime_handlers {
        let f = h.features.unwrap();
        assert!(f.user_namespaces, "{h:?}");
    }
    let config: serde_json::Value = serde_json::from_str(&st.info["config"]).unwrap();
    assert_eq!(config["stateDir"], d.state.to_string_lossy().as_ref());
    let features = st.features.unwrap();
    assert!(features.supplemental_groups_policy);
    assert!(!features.user_namespaces_host_network);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_namespaced_container_survives_a_daemon_restart() {
    let mut d = TestDaemon::start();
    let image = d.pull("busybox:latest").await;
    let pod = d.pod_with(userns_pod_config(&d, "restart")).await;
    let id = d
        .run(
            &pod,
            userns_container(&d, "app", &image, &["sleep", "1000"]),
        )
        .await;
    let pid = d.cpid(&id).await;
    d.kill9();
    d.spawn();
    assert_eq!(d.cpid(&id).await, pid);
    assert_eq!(
        d.exec_ok(&id, &["stat", "-c", "%u", "/bin/busybox"]).await,
        "0\n"
    );
    d.stop_container(&id, 0).await;
    d.remove_container(&id).await;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&id), "{mounts}");
    d.assert_no_containers_left();
    remove_pod(&d, &pod).await;
    d.assert_nothing_left(&pod.cgroup_parent());
}

#[tokio::test(flavor = "multi_thread")]
async fn node_mode_keeps_the_hosts_user_namespace() {
    let d = TestDaemon::start();
    let image = d.pull("busybox:latest").await;
    let node = api::UserNamespace {
        mode: api::NamespaceMode::Node as i32,
        ..Default::default()
    };
    let mut config = d.pod_config("host-users");
    pod_namespace_options(&mut config).userns_options = Some(node.clone());
    let pod = d.pod_with(config).await;
    let mut c = d.container_config("app", &image, &["sleep", "1000"]);
    container_namespace_options(&mut c).userns_options = Some(node);
    let id = d.run(&pod, c).await;
    let host = ns_link("self", "user");
    let infra = d.infra_pid(&pod.id).await;
    let pid = d.cpid(&id).await;
    for p in [infra, pid] {
        assert_eq!(ns_link(&p.to_string(), "user"), host);
        assert_eq!(id_map(p, "uid_map"), "0 0 4294967295");
    }
    assert_eq!(proc_status(pid)["Uid"].split_whitespace().next(), Some("0"));
    d.remove_all().await;
}

/// critest's "runtime should support NamespaceMode_POD": a pod whose
/// namespace options hold nothing but the user namespace (so PID mode POD
/// too), 100000 ids at host id 1000, and a container repeating the pod's
/// options that prints its uid_map to its log.
#[tokio::test(flavor = "multi_thread")]
async fn critests_user_namespace_pod() {
    let d = TestDaemon::start();
    let image = d.pull("busybox:latest").await;
    let mapping = vec![api::IdMapping {
        host_id: 1000,
        container_id: 0,
        length: 100000,
    }];
    let options = api::NamespaceOption {
        userns_options: Some(api::UserNamespace {
            mode: api::NamespaceMode::Pod as i32,
            uids: mapping.clone(),
            gids: mapping,
        }),
        ..Default::default()
    };
    let mut config = d.pod_config("critest-userns");
    *pod_namespace_options(&mut config) = options.clone();
    let pod = d.pod_with(config).await;
    let mut c = d.container_config("uid-map", &image, &["cat", "/proc/self/uid_map"]);
    *container_namespace_options(&mut c) = options;
    let id = d.run(&pod, c).await;
    let status = d.wait_exit(&id, std::time::Duration::from_secs(30)).await;
    assert_eq!(status.exit_code, 0, "{status:?}");
    let log = Path::new(&pod.log_dir()).join("uid-map/0.log");
    let lines = read_log(&log);
    assert_eq!(
        log_text(&lines, "stdout")
            .iter()
            .map(|l| normalise(l))
            .collect::<Vec<_>>(),
        ["0 1000 100000"]
    );
    d.remove_all().await;
    d.assert_no_containers_left();
}
