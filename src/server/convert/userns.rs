//! CRI `UserNamespace` options to the mappings of a pod's user namespace,
//! shared by RunPodSandbox and CreateContainer (which repeats the pod's).

use crate::api;
use crate::errors::Error;
use crate::userns::{IdMap, UserNamespaceMaps};

/// The mappings of a user namespace for the pod (`POD`), or `None` for
/// the host's (`NODE`, or no options). `field` is where the options sit in
/// the request.
pub fn userns_from(
    options: Option<&api::UserNamespace>,
    field: &str,
) -> Result<Option<UserNamespaceMaps>, Error> {
    let Some(options) = options else {
        return Ok(None);
    };
    match api::NamespaceMode::try_from(options.mode) {
        Ok(api::NamespaceMode::Node) => Ok(None),
        Ok(api::NamespaceMode::Pod) => Ok(Some(UserNamespaceMaps {
            uid: one_mapping(&options.uids, &format!("{field}.uids"), true)?,
            gid: one_mapping(&options.gids, &format!("{field}.gids"), true)?,
        })),
        _ => Err(Error::invalid(
            &format!("{field}.mode"),
            format!(
                "mode {} is not supported for a user namespace (POD or NODE)",
                options.mode
            ),
        )),
    }
}

/// The id mappings of an id-mapped mount (`uidMappings`/`gidMappings` of
/// a CRI `Mount`, whose `field` is given): none, or one of each.
pub fn mount_maps_from(
    uids: &[api::IdMapping],
    gids: &[api::IdMapping],
    field: &str,
) -> Result<Option<UserNamespaceMaps>, Error> {
    if uids.is_empty() && gids.is_empty() {
        return Ok(None);
    }
    Ok(Some(UserNamespaceMaps {
        uid: one_mapping(uids, &format!("{field}.uidMappings"), false)?,
        gid: one_mapping(gids, &format!("{field}.gidMappings"), false)?,
    }))
}

/// A pod's user namespace as CRI reports it: `None` for the host's (as
/// requests without options say).
pub fn userns_to_api(maps: Option<&UserNamespaceMaps>) -> Option<api::UserNamespace> {
    maps.map(|maps| api::UserNamespace {
        mode: api::NamespaceMode::Pod as i32,
        uids: vec![id_mapping_to_api(maps.uid)],
        gids: vec![id_mapping_to_api(maps.gid)],
    })
}

pub fn id_mapping_to_api(map: IdMap) -> api::IdMapping {
    api::IdMapping {
        host_id: map.host_id,
        container_id: map.container_id,
        length: map.length,
    }
}

/// The single mapping of a user namespace. A pod's must map container id
/// 0 (`needs_root`: the container's root must be someone).
fn one_mapping(mappings: &[api::IdMapping], field: &str, needs_root: bool) -> Result<IdMap, Error> {
    let [m] = mappings else {
        return Err(Error::invalid(
            field,
            format!(
                "a user namespace here takes exactly one mapping, got {}",
                mappings.len()
            ),
        ));
    };
    let map = IdMap {
        container_id: m.container_id,
        host_id: m.host_id,
        length: m.length,
    };
    if !map.is_valid() {
        return Err(Error::invalid(
            field,
            format!("{map} is empty or runs past the largest 32-bit id"),
        ));
    }
    if needs_root && map.to_host(0).is_none() {
        return Err(Error::invalid(
            field,
            format!("{map} does not map container id 0"),
        ));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: &str = "x.userns_options";

    fn mapping(container_id: u32, host_id: u32, length: u32) -> api::IdMapping {
        api::IdMapping {
            host_id,
            container_id,
            length,
        }
    }

    fn options(mode: api::NamespaceMode, uids: Vec<api::IdMapping>) -> api::UserNamespace {
        api::UserNamespace {
            mode: mode as i32,
            gids: uids.clone(),
            uids,
        }
    }

    fn field_of(result: Result<Option<UserNamespaceMaps>, Error>) -> String {
        match result.unwrap_err() {
            Error::InvalidArgument { field, .. } => field,
            e => panic!("not InvalidArgument: {e:?}"),
        }
    }

    #[test]
    fn node_or_nothing_is_the_hosts_namespace() {
        assert_eq!(userns_from(None, F).unwrap(), None);
        let node = options(api::NamespaceMode::Node, vec![]);
        assert_eq!(userns_from(Some(&node), F).unwrap(), None);
    }

    #[test]
    fn pod_mode_takes_the_mapping_as_sent() {
        let pod = options(api::NamespaceMode::Pod, vec![mapping(0, 65536 * 3, 65536)]);
        let maps = userns_from(Some(&pod), F).unwrap().unwrap();
        assert_eq!(userns_to_api(Some(&maps)), Some(pod.clone()));
        assert_eq!(maps.uid.to_string(), "0:196608:65536");
        assert_eq!(maps.host_root(), Some((196608, 196608)));
    }

    #[test]
    fn mounts_take_no_mapping_or_one_of_each() {
        let f = "config.mounts[1]";
        assert_eq!(mount_maps_from(&[], &[], f).unwrap(), None);
        let m = [mapping(1000, 101000, 10)];
        let maps = mount_maps_from(&m, &m, f).unwrap().unwrap();
        assert_eq!(maps.uid.to_string(), "1000:101000:10");
        let e = mount_maps_from(&m, &[], f).unwrap_err().to_string();
        assert!(e.contains("config.mounts[1].gidMappings"), "{e}");
    }

    #[test]
    fn refuses_other_modes_and_bad_mappings() {
        for mode in [api::NamespaceMode::Container, api::NamespaceMode::Target] {
            let o = options(mode, vec![mapping(0, 65536, 65536)]);
            assert_eq!(field_of(userns_from(Some(&o), F)), format!("{F}.mode"));
        }
        for uids in [
            vec![],
            vec![mapping(0, 65536, 10), mapping(10, 70000, 10)],
            vec![mapping(1, 65536, 65536)],
            vec![mapping(0, 65536, 0)],
            vec![mapping(0, u32::MAX, 2)],
        ] {
            let o = options(api::NamespaceMode::Pod, uids.clone());
            assert_eq!(
                field_of(userns_from(Some(&o), F)),
                format!("{F}.uids"),
                "{uids:?}"
            );
        }
        let mut o = options(api::NamespaceMode::Pod, vec![mapping(0, 65536, 65536)]);
        o.gids = vec![];
        assert_eq!(field_of(userns_from(Some(&o), F)), format!("{F}.gids"));
    }
}
