//! The CRI container config, the sandbox and the image config turned into
//! an OCI runtime spec (`config.json` of the container's bundle).
//!
//! The spec is built field by field from empty values: the `oci-spec`
//! defaults describe another runtime's container (hostname, rlimits,
//! namespaces), none of which a CRI container may inherit by accident.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Linux, LinuxCpu, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimit,
    LinuxMemory, LinuxNamespace, LinuxNamespaceType, LinuxResources, LinuxSeccomp, Mount, Process,
    Root, Spec, User,
};

use super::error::ContainerError;
use super::security;
use super::spec::{ContainerRecord, PidMode, Propagation, Resources, SeccompSpec};
use super::user::ResolvedUser;
use crate::host::DEFAULT_PATH;
use crate::image::manifest::RunConfig;
use crate::pod::PodContext;

/// What the host offers, found once at start.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// Controllers live on cgroup v2 (a unified host).
    pub cgroup_v2: bool,
    /// The hugetlb controller is there for the cgroup version in use.
    pub hugetlb: bool,
    /// Swap accounting is there (`memory.memsw.*` on v1, `memory.swap.max`
    /// on v2).
    pub swap: bool,
    /// The lowest `oom_score_adj` a container may get, when restricted.
    pub oom_score_adj_min: Option<i64>,
    /// The systemd cgroup driver is in use.
    pub systemd_cgroup: bool,
}

/// A CRI mount whose host side has been checked and resolved.
#[derive(Debug, Clone)]
pub struct ResolvedMount {
    pub container_path: String,
    /// The host path with symlinks resolved.
    pub source: PathBuf,
    pub readonly: bool,
    pub recursive_read_only: bool,
    pub propagation: Propagation,
}

/// A host device to expose, from a CRI `Device` or (privileged) /dev.
#[derive(Debug, Clone)]
pub struct ResolvedDevice {
    pub container_path: String,
    pub kind: LinuxDeviceType,
    pub major: i64,
    pub minor: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub permissions: String,
}

/// Everything the spec is made from.
pub struct SpecInputs<'a> {
    pub rec: &'a ContainerRecord,
    pub pod: &'a PodContext,
    pub image: &'a RunConfig,
    pub user: &'a ResolvedUser,
    pub mounts: &'a [ResolvedMount],
    pub devices: &'a [ResolvedDevice],
    /// The /etc/hosts to bind when no CRI mount provides one.
    pub hosts_file: &'a Path,
    /// The init pid of the container whose PID namespace `Target` joins.
    pub target_pid: Option<i32>,
    pub host: &'a HostFacts,
}

fn invalid(field: &str, message: impl Into<String>) -> ContainerError {
    ContainerError::invalid(field, message)
}

/// The process to run, as Kubernetes defines it: `command` replaces the
/// image's entrypoint (and drops its cmd), `args` replace its cmd.
pub fn command_line(
    command: &[String],
    args: &[String],
    image: &RunConfig,
) -> Result<Vec<String>, ContainerError> {
    let argv: Vec<String> = if !command.is_empty() {
        command.iter().chain(args).cloned().collect()
    } else if !args.is_empty() {
        image.entrypoint.iter().chain(args).cloned().collect()
    } else {
        image.entrypoint.iter().chain(&image.cmd).cloned().collect()
    };
    if argv.is_empty() {
        return Err(invalid(
            "config.command",
            "no command: neither the container config nor the image sets an entrypoint or cmd",
        ));
    }
    Ok(argv)
}

/// The image's environment, then `HOSTNAME`, then the config's variables;
/// a later value of a name replaces the earlier one in place. PATH is
/// added when nothing set it.
pub fn environment(image_env: &[String], hostname: &str, envs: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut set = |kv: String| {
        let key = kv
            .split_once('=')
            .map(|(k, _)| k)
            .unwrap_or(&kv)
            .to_string();
        match out
            .iter_mut()
            .find(|e| e.split_once('=').map(|(k, _)| k).unwrap_or(e.as_str()) == key)
        {
            Some(slot) => *slot = kv,
            None => out.push(kv),
        }
    };
    for e in image_env {
        set(e.clone());
    }
    if !hostname.is_empty() {
        set(format!("HOSTNAME={hostname}"));
    }
    for (k, v) in envs {
        set(format!("{k}={v}"));
    }
    if !out.iter().any(|e| e.starts_with("PATH=")) {
        out.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    out
}

/// The `oom_score_adj` to give the process: the requested one, raised to
/// the floor when the daemon may not lower it.
pub fn oom_score_adj(requested: i64, floor: Option<i64>) -> i32 {
    let v = match floor {
        Some(min) if requested < min => min,
        _ => requested,
    };
    v.clamp(-1000, 1000) as i32
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

fn bind(dest: &str, source: &Path, options: Vec<String>) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some("bind".to_string()));
    m.set_source(Some(source.to_path_buf()));
    m.set_options(Some(options));
    m
}

fn namespace(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(path);
    ns
}

fn proc_ns(pid: i32, ns: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/{ns}"))
}

/// The container's namespaces: its own mount (and PID, by default)
/// namespace, the pod's network, IPC and UTS namespaces.
pub fn namespaces(
    pod: &PodContext,
    pid_mode: &PidMode,
    target_pid: Option<i32>,
    cgroup_v2: bool,
    privileged: bool,
) -> Result<Vec<LinuxNamespace>, ContainerError> {
    let pod_ns = pod.namespaces()?;
    let mut out = vec![namespace(LinuxNamespaceType::Mount, None)];
    match pid_mode {
        PidMode::Container => out.push(namespace(LinuxNamespaceType::Pid, None)),
        PidMode::Pod => out.push(namespace(LinuxNamespaceType::Pid, Some(pod_ns.pid.clone()))),
        PidMode::Node => {}
        PidMode::Target(id) => {
            let pid = target_pid.ok_or_else(|| {
                ContainerError::FailedPrecondition(format!("target container {id} is not running"))
            })?;
            out.push(namespace(
                LinuxNamespaceType::Pid,
                Some(proc_ns(pid, "pid")),
            ));
        }
    }
    if let Some(net) = &pod_ns.network {
        out.push(namespace(LinuxNamespaceType::Network, Some(net.clone())));
    }
    if let Some(uts) = &pod_ns.uts {
        out.push(namespace(LinuxNamespaceType::Uts, Some(uts.clone())));
    }
    if let Some(ipc) = &pod_ns.ipc {
        out.push(namespace(LinuxNamespaceType::Ipc, Some(ipc.clone())));
    }
    // A cgroup namespace shows a v2 container only its own subtree, as
    // other runtimes do on v2 hosts; on v1 runtimes leave it shared.
    if cgroup_v2 && !privileged {
        out.push(namespace(LinuxNamespaceType::Cgroup, None));
    }
    Ok(out)
}

/// The OCI `linux.resources` of a container (without device rules).
pub fn resources(r: &Resources, host: &HostFacts) -> Result<LinuxResources, ContainerError> {
    let mut memory = LinuxMemory::default();
    let mut any_memory = false;
    if r.memory_limit_in_bytes > 0 {
        memory.set_limit(Some(r.memory_limit_in_bytes));
        any_memory = true;
    }
    // Memory plus swap; equal to the limit means no swap, which is what a
    // memory limit means to kubelet.
    if host.swap {
        let swap = if r.memory_swap_limit_in_bytes > 0 {
            r.memory_swap_limit_in_bytes
        } else {
            r.memory_limit_in_bytes
        };
        if swap > 0 {
            memory.set_swap(Some(swap));
            any_memory = true;
        }
    }
    let mut cpu = LinuxCpu::default();
    let mut any_cpu = false;
    if r.cpu_shares > 0 {
        cpu.set_shares(Some(r.cpu_shares as u64));
        any_cpu = true;
    }
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
        any_cpu = true;
    }
    if r.cpu_period > 0 {
        cpu.set_period(Some(r.cpu_period as u64));
        any_cpu = true;
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
        any_cpu = true;
    }
    if !r.cpuset_mems.is_empty() {
        cpu.set_mems(Some(r.cpuset_mems.clone()));
        any_cpu = true;
    }
    let mut out = LinuxResources::default();
    out.set_devices(None);
    if any_memory {
        out.set_memory(Some(memory));
    }
    if any_cpu {
        out.set_cpu(Some(cpu));
    }
    // kubelet sends limits for every page size, also where the hugetlb
    // controller is missing (as on this kind of hybrid host): skipped then,
    // as other runtimes do.
    if host.hugetlb && !r.hugepage_limits.is_empty() {
        let limits = r
            .hugepage_limits
            .iter()
            .map(|(size, limit)| {
                let mut l = LinuxHugepageLimit::default();
                l.set_page_size(size.clone());
                l.set_limit(*limit as i64);
                l
            })
            .collect();
        out.set_hugepage_limits(Some(limits));
    }
    if !r.unified.is_empty() {
        if !host.cgroup_v2 {
            return Err(invalid(
                "config.linux.resources.unified",
                "cgroup v2 settings, but this host runs its controllers on cgroup v1",
            ));
        }
        out.set_unified(Some(
            r.unified
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        ));
    }
    Ok(out)
}

fn device_rule(
    allow: bool,
    kind: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut d = LinuxDeviceCgroup::default();
    d.set_allow(allow);
    d.set_typ(kind);
    d.set_major(major);
    d.set_minor(minor);
    d.set_access(Some(access.to_string()));
    d
}

/// The `cgroupsPath` the runtime gets: the absolute cgroup path, or
/// `slice:prefix:name` for the systemd driver.
pub fn cgroups_path(rec: &ContainerRecord, pod: &PodContext, systemd: bool) -> String {
    if systemd {
        let slice = pod
            .cgroup_parent
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or("system.slice");
        return format!("{slice}:peapod:{}", rec.id);
    }
    rec.cgroup.clone()
}

/// Sorts mounts so that a parent directory is mounted before what is
/// mounted inside it.
fn depth(path: &str) -> usize {
    Path::new(path).components().count()
}

/// The whole spec.
pub fn build(i: &SpecInputs<'_>) -> Result<Spec, ContainerError> {
    let rec = i.rec;
    let spec = &rec.spec;
    let sec = &spec.security;
    let privileged = sec.privileged;

    // ---- process ----
    let argv = command_line(&spec.command, &spec.args, i.image)?;
    let hostname = i.pod.container_hostname();
    let env = environment(&i.image.env, &hostname, &spec.envs);
    let cwd = if !spec.working_dir.is_empty() {
        spec.working_dir.clone()
    } else if !i.image.working_dir.is_empty() {
        i.image.working_dir.clone()
    } else {
        "/".to_string()
    };
    if !cwd.starts_with('/') {
        return Err(invalid(
            "config.working_dir",
            format!("{cwd:?} must be an absolute path"),
        ));
    }
    let caps = security::capability_set(&sec.add_capabilities, &sec.drop_capabilities, privileged)?;
    let mut user = User::default();
    user.set_uid(i.user.uid);
    user.set_gid(i.user.gid);
    user.set_additional_gids(if i.user.additional_gids.is_empty() {
        None
    } else {
        Some(i.user.additional_gids.clone())
    });
    let mut process = Process::default();
    process.set_terminal(Some(spec.tty));
    process.set_console_size(None);
    process.set_user(user);
    process.set_args(Some(argv));
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(cwd));
    process.set_capabilities(Some(security::to_oci_capabilities(&caps)));
    process.set_rlimits(None);
    process.set_no_new_privileges(Some(sec.no_new_privs));
    let apparmor = security::apparmor_profile(
        sec.apparmor.profile_type,
        &sec.apparmor.localhost_ref,
        privileged,
    )?;
    process.set_apparmor_profile(apparmor);
    process.set_oom_score_adj(Some(oom_score_adj(
        rec.resources.oom_score_adj,
        i.host.oom_score_adj_min,
    )));
    let selinux = match &sec.selinux {
        Some(s) => security::selinux_label(&s.user, &s.role, &s.r#type, &s.level)?,
        None => None,
    };
    process.set_selinux_label(selinux);
    process.set_scheduler(None);
    process.set_io_priority(None);

    // ---- root ----
    let mut root = Root::default();
    root.set_path(rec.rootfs());
    root.set_readonly(Some(sec.readonly_rootfs));

    // ---- mounts ----
    let user_paths: Vec<&str> = i.mounts.iter().map(|m| m.container_path.as_str()).collect();
    let taken = |p: &str| user_paths.contains(&p);
    let ro_sys = if privileged { "rw" } else { "ro" };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", ro_sys],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", ro_sys],
        ),
    ];
    if !taken("/dev/shm") {
        let shm = match &i.pod.files.shm {
            Some(p) => p.clone(),
            None => PathBuf::from("/dev/shm"),
        };
        mounts.push(bind(
            "/dev/shm",
            &shm,
            ["rbind", "nosuid", "nodev", "noexec"]
                .map(String::from)
                .to_vec(),
        ));
    }
    let file_opts = || {
        vec![
            "rbind".to_string(),
            "rprivate".to_string(),
            if sec.readonly_rootfs { "ro" } else { "rw" }.to_string(),
        ]
    };
    if !taken("/etc/hostname") {
        mounts.push(bind("/etc/hostname", &i.pod.files.hostname, file_opts()));
    }
    if !taken("/etc/resolv.conf") {
        mounts.push(bind(
            "/etc/resolv.conf",
            &i.pod.files.resolv_conf,
            file_opts(),
        ));
    }
    if !taken("/etc/hosts") {
        mounts.push(bind("/etc/hosts", i.hosts_file, file_opts()));
    }
    let mut user_mounts: Vec<&ResolvedMount> = i.mounts.iter().collect();
    user_mounts.sort_by_key(|m| depth(&m.container_path));
    let mut rootfs_propagation = None;
    for m in user_mounts {
        let propagation = match m.propagation {
            Propagation::Private => "rprivate",
            Propagation::HostToContainer => {
                if rootfs_propagation.is_none() {
                    rootfs_propagation = Some("rslave");
                }
                "rslave"
            }
            Propagation::Bidirectional => {
                rootfs_propagation = Some("rshared");
                "rshared"
            }
        };
        let ro = if m.recursive_read_only {
            "rro"
        } else if m.readonly {
            "ro"
        } else {
            "rw"
        };
        mounts.push(bind(
            &m.container_path,
            &m.source,
            vec!["rbind".to_string(), propagation.to_string(), ro.to_string()],
        ));
    }

    // ---- linux ----
    let mut res = resources(&rec.resources, i.host)?;
    let mut rules = if privileged {
        vec![device_rule(
            true,
            Some(LinuxDeviceType::A),
            None,
            None,
            "rwm",
        )]
    } else {
        vec![device_rule(
            false,
            Some(LinuxDeviceType::A),
            None,
            None,
            "rwm",
        )]
    };
    let mut devices = Vec::new();
    for d in i.devices {
        let mut dev = LinuxDevice::default();
        dev.set_path(PathBuf::from(&d.container_path));
        dev.set_typ(d.kind);
        dev.set_major(d.major);
        dev.set_minor(d.minor);
        dev.set_file_mode(Some(d.mode & 0o7777));
        dev.set_uid(Some(d.uid));
        dev.set_gid(Some(d.gid));
        devices.push(dev);
        if !privileged {
            rules.push(device_rule(
                true,
                Some(d.kind),
                Some(d.major),
                Some(d.minor),
                &d.permissions,
            ));
        }
    }
    res.set_devices(Some(rules));

    let seccomp: Option<LinuxSeccomp> = if privileged {
        None
    } else {
        match &sec.seccomp {
            SeccompSpec::Unconfined => None,
            SeccompSpec::RuntimeDefault => Some(security::default_seccomp(&caps)),
            SeccompSpec::Localhost(path) => {
                Some(security::seccomp_from_file(Path::new(path), &caps)?)
            }
        }
    };

    let mut linux = Linux::default();
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    linux.set_sysctl(None);
    linux.set_resources(Some(res));
    linux.set_cgroups_path(Some(PathBuf::from(cgroups_path(
        rec,
        i.pod,
        i.host.systemd_cgroup,
    ))));
    linux.set_namespaces(Some(namespaces(
        i.pod,
        &sec.pid,
        i.target_pid,
        i.host.cgroup_v2,
        privileged,
    )?));
    linux.set_devices(if devices.is_empty() {
        None
    } else {
        Some(devices)
    });
    linux.set_seccomp(seccomp);
    linux.set_rootfs_propagation(rootfs_propagation.map(str::to_string));
    if privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    } else {
        let masked = if sec.masked_paths.is_empty() {
            security::DEFAULT_MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            sec.masked_paths.clone()
        };
        let readonly = if sec.readonly_paths.is_empty() {
            security::DEFAULT_READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            sec.readonly_paths.clone()
        };
        linux.set_masked_paths(Some(masked));
        linux.set_readonly_paths(Some(readonly));
    }
    linux.set_mount_label(None);

    let mut annotations = HashMap::new();
    annotations.insert(
        "io.kubernetes.cri.container-type".to_string(),
        "container".to_string(),
    );
    annotations.insert("io.kubernetes.cri.sandbox-id".to_string(), i.pod.id.clone());
    annotations.insert(
        "io.kubernetes.cri.container-name".to_string(),
        spec.metadata.name.clone(),
    );
    annotations.insert(
        "io.kubernetes.cri.image-name".to_string(),
        rec.image_name.clone(),
    );

    let mut out = Spec::default();
    out.set_version("1.0.2".to_string());
    out.set_root(Some(root));
    out.set_mounts(Some(mounts));
    out.set_process(Some(process));
    out.set_hostname(None);
    out.set_domainname(None);
    out.set_hooks(None);
    out.set_annotations(Some(annotations));
    out.set_linux(Some(linux));
    Ok(out)
}

#[cfg(test)]
mod snapshots;

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entrypoint: &[&str], cmd: &[&str]) -> RunConfig {
        RunConfig {
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_and_args_follow_kubernetes_rules() {
        let img = image(&["/ep"], &["c1", "c2"]);
        assert_eq!(
            command_line(&[], &[], &img).unwrap(),
            v(&["/ep", "c1", "c2"])
        );
        assert_eq!(
            command_line(&[], &v(&["a"]), &img).unwrap(),
            v(&["/ep", "a"])
        );
        assert_eq!(command_line(&v(&["/c"]), &[], &img).unwrap(), v(&["/c"]));
        assert_eq!(
            command_line(&v(&["/c"]), &v(&["a"]), &img).unwrap(),
            v(&["/c", "a"])
        );
        let only_cmd = image(&[], &["sh"]);
        assert_eq!(command_line(&[], &[], &only_cmd).unwrap(), v(&["sh"]));
        let e = command_line(&[], &[], &image(&[], &[])).unwrap_err();
        assert!(e.to_string().starts_with("config.command:"), "{e}");
    }

    #[test]
    fn environment_overlays_in_place() {
        let env = environment(
            &v(&["PATH=/img", "A=1", "B=2"]),
            "pod1",
            &[
                ("B".into(), "x".into()),
                ("C".into(), "3".into()),
                ("HOSTNAME".into(), "h".into()),
            ],
        );
        assert_eq!(env, v(&["PATH=/img", "A=1", "B=x", "HOSTNAME=h", "C=3"]));
        let env = environment(&[], "", &[]);
        assert_eq!(env, vec![format!("PATH={DEFAULT_PATH}")]);
    }

    #[test]
    fn oom_score_adj_is_raised_to_the_floor_only_when_restricted() {
        assert_eq!(oom_score_adj(-997, Some(0)), 0);
        assert_eq!(oom_score_adj(998, Some(0)), 998);
        assert_eq!(oom_score_adj(-997, None), -997);
        assert_eq!(oom_score_adj(5000, None), 1000);
    }

    #[test]
    fn resources_as_kubelet_sends_them() {
        let host = HostFacts {
            swap: true,
            ..Default::default()
        };
        let r = Resources {
            cpu_period: 100000,
            cpu_quota: 50000,
            cpu_shares: 256,
            memory_limit_in_bytes: 134217728,
            hugepage_limits: vec![("2MB".into(), 0), ("1GB".into(), 0)],
            ..Default::default()
        };
        let out = resources(&r, &host).unwrap();
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["cpu"]["shares"], 256);
        assert_eq!(json["cpu"]["quota"], 50000);
        assert_eq!(json["cpu"]["period"], 100000);
        assert_eq!(json["memory"]["limit"], 134217728);
        assert_eq!(json["memory"]["swap"], 134217728);
        // No hugetlb controller: the zero limits are left out.
        assert!(json.get("hugepageLimits").is_none(), "{json}");
        // BestEffort: shares 2, nothing else.
        let be = resources(
            &Resources {
                cpu_shares: 2,
                cpu_period: 100000,
                ..Default::default()
            },
            &host,
        )
        .unwrap();
        let json = serde_json::to_value(&be).unwrap();
        assert!(json.get("memory").is_none(), "{json}");
        // unified needs cgroup v2.
        let e = resources(
            &Resources {
                unified: [("memory.high".to_string(), "1".to_string())].into(),
                ..Default::default()
            },
            &host,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("config.linux.resources.unified"),
            "{e}"
        );
        let v2 = HostFacts {
            cgroup_v2: true,
            hugetlb: true,
            ..Default::default()
        };
        let out = resources(
            &Resources {
                unified: [("memory.high".to_string(), "1".to_string())].into(),
                hugepage_limits: vec![("2MB".into(), 4194304)],
                ..Default::default()
            },
            &v2,
        )
        .unwrap();
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["unified"]["memory.high"], "1");
        assert_eq!(json["hugepageLimits"][0]["pageSize"], "2MB");
        assert_eq!(json["hugepageLimits"][0]["limit"], 4194304);
    }

    /// The pod `sb`: its infra process 4242, on a network of its own or the
    /// host's.
    fn sandbox(host_network: bool) -> PodContext {
        use crate::pod::{PodFiles, PodNamespaces};
        let ns = |name: &str| PathBuf::from(format!("/proc/4242/ns/{name}"));
        PodContext {
            id: "sb".into(),
            ready: true,
            runtime_handler: String::new(),
            cgroup_parent: "/kubepods/burstable/podu".into(),
            log_directory: "/logs".into(),
            hostname: "pod-host".into(),
            ips: vec!["10.1.0.2".into()],
            host_network,
            namespaces: Some(PodNamespaces {
                network: (!host_network).then(|| PathBuf::from("/run/peapod/netns/sb")),
                uts: (!host_network).then(|| ns("uts")),
                ipc: Some(ns("ipc")),
                pid: ns("pid"),
            }),
            files: PodFiles {
                hostname: PathBuf::from("/run/peapod/sandboxes/sb/hostname"),
                resolv_conf: PathBuf::from("/run/peapod/sandboxes/sb/resolv.conf"),
                shm: Some(PathBuf::from("/run/peapod/sandboxes/sb/shm")),
            },
        }
    }

    fn record(security: crate::container::spec::SecuritySpec) -> ContainerRecord {
        use crate::container::spec::*;
        ContainerRecord {
            id: "c1".into(),
            spec: ContainerSpec {
                sandbox_id: "sb".into(),
                metadata: ContainerMetadata {
                    name: "app".into(),
                    attempt: 0,
                },
                image: "sha256:x".into(),
                user_specified_image: String::new(),
                command: v(&["sleep", "1"]),
                args: vec![],
                working_dir: String::new(),
                envs: vec![("A".into(), "1".into())],
                mounts: vec![],
                devices: vec![],
                labels: Default::default(),
                annotations: Default::default(),
                log_path: String::new(),
                stdin: false,
                stdin_once: false,
                tty: false,
                resources: Resources::default(),
                security,
                stop_signal: 0,
            },
            state: ContainerState::Creating,
            created_at: 0,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            image_id: "sha256:x".into(),
            image_name: "busybox".into(),
            image_ref: String::new(),
            layers: vec![],
            log_path: None,
            dir: PathBuf::from("/run/peapod/containers/c1"),
            layer_dir: PathBuf::from("/var/lib/peapod/containers/c1"),
            socket: PathBuf::from("/run/peapod/sockets/c1.sock"),
            cgroup: "/kubepods/burstable/podu/c1".into(),
            runtime_handler: String::new(),
            monitor: None,
            init: None,
            own_pid_namespace: true,
            stop_signal: 15,
            resources: Resources {
                cpu_shares: 256,
                oom_score_adj: -997,
                ..Default::default()
            },
            user: None,
            runtime_deleted: false,
        }
    }

    fn security() -> crate::container::spec::SecuritySpec {
        use crate::container::spec::*;
        SecuritySpec {
            privileged: false,
            pid: PidMode::Container,
            run_as_user: Some(0),
            run_as_group: None,
            run_as_username: String::new(),
            supplemental_groups: vec![],
            supplemental_groups_strict: false,
            readonly_rootfs: false,
            add_capabilities: vec![],
            drop_capabilities: vec![],
            no_new_privs: false,
            masked_paths: vec![],
            readonly_paths: vec![],
            seccomp: SeccompSpec::RuntimeDefault,
            apparmor: AppArmorSpec {
                profile_type: 1,
                localhost_ref: String::new(),
            },
            selinux: None,
        }
    }

    fn built(
        rec: &ContainerRecord,
        sb: &PodContext,
        mounts: &[ResolvedMount],
    ) -> serde_json::Value {
        let user = ResolvedUser {
            uid: 1000,
            gid: 3000,
            additional_gids: vec![2000],
            username: None,
            home: None,
        };
        let host = HostFacts {
            oom_score_adj_min: Some(0),
            ..Default::default()
        };
        let spec = build(&SpecInputs {
            rec,
            pod: sb,
            image: &image(&[], &["sh"]),
            user: &user,
            mounts,
            devices: &[],
            hosts_file: Path::new("/run/peapod/containers/c1/hosts"),
            target_pid: None,
            host: &host,
        })
        .unwrap();
        serde_json::to_value(&spec).unwrap()
    }

    #[test]
    fn a_pod_container_spec() {
        let sb = sandbox(false);
        let rec = record(security());
        let mounts = [ResolvedMount {
            container_path: "/etc/hosts".into(),
            source: PathBuf::from("/var/lib/kubelet/pods/u/etc-hosts"),
            readonly: false,
            recursive_read_only: false,
            propagation: Propagation::HostToContainer,
        }];
        let j = built(&rec, &sb, &mounts);
        assert!(j.get("hostname").is_none(), "{j}");
        assert_eq!(j["process"]["args"], serde_json::json!(["sleep", "1"]));
        assert_eq!(j["process"]["user"]["uid"], 1000);
        assert_eq!(j["process"]["user"]["gid"], 3000);
        assert_eq!(
            j["process"]["user"]["additionalGids"],
            serde_json::json!([2000])
        );
        assert_eq!(j["process"]["oomScoreAdj"], 0);
        assert!(j["process"].get("rlimits").is_none(), "{j}");
        let env: Vec<&str> = j["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert!(
            env.contains(&"HOSTNAME=pod-host") && env.contains(&"A=1"),
            "{env:?}"
        );
        let ns = &j["linux"]["namespaces"];
        let find = |t: &str| {
            ns.as_array()
                .unwrap()
                .iter()
                .find(|n| n["type"] == t)
                .cloned()
        };
        assert_eq!(find("network").unwrap()["path"], "/run/peapod/netns/sb");
        assert_eq!(find("ipc").unwrap()["path"], "/proc/4242/ns/ipc");
        assert_eq!(find("uts").unwrap()["path"], "/proc/4242/ns/uts");
        assert!(find("pid").unwrap().get("path").is_none());
        assert!(find("mount").is_some());
        assert_eq!(j["linux"]["cgroupsPath"], "/kubepods/burstable/podu/c1");
        assert_eq!(j["linux"]["resources"]["cpu"]["shares"], 256);
        assert_eq!(j["linux"]["resources"]["devices"][0]["allow"], false);
        assert_eq!(j["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(j["linux"]["maskedPaths"].as_array().unwrap().len(), 12);
        assert_eq!(j["linux"]["rootfsPropagation"], "rslave");
        let dests: Vec<&str> = j["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        // kubelet's /etc/hosts replaces the generated one.
        assert_eq!(dests.iter().filter(|d| **d == "/etc/hosts").count(), 1);
        let hosts = j["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/etc/hosts")
            .unwrap();
        assert_eq!(hosts["source"], "/var/lib/kubelet/pods/u/etc-hosts");
        assert_eq!(
            hosts["options"],
            serde_json::json!(["rbind", "rslave", "rw"])
        );
        for d in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/etc/hostname",
            "/etc/resolv.conf",
        ] {
            assert!(dests.contains(&d), "{d} missing: {dests:?}");
        }
        let shm = j["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/dev/shm")
            .unwrap();
        assert_eq!(shm["source"], "/run/peapod/sandboxes/sb/shm");
    }

    #[test]
    fn host_network_and_privileged() {
        let sb = sandbox(true);
        let mut sec = security();
        sec.privileged = true;
        sec.pid = crate::container::spec::PidMode::Node;
        let j = built(&record(sec), &sb, &[]);
        let types: Vec<&str> = j["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["mount", "ipc"]);
        assert!(j["linux"].get("seccomp").is_none());
        assert!(j["linux"].get("maskedPaths").is_none());
        assert_eq!(j["linux"]["resources"]["devices"][0]["allow"], true);
        let caps = j["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert!(caps.len() >= 38, "{caps:?}");
        let sys = j["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert!(sys["options"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("rw")));
    }
}
