//! The container lifecycle over the fakes of [`crate::testing`], in a pod
//! of the sandbox layer over the same fakes: every step of create, start,
//! stop and remove made to fail, or the daemon to die there, and what is
//! left checked.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::image::registry::RegistrySettings;
use crate::image::{ImageRecord, ImageSettings, LayerRecord};
use crate::pods::Pods;
use crate::sandbox::tests::{pod_spec, Harness};
use crate::sandbox::Sandboxes;
use crate::testing::{FakeCgroups, FakeHost, FakeRuntime, Fault};

const IMAGE: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const LAYER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
/// The image of the image volumes, `models:test`, with a layer of its own.
const VOLUME_IMAGE: &str =
    "sha256:5555555555555555555555555555555555555555555555555555555555555555";
const VOLUME_LAYER: &str =
    "sha256:6666666666666666666666666666666666666666666666666666666666666666";

/// One daemon: sandboxes and containers over the harness's store and world.
pub(super) struct Daemon {
    sandboxes: Arc<Sandboxes>,
    pub(super) containers: Arc<Containers>,
}

impl Daemon {
    fn pods(&self) -> Pods {
        Pods::new(self.sandboxes.clone(), self.containers.clone())
    }
}

/// The images `busybox:test` and `models:test`, each with one (empty)
/// layer, in the store before the first daemon starts.
fn add_image(h: &Harness) {
    add_one_image(h, IMAGE, "docker.io/library/busybox:test", LAYER);
    add_one_image(
        h,
        VOLUME_IMAGE,
        "docker.io/library/models:test",
        VOLUME_LAYER,
    );
}

fn add_one_image(h: &Harness, id: &str, tag: &str, layer: &str) {
    std::fs::create_dir_all(layer_dir(h, layer)).unwrap();
    let image = ImageRecord {
        id: id.into(),
        repo_tags: vec![tag.into()],
        repo_digests: vec![],
        size: 1,
        manifest_digest: "sha256:3".into(),
        layers: vec![LayerRecord {
            digest: "sha256:4".into(),
            diff_id: layer.into(),
            chain_id: layer.into(),
            size: 1,
        }],
        run: crate::image::manifest::RunConfig {
            cmd: vec!["sh".into()],
            ..Default::default()
        },
        pulled_at: 1,
    };
    h.store.put(Table::Images, id, &image).unwrap();
}

fn layer_dir(h: &Harness, chain_id: &str) -> std::path::PathBuf {
    h.config.images_dir().join("layers").join(&chain_id[7..])
}

pub(super) async fn start(h: &Harness) -> Daemon {
    let sandboxes = h.sandboxes().await;
    let held = held_layers(&h.store).unwrap();
    let settings = ImageSettings {
        registry: RegistrySettings::default(),
        max_concurrent_downloads: 1,
        progress_log_interval: std::time::Duration::from_secs(5),
    };
    let images = Images::open(h.config.images_dir(), h.store.clone(), settings, &held).unwrap();
    let runtime: Arc<dyn OciRuntime> = Arc::new(FakeRuntime(h.world.clone()));
    let deps = ContainerDeps {
        pods: sandboxes.clone(),
        images: Arc::new(images),
        cgroups: Arc::new(FakeCgroups(h.world.clone())),
        host: Arc::new(FakeHost(h.world.clone())),
        runtimes: [("runc".to_string(), runtime)].into(),
        facts: HostFacts::default(),
    };
    let containers = Containers::recover(h.config.clone(), h.store.clone(), deps)
        .await
        .unwrap();
    Daemon {
        sandboxes,
        containers,
    }
}

pub(super) fn container_spec(sandbox_id: &str, name: &str) -> ContainerSpec {
    ContainerSpec {
        sandbox_id: sandbox_id.into(),
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: 0,
        },
        image: "busybox:test".into(),
        user_specified_image: String::new(),
        command: vec![],
        args: vec![],
        working_dir: String::new(),
        envs: vec![],
        mounts: vec![],
        devices: vec![],
        labels: Default::default(),
        annotations: Default::default(),
        log_path: String::new(),
        stdin: false,
        stdin_once: false,
        tty: false,
        resources: Resources::default(),
        security: SecuritySpec {
            seccomp: SeccompSpec::Unconfined,
            apparmor: AppArmorSpec {
                profile_type: 1,
                localhost_ref: String::new(),
            },
            ..crate::container::runtime_spec::test_support::security_spec()
        },
        stop_signal: 0,
    }
}

/// `spec` with `image` mounted read-only at /models (an image volume).
fn with_image_volume(mut spec: ContainerSpec, image: &str) -> ContainerSpec {
    spec.mounts.push(MountSpec {
        container_path: "/models".into(),
        host_path: String::new(),
        readonly: true,
        recursive_read_only: false,
        selinux_relabel: false,
        propagation: Propagation::Private,
        id_maps: None,
        image: Some(ImageVolumeSpec {
            image: image.into(),
            user_specified_image: String::new(),
            sub_path: String::new(),
        }),
    });
    spec
}

/// A harness with the image and a ready pod; the pod's id.
pub(super) async fn with_pod() -> (Harness, Daemon, String) {
    let h = Harness::new();
    add_image(&h);
    let d = start(&h).await;
    let pod = d.sandboxes.run(pod_spec("web")).await.unwrap();
    (h, d, pod)
}

fn stored(h: &Harness) -> Vec<ContainerRecord> {
    h.store
        .load_all::<ContainerRecord>(Table::Containers)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect()
}

/// Nothing of any container is left: only the pod's own resources.
fn assert_only_the_pod_left(h: &Harness, d: &Daemon, pod: &str, when: &str) {
    assert!(stored(h).is_empty(), "{when}: records {:?}", stored(h));
    assert!(h.world.runtime_containers().is_empty(), "{when}");
    let rec = d.sandboxes.status(pod).unwrap().record;
    assert_eq!(
        h.world.cgroups(),
        std::slice::from_ref(&rec.cgroup),
        "{when}"
    );
    assert_eq!(h.world.mounts().len(), 2, "{when}: {:?}", h.world.mounts());
    assert_eq!(h.world.live_processes(), [rec.infra.unwrap().pid], "{when}");
    let dirs = std::fs::read_dir(h.config.containers_dir())
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(dirs, 0, "{when}: container directories left");
}

/// The operations before now are not counted for the fault.
fn fault_after(h: &Harness, n: usize, fault: Fault) {
    h.world.fault_at(h.world.log().len() + n, fault);
}

async fn wait_for_state(d: &Daemon, id: &str, state: ContainerState) {
    for _ in 0..200 {
        if d.containers.status(id).unwrap().state == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("container {id} never became {state:?}");
}

#[tokio::test]
async fn a_container_lives_and_goes_leaving_nothing() {
    let (h, d, pod) = with_pod().await;
    let mut events = d.containers.subscribe();
    let id = d
        .containers
        .create(container_spec(&pod, "app"))
        .await
        .unwrap();
    assert_eq!(h.world.runtime_containers(), std::slice::from_ref(&id));
    let rec = d.containers.status(&id).unwrap();
    assert!(h.world.cgroups().contains(&rec.cgroup));
    assert!(h.world.mounts().contains(&rec.rootfs()));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rec.dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["args"], serde_json::json!(["sh"]));
    d.containers.start(&id).await.unwrap();
    d.containers
        .stop(&id, Duration::from_secs(5))
        .await
        .unwrap();
    let exited = d.containers.status(&id).unwrap();
    assert_eq!(
        (exited.state, exited.exit_code),
        (ContainerState::Exited, 128 + libc::SIGTERM)
    );
    assert_eq!(stored(&h)[0].state, ContainerState::Exited);
    d.pods().remove(&pod).await.unwrap();
    assert_eq!(h.world.leftovers(), Vec::<String>::new());
    assert!(stored(&h).is_empty());
    let states: Vec<(Option<ContainerState>, ContainerState, bool)> = (0..4)
        .map(|_| events.try_recv().unwrap())
        .map(|e| (e.from, e.record.state, e.removed))
        .collect();
    use ContainerState::*;
    assert_eq!(
        states,
        [
            (None, Created, false),
            (Some(Created), Running, false),
            (Some(Running), Exited, false),
            (Some(Exited), Removing, false),
        ]
    );
    let removed = events.try_recv().unwrap();
    assert!(removed.removed);
}

/// Runs `make` with a fault at each of its operations in turn; the number
/// of operations it has.
async fn at_every_step<F, C>(make: F, check: C) -> usize
where
    F: AsyncFn(&Harness, &Daemon, &str, usize),
    C: AsyncFn(&Harness, &Daemon, &str, &str),
{
    for n in 1.. {
        let (h, d, pod) = with_pod().await;
        make(&h, &d, &pod, n).await;
        let hit = h.world.hit();
        if hit.is_empty() {
            return n - 1;
        }
        h.world.clear_faults();
        check(&h, &d, &pod, &format!("fault at step {n} ({})", hit[0])).await;
    }
    unreachable!()
}

#[tokio::test]
async fn a_failure_at_any_step_of_create_leaves_only_the_pod() {
    let steps = at_every_step(
        async |h, d, pod, n| {
            fault_after(h, n, Fault::Fail);
            let r = d.containers.create(container_spec(pod, "app")).await;
            assert_eq!(r.is_err(), !h.world.hit().is_empty(), "{r:?}");
        },
        async |h, d, pod, when| {
            assert_only_the_pod_left(h, d, pod, when);
            // The name is free again.
            d.containers
                .create(container_spec(pod, "app"))
                .await
                .unwrap();
        },
    )
    .await;
    assert_eq!(steps, 2, "the root filesystem and the runtime's create");
}

#[tokio::test]
async fn a_crash_at_any_step_of_create_is_undone_by_the_next_start() {
    at_every_step(
        async |h, d, pod, n| {
            fault_after(h, n, Fault::Crash);
            let _ = d.containers.create(container_spec(pod, "app")).await;
        },
        async |h, _, pod, when| {
            let restarted = start(h).await;
            assert_only_the_pod_left(h, &restarted, pod, when);
        },
    )
    .await;
}

#[tokio::test]
async fn a_failure_at_any_step_of_remove_keeps_the_container_for_a_retry() {
    let steps = at_every_step(
        async |h, d, pod, n| {
            let id = d
                .containers
                .create(container_spec(pod, "app"))
                .await
                .unwrap();
            d.containers.start(&id).await.unwrap();
            fault_after(h, n, Fault::Fail);
            if d.containers.remove(&id).await.is_err() {
                let kept = d.containers.status(&id).unwrap();
                assert_eq!(kept.state, ContainerState::Exited);
                assert_eq!(stored(h)[0].state, ContainerState::Exited);
            }
        },
        async |h, d, pod, when| {
            for rec in d.containers.list(&ContainerFilter::default()) {
                d.containers.remove(&rec.id).await.unwrap();
            }
            assert_only_the_pod_left(h, d, pod, when);
        },
    )
    .await;
    assert!(steps >= 4, "{steps}");
}

#[tokio::test]
async fn a_crash_at_any_step_of_remove_is_finished_by_the_next_start() {
    at_every_step(
        async |h, d, pod, n| {
            let id = d
                .containers
                .create(container_spec(pod, "app"))
                .await
                .unwrap();
            d.containers.start(&id).await.unwrap();
            // Stopped first: a crash of the exit's own handling would leave
            // this daemon waiting for an exit it can no longer record.
            d.containers.stop(&id, Duration::ZERO).await.unwrap();
            fault_after(h, n, Fault::Crash);
            let _ = d.containers.remove(&id).await;
        },
        async |h, _, pod, when| {
            let restarted = start(h).await;
            // A removal cut short is finished; one that never began leaves
            // the exited container for kubelet to remove.
            for rec in restarted.containers.list(&ContainerFilter::default()) {
                assert_eq!(rec.state, ContainerState::Exited, "{when}");
                restarted.containers.remove(&rec.id).await.unwrap();
            }
            assert_only_the_pod_left(h, &restarted, pod, when);
        },
    )
    .await;
}

#[tokio::test]
async fn a_refused_start_is_an_exit_that_cannot_run() {
    let (h, d, pod) = with_pod().await;
    let id = d
        .containers
        .create(container_spec(&pod, "app"))
        .await
        .unwrap();
    fault_after(&h, 1, Fault::Fail);
    let err = d.containers.start(&id).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("injected failure of runtime start"),
        "{err}"
    );
    let rec = d.containers.status(&id).unwrap();
    assert_eq!(
        (rec.state, rec.exit_code, rec.reason.as_str()),
        (ContainerState::Exited, 128, "ContainerCannotRun")
    );
    d.containers.remove(&id).await.unwrap();
    assert_only_the_pod_left(&h, &d, &pod, "after remove");
}

#[tokio::test]
async fn exits_while_the_daemon_is_down_are_recorded_at_start() {
    let (h, d, pod) = with_pod().await;
    let exits = d
        .containers
        .create(container_spec(&pod, "exits"))
        .await
        .unwrap();
    let lost = d
        .containers
        .create(container_spec(&pod, "lost"))
        .await
        .unwrap();
    let runs = d
        .containers
        .create(container_spec(&pod, "runs"))
        .await
        .unwrap();
    for id in [&exits, &lost, &runs] {
        d.containers.start(id).await.unwrap();
    }
    let lost_monitor = d.containers.status(&lost).unwrap().monitor.unwrap();
    drop(d);
    h.world.exit_container(&exits, 3);
    h.world.end_process(lost_monitor.pid);
    let restarted = start(&h).await;
    let rec = restarted.containers.status(&exits).unwrap();
    assert_eq!(
        (rec.state, rec.exit_code, rec.reason.as_str()),
        (ContainerState::Exited, 3, "Error")
    );
    let rec = restarted.containers.status(&lost).unwrap();
    assert_eq!((rec.state, rec.exit_code), (ContainerState::Exited, 255));
    assert_eq!(
        restarted.containers.status(&runs).unwrap().state,
        ContainerState::Running
    );
    // The one still running is watched again.
    h.world.exit_container(&runs, 0);
    wait_for_state(&restarted, &runs, ContainerState::Exited).await;
    let rec = restarted.containers.status(&runs).unwrap();
    assert_eq!((rec.exit_code, rec.reason.as_str()), (0, "Completed"));
}

#[tokio::test]
async fn a_failure_in_the_cleanup_of_an_exit_is_finished_by_remove() {
    let steps = at_every_step(
        async |h, d, pod, n| {
            let id = d
                .containers
                .create(container_spec(pod, "app"))
                .await
                .unwrap();
            d.containers.start(&id).await.unwrap();
            fault_after(h, n, Fault::Fail);
            d.containers
                .stop(&id, Duration::from_secs(5))
                .await
                .unwrap();
            let rec = d.containers.status(&id).unwrap();
            assert_eq!(rec.state, ContainerState::Exited);
        },
        async |h, d, pod, when| {
            for rec in d.containers.list(&ContainerFilter::default()) {
                d.containers.remove(&rec.id).await.unwrap();
            }
            assert_only_the_pod_left(h, d, pod, when);
        },
    )
    .await;
    assert!(steps >= 2, "the unmount and the runtime's delete: {steps}");
}

#[tokio::test]
async fn an_image_volume_is_staged_and_its_layers_held_until_removal() {
    let (h, d, pod) = with_pod().await;
    let spec = with_image_volume(container_spec(&pod, "app"), "models:test");
    let id = d.containers.create(spec).await.unwrap();
    let rec = d.containers.status(&id).unwrap();
    assert_eq!(
        rec.image_volumes,
        [ImageVolumeRecord {
            index: 0,
            image_id: VOLUME_IMAGE.into(),
            layers: vec![VOLUME_LAYER.into()],
        }]
    );
    let staging = rec.dir.join("image-volumes/0");
    assert!(
        h.world.mounts().contains(&staging),
        "{:?}",
        h.world.mounts()
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rec.dir.join("config.json")).unwrap()).unwrap();
    let mount = config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/models")
        .expect("a mount at /models");
    assert_eq!(mount["source"], staging.to_string_lossy().as_ref());
    assert_eq!(
        mount["options"],
        serde_json::json!(["rbind", "rprivate", "ro", "nosuid", "nodev"])
    );
    // Removing the image keeps the layer the container uses, also across
    // a restart of the daemon.
    d.containers.deps.images.remove(VOLUME_IMAGE).await.unwrap();
    assert!(layer_dir(&h, VOLUME_LAYER).is_dir());
    drop(d);
    let d = start(&h).await;
    assert!(layer_dir(&h, VOLUME_LAYER).is_dir(), "collected at start");
    d.containers.remove(&id).await.unwrap();
    assert!(
        !layer_dir(&h, VOLUME_LAYER).exists(),
        "the unused layer stayed"
    );
    assert!(layer_dir(&h, LAYER).is_dir(), "an image's layer went");
    assert_only_the_pod_left(&h, &d, &pod, "after remove");
}

#[tokio::test]
async fn an_image_volume_of_an_absent_image_creates_nothing() {
    let (h, d, pod) = with_pod().await;
    let before = h.world.log().len();
    let spec = with_image_volume(container_spec(&pod, "app"), "absent:v1");
    let e = d.containers.create(spec).await.unwrap_err();
    assert_eq!(
        e,
        Error::NotFound(
            "config.mounts[0].image: image \"absent:v1\" is not present (pull it first)".into()
        )
    );
    assert_eq!(h.world.log().len(), before, "{:?}", h.world.log());
    assert_only_the_pod_left(&h, &d, &pod, "after the refusal");
}

#[tokio::test]
async fn an_image_volume_is_unmounted_at_exit() {
    let (h, d, pod) = with_pod().await;
    let spec = with_image_volume(container_spec(&pod, "app"), "models:test");
    let id = d.containers.create(spec).await.unwrap();
    let staging = d
        .containers
        .status(&id)
        .unwrap()
        .dir
        .join("image-volumes/0");
    d.containers.start(&id).await.unwrap();
    d.containers.stop(&id, Duration::ZERO).await.unwrap();
    for _ in 0..200 {
        if !h.world.mounts().contains(&staging) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !h.world.mounts().contains(&staging),
        "still mounted after exit"
    );
    d.containers.remove(&id).await.unwrap();
    assert_only_the_pod_left(&h, &d, &pod, "after remove");
}

#[tokio::test]
async fn a_failure_at_any_step_of_create_with_an_image_volume_leaves_only_the_pod() {
    let steps = at_every_step(
        async |h, d, pod, n| {
            fault_after(h, n, Fault::Fail);
            let spec = with_image_volume(container_spec(pod, "app"), "models:test");
            let r = d.containers.create(spec).await;
            assert_eq!(r.is_err(), !h.world.hit().is_empty(), "{r:?}");
        },
        async |h, d, pod, when| {
            assert_only_the_pod_left(h, d, pod, when);
            // Its layer is no longer held: the image's removal deletes it.
            d.containers.deps.images.remove(VOLUME_IMAGE).await.unwrap();
            assert!(!layer_dir(h, VOLUME_LAYER).exists(), "{when}: layer kept");
        },
    )
    .await;
    assert_eq!(
        steps, 3,
        "the root filesystem, the image volume, the runtime's create"
    );
}

#[tokio::test]
async fn a_crash_at_any_step_of_create_with_an_image_volume_is_undone_by_the_next_start() {
    at_every_step(
        async |h, d, pod, n| {
            fault_after(h, n, Fault::Crash);
            let spec = with_image_volume(container_spec(pod, "app"), "models:test");
            let _ = d.containers.create(spec).await;
        },
        async |h, _, pod, when| {
            let restarted = start(h).await;
            assert_only_the_pod_left(h, &restarted, pod, when);
            restarted
                .containers
                .deps
                .images
                .remove(VOLUME_IMAGE)
                .await
                .unwrap();
            assert!(!layer_dir(h, VOLUME_LAYER).exists(), "{when}: layer kept");
        },
    )
    .await;
}

#[test]
fn a_record_of_a_version_without_image_volumes_loads() {
    use crate::container::runtime_spec::test_support;
    let mut rec = test_support::record("app", test_support::security_spec(), Resources::default());
    rec.spec.mounts = with_image_volume(rec.spec.clone(), "models:test").mounts;
    rec.spec.mounts[0].image = None;
    rec.spec.mounts[0].host_path = "/srv".into();
    let mut old = serde_json::to_value(&rec).unwrap();
    old.as_object_mut().unwrap().remove("image_volumes");
    old["spec"]["mounts"][0]
        .as_object_mut()
        .unwrap()
        .remove("image");
    let loaded: ContainerRecord = serde_json::from_value(old).unwrap();
    assert!(loaded.image_volumes.is_empty());
    assert_eq!(loaded.spec.mounts, rec.spec.mounts);
}
