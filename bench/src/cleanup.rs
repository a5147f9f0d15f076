//! Removes everything a run made, also after an error or a signal: its
//! containers, sandboxes and pulled images on every target, the runc floor's
//! containers, the cgroup tree and the directories.

use std::collections::HashMap;
use std::sync::PoisonError;

use peapod::api::runtime_service_client::RuntimeServiceClient;
use peapod::api::{
    ContainerFilter, ListContainersRequest, ListPodSandboxRequest, PodSandboxFilter,
    RemoveContainerRequest, RemoveImageRequest, RemovePodSandboxRequest, StopContainerRequest,
    StopPodSandboxRequest,
};
use tonic::transport::Channel;

use crate::command::run_command;
use crate::cri::image::ImageBench;
use crate::cri::{call, CALL_LIMIT};
use crate::error::BenchError;
use crate::floor::RUNC;
use crate::run::{tracked_in, untrack_in, Shared, RUN_LABEL};

/// Removes what this run made: on every target its containers, then its
/// sandboxes, then the images it pulled; the floor's containers, the
/// cgroup tree and the run's directories. True when nothing is left.
pub async fn cleanup(shared: &Shared) -> bool {
    let mut clean = true;
    let clients = shared
        .clients
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for (name, rt) in &clients {
        clean &= cleanup_containers(shared, name, rt.clone()).await;
    }
    for (name, rt) in clients {
        clean &= cleanup_sandboxes(shared, &name, rt).await;
    }
    clean &= cleanup_images(shared).await;
    clean &= cleanup_floor(shared).await;
    let left = shared.cgroups.remove(&shared.cgroups.parent);
    for l in &left {
        eprintln!("cleanup: cgroup not removed: {l}");
    }
    clean &= left.is_empty();
    remove_dirs(shared);
    clean
}

/// Stops and removes the sandboxes of this run on one target (the tracked
/// ids plus any listed with this run's label).
async fn cleanup_sandboxes(
    shared: &Shared,
    name: &str,
    mut rt: RuntimeServiceClient<Channel>,
) -> bool {
    let mut clean = true;
    let mut ids = tracked_in(&shared.live, name);
    for id in labelled_sandboxes(shared, name, &mut rt).await {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if !ids.is_empty() {
        eprintln!("cleanup: {name}: removing {} sandboxes", ids.len());
    }
    for id in ids {
        let stop = StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        };
        if let Err(e) = call(
            name,
            "StopPodSandbox",
            CALL_LIMIT,
            rt.stop_pod_sandbox(stop),
        )
        .await
        {
            eprintln!("cleanup: {e}");
        }
        let rm = RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        };
        match call(
            name,
            "RemovePodSandbox",
            CALL_LIMIT,
            rt.remove_pod_sandbox(rm),
        )
        .await
        {
            Ok(_) => shared.untrack(name, &id),
            Err(e) => {
                eprintln!("cleanup: {e}");
                clean = false;
            }
        }
    }
    clean
}

/// The sandboxes a target lists with this run's label (none when the list
/// fails: the tracked ones are still removed).
async fn labelled_sandboxes(
    shared: &Shared,
    name: &str,
    rt: &mut RuntimeServiceClient<Channel>,
) -> Vec<String> {
    let req = ListPodSandboxRequest {
        filter: Some(PodSandboxFilter {
            label_selector: HashMap::from([(RUN_LABEL.to_string(), shared.run_id.clone())]),
            ..Default::default()
        }),
    };
    match call(name, "ListPodSandbox", CALL_LIMIT, rt.list_pod_sandbox(req)).await {
        Ok((resp, _)) => resp
            .items
            .into_iter()
            // Only ours: a runtime may ignore the label selector.
            .filter(|item| item.labels.get(RUN_LABEL) == Some(&shared.run_id))
            .map(|item| item.id)
            .collect(),
        Err(e) => {
            eprintln!("cleanup: {e}");
            Vec::new()
        }
    }
}

/// The run's pod log, pull, streaming and floor directories.
fn remove_dirs(shared: &Shared) {
    let dirs = [
        &shared.pods_dir,
        &shared.pull_dir,
        &shared.streaming_dir,
        &shared.floor_dir,
    ];
    for dir in dirs {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("cleanup: {}: {e}", dir.display());
            }
        }
    }
}

/// Stops and removes the containers of this run on one target (the tracked
/// ids plus any listed with this run's label), before their sandboxes go.
async fn cleanup_containers(
    shared: &Shared,
    name: &str,
    mut rt: RuntimeServiceClient<Channel>,
) -> bool {
    let mut clean = true;
    let mut ids = tracked_in(&shared.containers, name);
    let req = ListContainersRequest {
        filter: Some(ContainerFilter {
            label_selector: HashMap::from([(RUN_LABEL.to_string(), shared.run_id.clone())]),
            ..Default::default()
        }),
    };
    match call(name, "ListContainers", CALL_LIMIT, rt.list_containers(req)).await {
        Ok((resp, _)) => {
            for c in resp.containers {
                if c.labels.get(RUN_LABEL) == Some(&shared.run_id) && !ids.contains(&c.id) {
                    ids.push(c.id);
                }
            }
        }
        Err(e) => eprintln!("cleanup: {e}"),
    }
    if !ids.is_empty() {
        eprintln!("cleanup: {name}: removing {} containers", ids.len());
    }
    for id in ids {
        let stop = StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        };
        if let Err(e) = call(name, "StopContainer", CALL_LIMIT, rt.stop_container(stop)).await {
            eprintln!("cleanup: {e}");
        }
        let rm = RemoveContainerRequest {
            container_id: id.clone(),
        };
        match call(name, "RemoveContainer", CALL_LIMIT, rt.remove_container(rm)).await {
            Ok(_) => untrack_in(&shared.containers, name, &id),
            Err(e) => {
                eprintln!("cleanup: {e}");
                clean = false;
            }
        }
    }
    clean
}

/// Removes the images this run pulled and has not removed yet.
async fn cleanup_images(shared: &Shared) -> bool {
    let mut clean = true;
    let clients = shared
        .image_clients
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for (name, mut ic) in clients {
        for image in tracked_in(&shared.pulled, &name) {
            eprintln!("cleanup: {name}: removing image {image}");
            let req = RemoveImageRequest {
                image: ImageBench::spec(&image),
            };
            match call(&name, "RemoveImage", CALL_LIMIT, ic.remove_image(req)).await {
                Ok(_) => untrack_in(&shared.pulled, &name, &image),
                Err(e) => {
                    eprintln!("cleanup: {e}");
                    clean = false;
                }
            }
        }
    }
    clean
}

/// Deletes the runc floor's containers that are left (`runc delete --force`
/// kills them and removes their cgroups).
async fn cleanup_floor(shared: &Shared) -> bool {
    let ids = shared
        .floor
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if ids.is_empty() {
        return true;
    }
    eprintln!("cleanup: {RUNC}: deleting {} containers", ids.len());
    let runc = shared.runc.to_string_lossy().into_owned();
    let root = shared.floor_dir.join("root").to_string_lossy().into_owned();
    let mut clean = true;
    for id in ids {
        match run_command(
            &runc,
            &["--root", &root, "delete", "--force", &id],
            CALL_LIMIT,
        )
        .await
        {
            Ok(_) => {}
            // Interrupted before runc created it.
            Err(BenchError::Command { stderr, .. }) if stderr.contains("does not exist") => {}
            Err(e) => {
                eprintln!("cleanup: {e}");
                clean = false;
                continue;
            }
        }
        shared
            .floor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|i| i != &id);
    }
    clean
}
