//! CPU, memory and cpuset limits written straight to a cgroup that peapod
//! runs processes in itself, without an OCI runtime: a sandbox's infra
//! cgroup. Containers' limits are runc's to write (from their OCI spec).
//!
//! Files are written in an order the kernel accepts (the CFS period before
//! the quota); if one write fails, the files written before it get their
//! old values back, so a refused update changes nothing.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{CgroupError, CgroupLayout, Hierarchy};

/// Limits for one cgroup; zero and empty mean "leave as it is".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupLimits {
    /// CFS period in microseconds.
    pub cpu_period: u64,
    /// CFS quota in microseconds per period; -1 removes the quota.
    pub cpu_quota: i64,
    /// v1 `cpu.shares`; on v2 converted to `cpu.weight`.
    pub cpu_shares: u64,
    pub memory_limit_in_bytes: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
}

impl CgroupLimits {
    pub fn is_empty(&self) -> bool {
        *self == CgroupLimits::default()
    }
}

impl CgroupLayout {
    /// Writes `limits` to cgroup `path` in every hierarchy that carries
    /// their controller (the v1 ones, or on a unified host the v2 one).
    /// All or nothing: see the module's doc.
    pub fn set_limits(&self, path: &str, limits: &CgroupLimits) -> Result<(), CgroupError> {
        let path = self.check_path(path)?;
        let writes = match self.is_v2() {
            true => self
                .unified_hierarchy()
                .map(|h| v2_writes(h.dir(&path), limits))
                .unwrap_or_default(),
            false => self
                .hierarchies()
                .iter()
                .filter(|h| !h.is_unified())
                .flat_map(|h| v1_writes(h, &path, limits))
                .collect(),
        };
        write_all_or_restore(&writes)
    }
}

/// One file and the value it gets.
type Write = (PathBuf, String);

fn v1_writes(h: &Hierarchy, path: &str, l: &CgroupLimits) -> Vec<Write> {
    let dir = h.dir(path);
    let mut out = Vec::new();
    if h.has_controller("cpu") {
        if l.cpu_period > 0 {
            out.push((dir.join("cpu.cfs_period_us"), l.cpu_period.to_string()));
        }
        if l.cpu_quota != 0 {
            out.push((dir.join("cpu.cfs_quota_us"), l.cpu_quota.to_string()));
        }
        if l.cpu_shares > 0 {
            out.push((dir.join("cpu.shares"), l.cpu_shares.to_string()));
        }
    }
    if h.has_controller("memory") && l.memory_limit_in_bytes > 0 {
        let value = l.memory_limit_in_bytes.to_string();
        out.push((dir.join("memory.limit_in_bytes"), value));
    }
    if h.has_controller("cpuset") {
        out.extend(cpuset_writes(&dir, l));
    }
    out
}

fn v2_writes(dir: PathBuf, l: &CgroupLimits) -> Vec<Write> {
    let mut out = Vec::new();
    if l.cpu_quota != 0 || l.cpu_period > 0 {
        out.push((dir.join("cpu.max"), cpu_max(&dir, l)));
    }
    if l.cpu_shares > 0 {
        out.push((
            dir.join("cpu.weight"),
            shares_to_weight(l.cpu_shares).to_string(),
        ));
    }
    if l.memory_limit_in_bytes > 0 {
        let value = l.memory_limit_in_bytes.to_string();
        out.push((dir.join("memory.max"), value));
    }
    out.extend(cpuset_writes(&dir, l));
    out
}

fn cpuset_writes(dir: &Path, l: &CgroupLimits) -> Vec<Write> {
    let mut out = Vec::new();
    if !l.cpuset_cpus.is_empty() {
        out.push((dir.join("cpuset.cpus"), l.cpuset_cpus.clone()));
    }
    if !l.cpuset_mems.is_empty() {
        out.push((dir.join("cpuset.mems"), l.cpuset_mems.clone()));
    }
    out
}

/// `cpu.max` ("<quota|max> <period>"): what the limits set, the rest as
/// the file holds it now.
fn cpu_max(dir: &Path, l: &CgroupLimits) -> String {
    let now = fs::read_to_string(dir.join("cpu.max")).unwrap_or_default();
    let mut fields = now.split_whitespace();
    let (old_quota, old_period) = (fields.next().unwrap_or("max"), fields.next());
    let quota = match l.cpu_quota {
        0 => old_quota.to_string(),
        q if q < 0 => "max".to_string(),
        q => q.to_string(),
    };
    let period = match l.cpu_period {
        0 => old_period.unwrap_or("100000").to_string(),
        p => p.to_string(),
    };
    format!("{quota} {period}")
}

/// v1 shares (2..262144) to a v2 weight (1..10000), the conversion runc
/// and kubelet use.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + (shares - 2) * 9999 / 262_142
}

/// Writes each file in order; on the first failure writes the old values
/// back to those already written and returns that failure.
fn write_all_or_restore(writes: &[Write]) -> Result<(), CgroupError> {
    let mut done: Vec<Write> = Vec::new();
    for (file, value) in writes {
        if let Err(e) = replace(file, value, &mut done) {
            restore(&done);
            return Err(e);
        }
    }
    Ok(())
}

/// Writes `value` to `file`, noting its old value in `done`.
fn replace(file: &Path, value: &str, done: &mut Vec<Write>) -> Result<(), CgroupError> {
    let old = fs::read_to_string(file).map_err(CgroupError::read(file))?;
    fs::write(file, value).map_err(|source| CgroupError::Write {
        path: file.to_path_buf(),
        value: value.to_string(),
        source,
    })?;
    done.push((file.to_path_buf(), old.trim().to_string()));
    Ok(())
}

/// Best effort, newest first: the update is failing already.
fn restore(written: &[Write]) {
    for (file, old) in written.iter().rev() {
        let _ = fs::write(file, old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_convert_to_weights_as_runc_does() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1);
    }

    #[test]
    fn a_failed_write_puts_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        fs::write(&a, "old\n").unwrap();
        let missing = dir.path().join("nope/b");
        let err = write_all_or_restore(&[(a.clone(), "new".into()), (missing, "x".into())]);
        assert!(err.is_err());
        assert_eq!(fs::read_to_string(&a).unwrap(), "old");
    }

    #[test]
    fn cpu_max_keeps_what_the_limits_leave_out() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cpu.max"), "max 100000\n").unwrap();
        let quota = CgroupLimits {
            cpu_quota: 50_000,
            ..Default::default()
        };
        assert_eq!(cpu_max(dir.path(), &quota), "50000 100000");
        let period = CgroupLimits {
            cpu_period: 20_000,
            ..Default::default()
        };
        assert_eq!(cpu_max(dir.path(), &period), "max 20000");
    }
}
