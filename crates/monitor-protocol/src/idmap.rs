//! A pod's user-namespace id mappings, as the daemon records them and the
//! monitor writes them to `/proc/<pid>/uid_map` and `gid_map`.
//!
//! On the monitor's command line a mapping is `CONTAINER:HOST:LENGTH`.

use serde::{Deserialize, Serialize};

/// One range of ids: `length` ids from `container_id` inside the user
/// namespace are `host_id`.. outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdMap {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

impl IdMap {
    /// The line the kernel takes in a `uid_map`/`gid_map` file.
    pub fn map_line(&self) -> String {
        format!("{} {} {}\n", self.container_id, self.host_id, self.length)
    }

    /// The host id of `container_id`, when the range covers it.
    pub fn to_host(&self, container_id: u32) -> Option<u32> {
        let offset = container_id.checked_sub(self.container_id)?;
        (offset < self.length).then(|| self.host_id + offset)
    }

    /// Whether both ends of the range fit in 32 bits and it is not empty.
    pub fn is_valid(&self) -> bool {
        self.length > 0
            && self.container_id.checked_add(self.length - 1).is_some()
            && self.host_id.checked_add(self.length - 1).is_some()
    }

    /// Parses `CONTAINER:HOST:LENGTH`.
    pub fn parse(text: &str) -> Option<IdMap> {
        let mut parts = text.split(':').map(|p| p.parse::<u32>().ok());
        let map = IdMap {
            container_id: parts.next()??,
            host_id: parts.next()??,
            length: parts.next()??,
        };
        (parts.next().is_none() && map.is_valid()).then_some(map)
    }
}

impl std::fmt::Display for IdMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.container_id, self.host_id, self.length)
    }
}

/// The uid and gid mappings of a user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserNamespaceMaps {
    pub uid: IdMap,
    pub gid: IdMap,
}

impl UserNamespaceMaps {
    /// The host uid and gid of the namespace's root, when it maps one.
    pub fn host_root(&self) -> Option<(u32, u32)> {
        Some((self.uid.to_host(0)?, self.gid.to_host(0)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_same_mapping() {
        let m = IdMap::parse("0:65536:65536").expect("valid");
        assert_eq!(
            m,
            IdMap {
                container_id: 0,
                host_id: 65536,
                length: 65536
            }
        );
        assert_eq!(m.to_string(), "0:65536:65536");
        assert_eq!(m.map_line(), "0 65536 65536\n");
    }

    #[test]
    fn refuses_empty_overflowing_and_malformed_ranges() {
        for bad in [
            "0:1:0",
            "0:4294967295:2",
            "4294967295:0:2",
            "0:1",
            "0:1:2:3",
            "a:1:2",
            "-1:1:2",
            "",
        ] {
            assert_eq!(IdMap::parse(bad), None, "{bad}");
        }
        assert!(IdMap::parse("0:4294967294:1").is_some());
    }

    #[test]
    fn maps_ids_inside_the_range_only() {
        let m = IdMap::parse("10:1000:5").unwrap();
        assert_eq!(m.to_host(9), None);
        assert_eq!(m.to_host(10), Some(1000));
        assert_eq!(m.to_host(14), Some(1004));
        assert_eq!(m.to_host(15), None);
        let maps = UserNamespaceMaps {
            uid: IdMap::parse("0:100000:65536").unwrap(),
            gid: IdMap::parse("0:200000:65536").unwrap(),
        };
        assert_eq!(maps.host_root(), Some((100000, 200000)));
        let no_root = UserNamespaceMaps { uid: m, gid: m };
        assert_eq!(no_root.host_root(), None);
    }
}
