//! What a container is allowed and what it shares, as the kernel shows it:
//! the pod's namespaces and localhost, users and groups, capabilities,
//! seccomp, a read-only rootfs, masked paths, mounts and propagation,
//! devices, host namespaces and `kubectl debug --target`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::containers::*;
use common::*;
use peapod::api;
use tonic::Code;

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn sc(c: &mut api::ContainerConfig) -> &mut api::LinuxContainerSecurityContext {
    c.linux.as_mut().unwrap().security_context.as_mut().unwrap()
}

fn capability_mask(bits: &[u32]) -> u64 {
    bits.iter().fold(0, |m, b| m | (1u64 << b))
}

/// CapEff etc. from /proc as a number.
fn caps(pid: i32, set: &str) -> u64 {
    u64::from_str_radix(&proc_status(pid)[set], 16).unwrap()
}

/// The mount options of `target` in the process's mount namespace.
fn mount_options(pid: i32, target: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .rev()
        .find(|l| l.split(' ').nth(4) == Some(target))
        .map(|l| l.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_of_a_pod_share_its_namespaces_and_localhost_others_do_not() {
    let d = TestDaemon::start();
    let image = d.pull("busybox:latest").await;
    let mut pc = d.pod_config("shared");
    pc.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .pid = api::NamespaceMode::Pod as i32;
    let pod = d.pod_with(pc).await;
    let other = d.pod("other").await;

    let mut web = d.container_config("web", &image, &[]);
    web.command = sh("mkdir -p /www && echo hello-from-web > /www/index.html && echo shm > /dev/shm/note && exec httpd -f -p 8080 -h /www");
    sc(&mut web).namespace_options.as_mut().unwrap().pid = api::NamespaceMode::Pod as i32;
    let web = d.run(&pod, web).await;
    let mut side = d.container_config("side", &image, &["sleep", "1000"]);
    sc(&mut side).namespace_options.as_mut().unwrap().pid = api::NamespaceMode::Pod as i32;
    let side = d.run(&pod, side).await;
    let stranger = d
        .run(
            &other,
            d.container_config("stranger", &image, &["sleep", "1000"]),
        )
        .await;
    let (pw, ps, po) = (
        d.cpid(&web).await,
        d.cpid(&side).await,
        d.cpid(&stranger).await,
    );
    for ns in ["net", "ipc", "uts", "pid"] {
        assert_eq!(
            ns_link(&pw.to_string(), ns),
            ns_link(&ps.to_string(), ns),
            "{ns}"
        );
        assert_ne!(
            ns_link(&pw.to_string(), ns),
            ns_link(&po.to_string(), ns),
            "{ns}"
        );
    }
    assert_ne!(
        ns_link(&pw.to_string(), "mnt"),
        ns_link(&ps.to_string(), "mnt")
    );

    // localhost between the pod's containers, not from another pod.
    let mut got = String::new();
    for _ in 0..50 {
        let r = d
            .exec(
                &side,
                &["wget", "-qO-", "http://127.0.0.1:8080/index.html"],
                5,
            )
            .await
            .unwrap();
        if r.exit_code == 0 {
            got = String::from_utf8_lossy(&r.stdout).into_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, "hello-from-web\n");
    let r = d
        .exec(
            &stranger,
            &[
                "wget",
                "-T",
                "2",
                "-qO-",
                "http://127.0.0.1:8080/index.html",
            ],
            10,
        )
        .await
        .unwrap();
    assert_ne!(r.exit_code, 0);

    // The pod's /dev/shm, its hostname, and one PID namespace whose PID 1
    // is the infra process.
    assert_eq!(d.exec_ok(&side, &["cat", "/dev/shm/note"]).await, "shm\n");
    let r = d
        .exec(&stranger, &["cat", "/dev/shm/note"], 5)
        .await
        .unwrap();
    assert_ne!(r.exit_code, 0);
    assert_eq!(d.exec_ok(&side, &["hostname"]).await, "shared\n");
    assert_eq!(
        d.exec_ok(&side, &["cat", "/etc/hostname"]).await,
        "shared\n"
    );
    let resolv = d.exec_ok(&side, &["cat", "/etc/resolv.conf"]).await;
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    let procs = d.exec_ok(&side, &["ps", "-o", "pid,args"]).await;
    assert!(procs.contains("httpd -f -p 8080"), "{procs}");
    let hosts = d.exec_ok(&side, &["cat", "/etc/hosts"]).await;
    assert!(hosts.contains("localhost"), "{hosts}");
    let ip = d.status(&pod.id).await.status.unwrap().network.unwrap().ip;
    assert!(hosts.contains(&format!("{ip}\tshared")), "{hosts}");

    // kubectl debug --target: the debug container joins the target's PID
    // namespace.
    let web_alone = d.pod("debugme").await;
    let target = d
        .run(
            &web_alone,
            d.container_config("target", &image, &["sleep", "1001"]),
        )
        .await;
    let mut dbg = d.container_config("dbg", &image, &["sleep", "1002"]);
    let ns = sc(&mut dbg).namespace_options.as_mut().unwrap();
    ns.pid = api::NamespaceMode::Target as i32;
    ns.target_id = target.clone();
    let dbg = d.run(&web_alone, dbg).await;
    let (pt, pd) = (d.cpid(&target).await, d.cpid(&dbg).await);
    assert_eq!(
        ns_link(&pt.to_string(), "pid"),
        ns_link(&pd.to_string(), "pid")
    );
    assert!(d
        .exec_ok(&dbg, &["ps", "-o", "args"])
        .await
        .contains("sleep 1001"));
    d.remove_all().await;
    d.assert_no_containers_left();
}

#[tokio::test(flavor = "multi_thread")]
async fn host_network_and_host_pid_containers_use_the_hosts_namespaces() {
    let d = TestDaemon::start_with(Options {
        cni: false,
        ..Default::default()
    });
    let image = d.pull("busybox:latest").await;
    let mut pc = d.pod_config("hostns");
    let ns = pc
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap();
    ns.network = api::NamespaceMode::Node as i32;
    ns.pid = api::NamespaceMode::Node as i32;
    let pod = d.pod_with(pc).await;
    let mut c = d.container_config("h", &image, &["sleep", "1000"]);
    let cns = sc(&mut c).namespace_options.as_mut().unwrap();
    cns.network = api::NamespaceMode::Node as i32;
    cns.pid = api::NamespaceMode::Node as i32;
    let id = d.run(&pod, c).await;
    let pid = d.cpid(&id).await;
    for ns in ["net", "pid", "uts"] {
        assert_eq!(ns_link(&pid.to_string(), ns), ns_link("self", ns), "{ns}");
    }
    assert_ne!(ns_link(&pid.to_string(), "mnt"), ns_link("self", "mnt"));
    // Without a PID namespace of its own, stopping it still ends every
    // process it started.
    d.exec_ok(&id, &["sh", "-c", "sleep 999 >/dev/null 2>&1 &"])
        .await;
    let cg = format!("{}/{id}", pod.cgroup_parent());
    let procs: Vec<i32> = cgroup_v1_file("pids", &cg, "cgroup.procs")
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert!(
        procs.len() >= 2,
        "the init and the background sleep: {procs:?}"
    );
    d.stop_container(&id, 0).await;
    for p in &procs {
        assert!(!process_exists(*p), "{p} outlived the stop");
    }
    for dir in TestDaemon::cgroup_dirs(&cg) {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        assert!(
            procs.trim().is_empty(),
            "left in {}: {procs}",
            dir.display()
        );
    }
    d.remove_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn users_groups_and_supplemental_groups() {
    let d = TestDaemon::start_with(Options {
        cni: false,
        ..Default::default()
    });
    let pod = d.host_pod("users").await;
    // USER 1002 in the image: kubelet sends run_as_user 1002 (ImageStatus
    // uid); the gid and groups come from the image's /etc/passwd, /etc/group.
    let user_image = d.pull("busybox-user:latest").await;
    let mut c = d.container_config("uid", &user_image, &["sleep", "1000"]);
    sc(&mut c).run_as_user = Some(api::Int64Value { value: 1002 });
    let uid = d.run(&pod, c).await;
    let st = proc_status(d.cpid(&uid).await);
    assert_eq!(st["Uid"].split_whitespace().next(), Some("1002"));
    assert_eq!(st["Gid"].split_whitespace().next(), Some("1003"));
    assert_eq!(st["Groups"], "1004");
    assert_eq!(d.exec_ok(&uid, &["id", "-u"]).await, "1002\n");
    let user = d.cstatus(&uid).await.user.unwrap().linux.unwrap();
    assert_eq!((user.uid, user.gid), (1002, 1003));

    // USER app (a name): kubelet sends run_as_username.
    let name_image = d.pull("busybox-username:latest").await;
    let mut c = d.container_config("name", &name_image, &["sleep", "1000"]);
    sc(&mut c).run_as_user = None;
    sc(&mut c).run_as_username = "app".into();
    let name = d.run(&pod, c).await;
    let st = proc_status(d.cpid(&name).await);
    assert_eq!(st["Uid"].split_whitespace().next(), Some("1002"));
    assert_eq!(st["Groups"], "1004");

    // The pod's securityContext: runAsUser, runAsGroup, fsGroup +
    // supplementalGroups.
    let image = d.pull("busybox:latest").await;
    let mut c = d.container_config("explicit", &image, &["sleep", "1000"]);
    let s = sc(&mut c);
    s.run_as_user = Some(api::Int64Value { value: 1000 });
    s.run_as_group = Some(api::Int64Value { value: 3000 });
    s.supplemental_groups = vec![2000, 4000];
    let explicit = d.run(&pod, c).await;
    let st = proc_status(d.cpid(&explicit).await);
    assert_eq!(st["Uid"].split_whitespace().next(), Some("1000"));
    assert_eq!(st["Gid"].split_whitespace().next(), Some("3000"));
    assert_eq!(st["Groups"], "2000 4000");
    // Exec runs as the container's user.
    assert_eq!(d.exec_ok(&explicit, &["id", "-u"]).await, "1000\n");

    // Strict: only the listed groups, not the image's.
    let mut c = d.container_config("strict", &user_image, &["sleep", "1000"]);
    let s = sc(&mut c);
    s.run_as_user = Some(api::Int64Value { value: 1002 });
    s.supplemental_groups = vec![5000];
    s.supplemental_groups_policy = api::SupplementalGroupsPolicy::Strict as i32;
    let strict = d.run(&pod, c).await;
    assert_eq!(proc_status(d.cpid(&strict).await)["Groups"], "5000");
    // What kubelet shows as the container's user: the groups really applied,
    // the primary one first.
    let user = d.cstatus(&strict).await.user.unwrap().linux.unwrap();
    assert_eq!(
        (user.uid, user.gid, user.supplemental_groups),
        (1002, 1003, vec![1003, 5000])
    );

    // Merge (the default): the image's memberships and the listed groups.
    let mut c = d.container_config("merge", &user_image, &["sleep", "1000"]);
    let s = sc(&mut c);
    s.run_as_user = Some(api::Int64Value { value: 1002 });
    s.supplemental_groups = vec![5000];
    s.supplemental_groups_policy = api::SupplementalGroupsPolicy::Merge as i32;
    let merge = d.run(&pod, c).await;
    assert_eq!(proc_status(d.cpid(&merge).await)["Groups"], "1004 5000");
    let user = d.cstatus(&merge).await.user.unwrap().linux.unwrap();
    let mut groups = user.supplemental_groups.clone();
    groups.sort();
    assert_eq!(groups, [1003, 1004, 5000]);
    assert_eq!(user.supplemental_groups[0], 1003, "{user:?}");
    assert_eq!(d.exec_ok(&merge, &["id", "-G"]).await, "1003 1004 5000\n");

    // The runtime says it applies the policy.
    let status = d.runtime_status(false).await;
    assert!(status.features.unwrap().supplemental_groups_policy);
    d.remove_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn capabilities_seccomp_privileged_readonly_rootfs_and_masked_paths() {
    let d = TestDaemon::start_with(Options {
        cni: false,
        ..Default::default()
    });
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("caps").await;
    // The default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID
    // SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
    let default_caps = capability_mask(&[0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31]);
    let plain = d
        .run(
            &pod,
            d.container_config("plain", &image, &["sleep", "1000"]),
        )
        .await;
    let p = d.cpid(&plain).await;
    assert_eq!(caps(p, "CapEff"), default_caps);
    assert_eq!(caps(p, "CapBnd"), default_caps);
    assert_eq!(caps(p, "CapInh"), 0);
    assert_eq!(
        proc_status(p)["Seccomp"],
        "0",
        "kubelet's default is Unconfined"
    );
    assert_eq!(proc_status(p)["NoNewPrivs"], "0");
    // Masked and read-only paths (kubelet's lists).
    assert_eq!(
        d.exec_ok(&plain, &["wc", "-c", "/proc/timer_list"])
            .await
            .split_whitespace()
            .next(),
        Some("0")
    );
    assert_eq!(d.exec_ok(&plain, &["ls", "/sys/firmware"]).await, "");
    let r = d
        .exec(
            &plain,
            &["sh", "-c", "echo 1 > /proc/sys/kernel/ns_last_pid"],
            5,
        )
        .await
        .unwrap();
    assert_ne!(r.exit_code, 0);
    let line = mount_options(p, "/proc/sys").expect("/proc/sys is a mount");
    assert!(
        line.split(' ')
            .nth(5)
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "{line}"
    );
    // user namespaces are allowed without seccomp...
    assert_eq!(
        d.exec(&plain, &["unshare", "-U", "true"], 5)
            .await
            .unwrap()
            .exit_code,
        0
    );

    // drop ALL, add NET_BIND_SERVICE; RuntimeDefault seccomp; no_new_privs.
    let mut c = d.container_config("tight", &image, &["sleep", "1000"]);
    let s = sc(&mut c);
    s.capabilities = Some(api::Capability {
        drop_capabilities: vec!["ALL".into()],
        add_capabilities: vec!["NET_BIND_SERVICE".into()],
        ..Default::default()
    });
    s.seccomp = Some(api::SecurityProfile::default());
    s.no_new_privs = true;
    s.readonly_rootfs = true;
    let tight = d.run(&pod, c).await;
    let t = d.cpid(&tight).await;
    assert_eq!(caps(t, "CapEff"), 1 << 10);
    assert_eq!(caps(t, "CapBnd"), 1 << 10);
    let st = proc_status(t);
    assert_eq!(st["Seccomp"], "2");
    assert_eq!(st["NoNewPrivs"], "1");
    // ...and blocked by the default profile.
    let r = d.exec(&tight, &["unshare", "-U", "true"], 5).await.unwrap();
    assert_ne!(r.exit_code, 0);
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("not permitted"),
        "{r:?}"
    );
    // Read-only rootfs; the mounted files stay as they are.
    let r = d.exec(&tight, &["touch", "/newfile"], 5).await.unwrap();
    assert_ne!(r.exit_code, 0);
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("Read-only"),
        "{r:?}"
    );
    let root = mount_options(t, "/").unwrap();
    assert!(
        root.split(' ')
            .nth(5)
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "{root}"
    );
    // The file system of the container is overlayfs of the image layers.
    assert!(root.contains(" - overlay "), "{root}");

    // A Localhost profile: everything but mkdir.
    let profile = d.dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    )
    .unwrap();
    let mut c = d.container_config("local", &image, &["sleep", "1000"]);
    sc(&mut c).seccomp = Some(api::SecurityProfile {
        profile_type: api::security_profile::ProfileType::Localhost as i32,
        localhost_ref: profile.to_string_lossy().into_owned(),
    });
    let local = d.run(&pod, c).await;
    let r = d.exec(&local, &["mkdir", "/tmp/x"], 5).await.unwrap();
    assert_ne!(r.exit_code, 0, "{r:?}");
    assert_eq!(
        d.exec(&local, &["touch", "/tmp/y"], 5)
            .await
            .unwrap()
            .exit_code,
        0
    );

    // Privileged: every capability, no seccomp whatever is asked, nothing
    // masked, /sys writable, the host's devices.
    let mut c = d.container_config("priv", &image, &["sleep", "1000"]);
    let s = sc(&mut c);
    s.privileged = true;
    s.seccomp = Some(api::SecurityProfile::default());
    let pr = d.run(&pod, c).await;
    let pp = d.cpid(&pr).await;
    // Every capability the runtime holds (root here lacks some).
    let all = caps(std::process::id() as i32, "CapBnd");
    assert_eq!(caps(pp, "CapEff"), all);
    assert_eq!(proc_status(pp)["Seccomp"], "0");
    assert_ne!(
        d.exec_ok(&pr, &["wc", "-c", "/proc/timer_list"])
            .await
            .split_whitespace()
            .next(),
        Some("0")
    );
    let sys = mount_options(pp, "/sys").unwrap();
    assert!(
        sys.split(' ').nth(5).unwrap().split(',').any(|o| o == "rw"),
        "{sys}"
    );
    assert!(d.exec_ok(&pr, &["ls", "/dev"]).await.contains("kmsg"));

    // add ALL + drop one.
    let mut c = d.container_config("most", &image, &["sleep", "1000"]);
    sc(&mut c).capabilities = Some(api::Capability {
        add_capabilities: vec!["ALL".into()],
        drop_capabilities: vec!["CHOWN".into()],
        ..Default::default()
    });
    let most = d.run(&pod, c).await;
    assert_eq!(caps(d.cpid(&most).await, "CapEff"), all & !1);
    d.remove_all().await;
}

/// A tmpfs mounted by the test (shared or private), unmounted on drop.
struct TestMount(std::path::PathBuf);

impl TestMount {
    fn new(path: &Path, shared: bool) -> TestMount {
        std::fs::create_dir_all(path).unwrap();
        sh_ok("mount", &["-t", "tmpfs", "tmpfs", &path.to_string_lossy()]);
        let flag = if shared {
            "--make-shared"
        } else {
            "--make-private"
        };
        sh_ok("mount", &[flag, &path.to_string_lossy()]);
        TestMount(path.to_path_buf())
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-R", "-l"])
            .arg(&self.0)
            .status();
    }
}

fn sh_ok(cmd: &str, args: &[&str]) -> String {
    common::sh(cmd, args)
}

#[tokio::test(flavor = "multi_thread")]
async fn mounts_readonly_symlinks_propagation_hosts_and_devices() {
    let d = TestDaemon::start_with(Options {
        cni: false,
        ..Default::default()
    });
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("mounts").await;
    let base = d.dir.path().join("vols");
    let rw = base.join("rw");
    let ro = base.join("ro");
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(ro.join("greeting"), "from the host\n").unwrap();
    std::os::unix::fs::symlink(&ro, base.join("link-to-ro")).unwrap();
    let hosts = base.join("etc-hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n10.9.9.9 kubelet-made\n").unwrap();
    let shared = TestMount::new(&base.join("shared"), true);
    let private = TestMount::new(&base.join("private"), false);

    let mount = |c: &str, h: &Path, readonly: bool, p: api::MountPropagation| api::Mount {
        container_path: c.into(),
        host_path: h.to_string_lossy().into_owned(),
        readonly,
        propagation: p as i32,
        ..Default::default()
    };
    let mut c = d.container_config("m", &image, &["sleep", "1000"]);
    c.mounts = vec![
        mount(
            "/data",
            &rw,
            false,
            api::MountPropagation::PropagationPrivate,
        ),
        mount(
            "/config",
            &base.join("link-to-ro"),
            true,
            api::MountPropagation::PropagationPrivate,
        ),
        mount(
            "/etc/hosts",
            &hosts,
            false,
            api::MountPropagation::PropagationPrivate,
        ),
        mount(
            "/shared",
            &shared.0,
            false,
            api::MountPropagation::PropagationHostToContainer,
        ),
    ];
    c.devices = vec![api::Device {
        container_path: "/dev/mynull".into(),
        host_path: "/dev/null".into(),
        permissions: "rwm".into(),
    }];
    let id = d.run(&pod, c).await;
    let pid = d.cpid(&id).await;
    d.exec_ok(&id, &["sh", "-c", "echo written > /data/out"])
        .await;
    assert_eq!(
        std::fs::read_to_string(rw.join("out")).unwrap(),
        "written\n"
    );
    assert_eq!(
        d.exec_ok(&id, &["cat", "/config/greeting"]).await,
        "from the host\n"
    );
    let r = d.exec(&id, &["touch", "/config/x"], 5).await.unwrap();
    assert_ne!(r.exit_code, 0);
    assert!(d
        .exec_ok(&id, &["cat", "/etc/hosts"])
        .await
        .contains("kubelet-made"));
    d.exec_ok(&id, &["sh", "-c", "echo x > /dev/mynull"]).await;
    // A device node (null is 1:3), not a file the write just made.
    assert_eq!(
        d.exec_ok(&id, &["stat", "-c", "%F %t:%T", "/dev/mynull"])
            .await,
        "character special file 1:3\n"
    );
    // A mount the host makes later appears inside (rslave).
    let sub = shared.0.join("later");
    std::fs::create_dir_all(&sub).unwrap();
    sh_ok(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "later",
            &sub.to_string_lossy(),
        ],
    );
    let line = mount_options(pid, "/shared/later").expect("the host's new mount propagated");
    assert!(line.contains("master:"), "{line}");
    let st = d.cstatus(&id).await;
    assert_eq!(st.mounts.len(), 4);
    assert_eq!(
        st.mounts[1].host_path,
        base.join("link-to-ro").to_string_lossy()
    );
    assert!(st.mounts[1].readonly);

    // Propagation needs a host mount that propagates.
    let mut c = d.container_config("bidi", &image, &["sleep", "1000"]);
    c.mounts = vec![mount(
        "/p",
        &private.0,
        false,
        api::MountPropagation::PropagationBidirectional,
    )];
    let e = d.try_create(&pod, c).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("not a shared mount"), "{e:?}");
    // Bidirectional on a shared mount: a mount made inside (privileged)
    // appears on the host.
    let mut c = d.container_config("bidi-ok", &image, &[]);
    c.command = sh("mkdir -p /p/inner && mount -t tmpfs inner /p/inner && exec sleep 1000");
    c.mounts = vec![mount(
        "/p",
        &shared.0,
        false,
        api::MountPropagation::PropagationBidirectional,
    )];
    sc(&mut c).privileged = true;
    let bidi = d.run(&pod, c).await;
    d.cpid(&bidi).await;
    eventually("the container's mount on the host", || {
        is_mounted(&shared.0.join("inner"))
    })
    .await;
    d.remove_all().await;
    d.assert_no_containers_left();
}
