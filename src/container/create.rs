//! CreateContainer: every check first, then the record, then the root
//! filesystem, the OCI spec and the runtime's create; any failure releases
//! what was made.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{error, info, warn};

use super::idmapped::{self, PodIdmap};
use super::runtime_spec::{self, ResolvedDevice, ResolvedMount};
use super::{
    image_volumes, mounts, rootfs, signals, user, ContainerEntry, ContainerRecord, ContainerSpec,
    ContainerState, Containers, ImageVolumeRecord, NameKey, PidMode, Resources,
};
use crate::errors::Error;
use crate::host::fs::write_volatile;
use crate::image::manifest::RunConfig;
use crate::image::{ImageRecord, Images};
use crate::oci::{ContainerIo, OciRuntime};
use crate::pod::PodContext;

/// What a creation needs, found and checked before anything is made.
struct Checked {
    pod: PodContext,
    image: Arc<ImageRecord>,
    runtime: Arc<dyn OciRuntime>,
    /// The mounts of host paths.
    mounts: Vec<ResolvedMount>,
    /// The image volumes, with the layers they stack.
    image_volumes: Vec<ImageVolumeRecord>,
    devices: Vec<ResolvedDevice>,
    log_path: Option<PathBuf>,
    /// The init pid of the container whose PID namespace `Target` joins.
    target_pid: Option<i32>,
}

impl Containers {
    /// CreateContainer. A call with the name of a container still being
    /// created waits for that creation and returns its id.
    pub async fn create(&self, mut spec: ContainerSpec) -> Result<String, Error> {
        // The sandbox by its full id (the request may give a prefix): the
        // record, the name and the pod's stop and remove go by it.
        if let Ok(pod) = self.deps.pods.pod(&spec.sandbox_id) {
            spec.sandbox_id = pod.id;
        }
        let key: NameKey = (spec.sandbox_id.clone(), spec.metadata.clone());
        let this = self.arc();
        self.registry
            .create_named(key, async move { this.do_create(spec).await }, |key, id| {
                Error::AlreadyExists(format!(
                    "container named {:?} (attempt {}) already exists in pod sandbox {}: {}",
                    key.1.name, key.1.attempt, key.0, id
                ))
            })
            .await
    }

    async fn do_create(&self, spec: ContainerSpec) -> Result<String, Error> {
        let checked = self.check(&spec).await?;
        let draft = self.new_record(spec, &checked)?;
        let id = draft.id.clone();
        // The layers are held and the record written before anything is
        // created, so a crash at any point leaves what the next start
        // rolls back.
        self.deps.images.hold_layers(&draft.held_layers());
        let entry = match self.registry.add(draft.clone()).await {
            Ok(entry) => entry,
            Err(e) => {
                self.release_layers(&draft).await;
                return Err(e);
            }
        };
        let mut draft = draft;
        if let Err(e) = self.set_up(&mut draft, &checked).await {
            warn!(container = %id, "CreateContainer failed: {e}; rolling back");
            self.roll_back(&entry, draft).await;
            return Err(e);
        }
        let created = self
            .registry
            .transition(&entry, |r| {
                *r = draft;
                r.state = ContainerState::Created;
            })
            .await;
        if let Err(e) = created {
            let draft = (*entry.snapshot()).clone();
            self.roll_back(&entry, draft).await;
            return Err(e);
        }
        self.watch_exit(&id);
        info!(container = %id, sandbox = %checked.pod.id, "container created");
        Ok(id)
    }

    /// Everything a creation needs, checked: nothing is created before.
    async fn check(&self, spec: &ContainerSpec) -> Result<Checked, Error> {
        let pod = self.deps.pods.pod(&spec.sandbox_id)?;
        if !pod.ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                pod.id
            )));
        }
        check_userns(spec, &pod)?;
        let image = self.find_image(spec)?;
        let runtime = self.runtime(&pod.runtime_handler)?;
        let features = runtime.features().await;
        let mounts = mounts::resolve_mounts(&spec.mounts, features.recursive_read_only_mounts)?;
        let image_volumes = image_volumes::find(&spec.mounts, &self.deps.images)?;
        let devices = devices(spec)?;
        let log_path = log_path(&pod, &spec.log_path)?;
        let target_pid = match &spec.security.pid {
            PidMode::Target(t) => Some(self.target_pid(&pod.id, t)?),
            _ => None,
        };
        Ok(Checked {
            pod,
            image,
            runtime,
            mounts,
            image_volumes,
            devices,
            log_path,
            target_pid,
        })
    }

    /// The record of a new container, in state Creating.
    fn new_record(&self, spec: ContainerSpec, c: &Checked) -> Result<ContainerRecord, Error> {
        let id = crate::ids::new_id();
        let cgroup = crate::cgroups::child_path(&c.pod.cgroup_parent, &id);
        self.deps
            .cgroups
            .check_path(&cgroup)
            .map_err(|e| Error::invalid("sandbox cgroup_parent", e.to_string()))?;
        Ok(ContainerRecord {
            dir: self.config.containers_dir().join(&id),
            layer_dir: self.config.container_layers_dir().join(&id),
            socket: self
                .config
                .state_dir
                .join("sockets")
                .join(format!("{}.sock", &id[..24])),
            cgroup,
            runtime_handler: c.pod.runtime_handler.clone(),
            own_pid_namespace: spec.security.pid == PidMode::Container,
            resources: self.in_force(&spec.resources),
            layers: c.image.layers.iter().map(|l| l.chain_id.clone()).collect(),
            image_volumes: c.image_volumes.clone(),
            image_id: c.image.id.clone(),
            image_name: image_name(&spec, &c.image),
            image_ref: image_ref(&c.image),
            log_path: c.log_path.clone(),
            stop_signal: stop_signal(&spec, &c.image),
            id,
            spec,
            state: ContainerState::Creating,
            created_at: super::now(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            monitor: None,
            init: None,
            user: None,
            runtime_deleted: false,
        })
    }

    /// The limits that will be in force for `requested`: without a hugetlb
    /// controller no hugepage limit is applied, and `oom_score_adj` is
    /// raised to the floor when the daemon may not go lower.
    pub(super) fn in_force(&self, requested: &Resources) -> Resources {
        let mut r = requested.clone();
        if !self.deps.facts.hugetlb {
            r.hugepage_limits.clear();
        }
        r.oom_score_adj =
            runtime_spec::oom_score_adj(r.oom_score_adj, self.deps.facts.oom_score_adj_min) as i64;
        r
    }

    fn find_image(&self, spec: &ContainerSpec) -> Result<Arc<ImageRecord>, Error> {
        present_image(
            &self.deps.images,
            &spec.image,
            &spec.user_specified_image,
            "config.image.image",
        )
    }

    /// The init pid of the running container `target` of the same sandbox.
    fn target_pid(&self, sandbox_id: &str, target: &str) -> Result<i32, Error> {
        let field = "config.linux.security_context.namespace_options.target_id";
        let entry = self
            .registry
            .lookup(target)
            .map_err(|_| Error::invalid(field, format!("container {target:?} not found")))?;
        let rec = entry.snapshot();
        if rec.spec.sandbox_id != sandbox_id {
            return Err(Error::invalid(
                field,
                format!("container {target:?} is in another pod sandbox"),
            ));
        }
        match rec.init {
            Some(p) if rec.state == ContainerState::Running && self.deps.host.is_alive(p) => {
                Ok(p.pid)
            }
            _ => Err(Error::FailedPrecondition(format!(
                "{field}: container {target:?} is not running"
            ))),
        }
    }

    /// Makes the container: its root filesystem, image volumes, user,
    /// files, OCI spec, and the runtime's create, recording in `rec` what
    /// exists.
    async fn set_up(&self, rec: &mut ContainerRecord, c: &Checked) -> Result<(), Error> {
        std::fs::create_dir_all(&rec.dir)
            .map_err(|e| Error::internal(&format!("create {}", rec.dir.display()), e))?;
        let idmap = PodIdmap::of(&c.pod)?;
        self.mount_rootfs(rec, idmap.as_ref())?;
        let mounts = self.all_mounts(rec, c, idmap.as_ref())?;
        let image = &c.image.run;
        let resolved = resolve_user(rec, image)?;
        rec.user = Some(resolved.clone());
        let hosts = write_rootfs_files(rec, &c.pod, image, &mounts)?;
        let mut oci = runtime_spec::build(&runtime_spec::SpecInputs {
            rec,
            pod: &c.pod,
            image,
            user: &resolved,
            mounts: &mounts,
            devices: &c.devices,
            hosts_file: &hosts,
            target_pid: c.target_pid,
            host: &self.deps.facts,
        })?;
        if let Some(idmap) = &idmap {
            idmapped::idmap_bind_sources(self.deps.host.as_ref(), rec, idmap, &mounts, &mut oci)?;
        }
        let json = serde_json::to_vec_pretty(&oci)
            .map_err(|e| Error::internal("encode config.json", e))?;
        write_volatile(&rec.dir.join("config.json"), &json, 0o600)
            .map_err(|e| Error::internal("write config.json", e))?;
        let launched = c.runtime.create(&rec.handle(), &self.io(rec)).await?;
        rec.monitor = Some(launched.monitor);
        rec.init = Some(launched.init);
        Ok(())
    }

    /// The image's layers under the container's writable layer; in a
    /// user-namespaced pod, id-mapped layers under a writable layer whose
    /// root belongs to the pod's root.
    fn mount_rootfs(
        &self,
        rec: &ContainerRecord,
        idmap: Option<&PodIdmap<'_>>,
    ) -> Result<(), Error> {
        let lower = layer_dirs(
            &self.deps.images,
            &rec.layers,
            &rec.image_id,
            "config.image.image",
        )?;
        let lower = match idmap {
            Some(idmap) => {
                // Before the mount: overlayfs takes its root's owner then.
                std::fs::create_dir_all(rec.upper_dir())
                    .map_err(|e| Error::internal("create the writable layer", e))?;
                idmapped::give_to_pod_root(&rec.upper_dir(), &idmap.maps)?;
                idmapped::idmapped_layers(self.deps.host.as_ref(), rec, idmap, &lower, "rootfs")?
            }
            None => lower,
        };
        self.deps
            .host
            .mount_overlay(&lower, &rec.upper_dir(), &rec.work_dir(), &rec.rootfs())
            .map_err(|e| Error::internal("mount the container's root filesystem", e))
    }

    /// The CRI mounts: those of host paths as checked, then the image
    /// volumes, staged now (the spec mounts parents first whatever the
    /// order).
    fn all_mounts(
        &self,
        rec: &ContainerRecord,
        c: &Checked,
        idmap: Option<&PodIdmap<'_>>,
    ) -> Result<Vec<ResolvedMount>, Error> {
        let host = self.deps.host.as_ref();
        let staged = image_volumes::stage_all(host, &self.deps.images, rec, idmap)?;
        Ok(c.mounts.iter().cloned().chain(staged).collect())
    }

    /// Where the container's stdio goes.
    fn io(&self, rec: &ContainerRecord) -> ContainerIo {
        ContainerIo {
            log_path: rec.log_path.clone(),
            log_max_line: self.config.container_log_max_line,
            tty: rec.spec.tty,
            stdin: rec.spec.stdin,
            stdin_once: rec.spec.stdin_once,
            oom_file: self.deps.cgroups.oom_file(&rec.cgroup),
        }
    }

    /// Undoes a failed creation. What cannot be released stays visible,
    /// exited, so kubelet removes it later instead of it leaking silently.
    async fn roll_back(&self, entry: &ContainerEntry, mut draft: ContainerRecord) {
        match self.release(&mut draft).await {
            Ok(()) => {
                if let Err(e) = self.registry.remove(entry).await {
                    error!(container = %draft.id, "cannot delete record after rollback: {e}");
                }
                self.release_layers(&draft).await;
            }
            Err(e) => {
                error!(container = %draft.id, "rollback incomplete: {e}; keeping the container as exited");
                let kept = self
                    .registry
                    .transition(entry, |r| {
                        *r = draft;
                        r.state = ContainerState::Exited;
                        r.finished_at = super::now();
                        r.exit_code = 128;
                        r.reason = "ContainerCannotRun".into();
                        r.message = format!("creation failed and was not fully undone: {e}");
                    })
                    .await;
                if let Err(e) = kept {
                    error!("cannot record the container kept after a failed rollback: {e}");
                }
            }
        }
    }
}

/// A container has its pod's user namespace: the one it names must be
/// that, it cannot use the host's PID namespace from inside it, and its
/// mounts may only be id-mapped inside one.
fn check_userns(spec: &ContainerSpec, pod: &PodContext) -> Result<(), Error> {
    const NS: &str = "config.linux.security_context.namespace_options";
    if !spec.security.userns.matches(pod.userns.as_ref()) {
        return Err(Error::invalid(
            &format!("{NS}.userns_options"),
            format!(
                "differs from the user namespace of pod sandbox {} ({})",
                pod.id,
                match &pod.userns {
                    Some(maps) => format!("POD, uids {} gids {}", maps.uid, maps.gid),
                    None => "NODE".to_string(),
                }
            ),
        ));
    }
    if pod.userns.is_none() {
        if let Some(i) = spec.mounts.iter().position(|m| m.id_maps.is_some()) {
            return Err(Error::invalid(
                &format!("config.mounts[{i}].uidMappings"),
                "id-mapped mounts need a pod with a user namespace (userns_options mode POD)",
            ));
        }
        return Ok(());
    }
    if spec.security.pid == PidMode::Node {
        return Err(Error::invalid(
            &format!("{NS}.pid"),
            "NODE cannot be combined with the pod's user namespace",
        ));
    }
    Ok(())
}

/// The unpacked directories of an image's layers (chain ids, bottom
/// first), which must all be there; NotFound naming `field` otherwise.
pub(super) fn layer_dirs(
    images: &Images,
    layers: &[String],
    image_id: &str,
    field: &str,
) -> Result<Vec<PathBuf>, Error> {
    let dirs: Vec<PathBuf> = layers.iter().map(|c| images.layer_dir(c)).collect();
    match dirs.iter().find(|l| !l.is_dir()) {
        Some(missing) => Err(Error::NotFound(format!(
            "{field}: layer {} of image {image_id} is missing; pull the image again",
            missing.display(),
        ))),
        None => Ok(dirs),
    }
}

/// An image in the store by the name kubelet gives (usually its id), else
/// by the one the user wrote; NotFound naming `field` when it is neither.
pub(super) fn present_image(
    images: &Images,
    image: &str,
    user_specified: &str,
    field: &str,
) -> Result<Arc<ImageRecord>, Error> {
    for name in [image, user_specified] {
        if name.is_empty() {
            continue;
        }
        if let Ok(Some(img)) = images.get(name) {
            return Ok(img);
        }
    }
    Err(Error::NotFound(format!(
        "{field}: image {:?} is not present (pull it first)",
        if image.is_empty() {
            user_specified
        } else {
            image
        }
    )))
}

/// The devices the request names, and all of the host's for a privileged
/// container.
fn devices(spec: &ContainerSpec) -> Result<Vec<ResolvedDevice>, Error> {
    let mut devices = mounts::resolve_devices(&spec.devices)?;
    if spec.security.privileged {
        let requested: Vec<String> = devices.iter().map(|d| d.container_path.clone()).collect();
        devices.extend(
            mounts::host_devices()
                .into_iter()
                .filter(|d| !requested.contains(&d.container_path)),
        );
    }
    Ok(devices)
}

/// The signal that stops the container: the config's, else the image's,
/// else SIGTERM.
fn stop_signal(spec: &ContainerSpec, image: &ImageRecord) -> i32 {
    if spec.stop_signal != 0 {
        return spec.stop_signal;
    }
    if image.run.stop_signal.is_empty() {
        return libc::SIGTERM;
    }
    signals::parse(&image.run.stop_signal).unwrap_or_else(|| {
        warn!(image = %image.id, signal = %image.run.stop_signal, "unknown stop signal in the image config; using SIGTERM");
        libc::SIGTERM
    })
}

/// The image name ContainerStatus reports.
fn image_name(spec: &ContainerSpec, image: &ImageRecord) -> String {
    if !spec.user_specified_image.is_empty() {
        return spec.user_specified_image.clone();
    }
    if spec.image.starts_with("sha256:") || !image.repo_tags.contains(&spec.image) {
        return image
            .repo_tags
            .first()
            .cloned()
            .unwrap_or_else(|| spec.image.clone());
    }
    spec.image.clone()
}

/// The image reference ContainerStatus reports: a repo digest, else the id.
fn image_ref(image: &ImageRecord) -> String {
    image
        .repo_digests
        .first()
        .cloned()
        .unwrap_or_else(|| image.id.clone())
}

/// The absolute log file: the sandbox's log directory joined with the
/// container's relative `log_path`, never outside that directory.
fn log_path(pod: &PodContext, log_path: &str) -> Result<Option<PathBuf>, Error> {
    if log_path.is_empty() {
        return Ok(None);
    }
    let rel = Path::new(log_path);
    let escapes = rel.is_absolute()
        || log_path.contains('\0')
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)));
    if escapes {
        return Err(Error::invalid(
            "config.log_path",
            format!("{log_path:?} must be a relative path inside the sandbox's log directory"),
        ));
    }
    if pod.log_directory.is_empty() {
        return Err(Error::invalid(
            "config.log_path",
            "set, but the pod sandbox has no log_directory",
        ));
    }
    Ok(Some(Path::new(&pod.log_directory).join(rel)))
}

/// The user the process runs as, from the request and the image's own
/// /etc/passwd and /etc/group.
fn resolve_user(rec: &ContainerRecord, image: &RunConfig) -> Result<user::ResolvedUser, Error> {
    let sec = &rec.spec.security;
    let req = user::UserRequest {
        run_as_user: sec.run_as_user,
        run_as_group: sec.run_as_group,
        run_as_username: sec.run_as_username.clone(),
        image_user: image.user.clone(),
        supplemental_groups: sec.supplemental_groups.clone(),
    };
    let mut resolved = user::resolve_user(&rec.rootfs(), &req)?;
    if sec.supplemental_groups_strict {
        // Only the primary group and the listed ones.
        let listed: Vec<u32> = sec.supplemental_groups.iter().map(|g| *g as u32).collect();
        resolved.additional_gids.retain(|g| listed.contains(g));
    }
    Ok(resolved)
}

/// The image's volumes in the writable layer and the container's
/// /etc/hosts; the hosts file's path.
fn write_rootfs_files(
    rec: &ContainerRecord,
    pod: &PodContext,
    image: &RunConfig,
    mounts: &[ResolvedMount],
) -> Result<PathBuf, Error> {
    let mounted: Vec<String> = mounts.iter().map(|m| m.container_path.clone()).collect();
    let owner = pod.userns.and_then(|maps| maps.host_root());
    rootfs::create_volumes(&rec.rootfs(), &image.volumes, &mounted, owner)
        .map_err(|e| Error::internal("create the image's volumes", e))?;
    let hosts = rec.dir.join("hosts");
    write_volatile(
        &hosts,
        rootfs::hosts_file(&pod.hostname, &pod.ips).as_bytes(),
        0o644,
    )
    .map_err(|e| Error::internal("write /etc/hosts", e))?;
    Ok(hosts)
}
