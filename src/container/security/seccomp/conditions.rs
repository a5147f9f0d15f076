//! The `includes` and `excludes` conditions of a Docker seccomp profile's
//! entries: capabilities, the host's architecture, the running kernel.

use oci_spec::runtime::Arch;
use serde::Deserialize;

use super::super::capabilities::{has_capability, normalize_capability};
use super::parse_arch;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Condition {
    caps: Option<Vec<String>>,
    arches: Option<Vec<String>>,
    min_kernel: Option<String>,
}

/// What a Docker profile's conditions are evaluated against.
#[derive(Debug, Clone)]
pub(super) struct ProfileHost {
    /// `std::env::consts::ARCH` of this host.
    pub(super) arch: &'static str,
    /// Kernel release as (major, minor, patch), if known.
    pub(super) kernel: Option<(u64, u64, u64)>,
}

impl ProfileHost {
    pub(super) fn current() -> Self {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|r| kernel_release(r.trim()));
        ProfileHost {
            arch: std::env::consts::ARCH,
            kernel,
        }
    }

    /// The SCMP architecture the host runs natively.
    pub(super) fn native(&self) -> Option<Arch> {
        let name = match self.arch {
            "x86_64" => "SCMP_ARCH_X86_64",
            "x86" => "SCMP_ARCH_X86",
            "aarch64" => "SCMP_ARCH_AARCH64",
            "arm" => "SCMP_ARCH_ARM",
            "riscv64" => "SCMP_ARCH_RISCV64",
            "s390x" => "SCMP_ARCH_S390X",
            "powerpc64" => "SCMP_ARCH_PPC64LE",
            "loongarch64" => "SCMP_ARCH_LOONGARCH64",
            _ => return None,
        };
        parse_arch(name)
    }

    /// Whether an `arches` entry of a profile condition names this host;
    /// profiles use Go's names (`amd64`, `arm64`) or the SCMP ones.
    fn matches_arch(&self, name: &str) -> bool {
        let aliases: &[&str] = match self.arch {
            "x86_64" => &["amd64", "x86_64"],
            "x86" => &["386", "x86", "i386"],
            "aarch64" => &["arm64", "aarch64"],
            "arm" => &["arm"],
            "riscv64" => &["riscv64"],
            "s390x" => &["s390x"],
            "powerpc64" => &["ppc64le", "ppc64"],
            "loongarch64" => &["loong64", "loongarch64"],
            _ => &[],
        };
        aliases.contains(&name) || (self.native().is_some() && parse_arch(name) == self.native())
    }
}

/// Architecture names profile conditions may use (Go's, plus a few usual
/// spellings); anything else is a mistake in the profile.
const CONDITION_ARCHES: &[&str] = &[
    "386",
    "i386",
    "x86",
    "amd64",
    "x86_64",
    "x32",
    "arm",
    "arm64",
    "aarch64",
    "mips",
    "mipsle",
    "mipsel",
    "mips64",
    "mips64le",
    "mipsel64",
    "mips64n32",
    "mips64len32",
    "mipsel64n32",
    "ppc",
    "ppc64",
    "ppc64le",
    "s390",
    "s390x",
    "riscv64",
    "loong64",
    "loongarch64",
    "parisc",
    "parisc64",
    "m68k",
    "sh",
    "sheb",
];

/// (major, minor, patch) from a release such as `6.18.44-fc-v1147` or a
/// profile's `4.8`; None when it does not start with `major.minor`.
fn kernel_release(release: &str) -> Option<(u64, u64, u64)> {
    let numeric: &str = release
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .unwrap_or("");
    let mut parts = numeric.split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// Evaluates an `includes` (`all_must_hold`: every capability present, the
/// host among the arches, the kernel at least minKernel) or an `excludes`
/// (any of them holding excludes the entry). An absent condition gives
/// "include" for includes and "do not exclude" for excludes.
pub(super) fn condition_holds(
    cond: Option<&Condition>,
    all_must_hold: bool,
    caps: &[String],
    host: &ProfileHost,
    at: &str,
) -> Result<bool, String> {
    let Some(cond) = cond else {
        return Ok(all_must_hold);
    };
    let mut tests = Vec::new();
    if let Some(list) = &cond.caps {
        let mut present = Vec::new();
        for (i, c) in list.iter().enumerate() {
            let cap = normalize_capability(c)
                .ok_or_else(|| format!("{at}.caps[{i}]: unknown capability {c:?}"))?;
            present.push(has_capability(caps, cap));
        }
        if !present.is_empty() {
            tests.push(if all_must_hold {
                present.iter().all(|p| *p)
            } else {
                present.iter().any(|p| *p)
            });
        }
    }
    if let Some(list) = &cond.arches {
        for (i, a) in list.iter().enumerate() {
            if !CONDITION_ARCHES.contains(&a.as_str()) && parse_arch(a).is_none() {
                return Err(format!("{at}.arches[{i}]: unknown architecture {a:?}"));
            }
        }
        if !list.is_empty() {
            tests.push(list.iter().any(|a| host.matches_arch(a)));
        }
    }
    if let Some(min) = &cond.min_kernel {
        let wanted = kernel_release(min)
            .filter(|_| min.chars().all(|c| c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| {
                format!("{at}.minKernel: {min:?} is not a kernel version such as \"4.8\"")
            })?;
        // An unknown running kernel satisfies no minimum.
        tests.push(host.kernel.is_some_and(|k| k >= wanted));
    }
    Ok(if all_must_hold {
        tests.iter().all(|t| *t)
    } else {
        tests.iter().any(|t| *t)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(kernel_release("6.18.44-fc-v1147"), Some((6, 18, 44)));
        assert_eq!(kernel_release("4.8"), Some((4, 8, 0)));
        assert_eq!(kernel_release("5.15.0-91-generic"), Some((5, 15, 0)));
        assert_eq!(kernel_release("6.1+"), Some((6, 1, 0)));
        assert_eq!(kernel_release("6"), None);
        assert_eq!(kernel_release("x.y"), None);
        assert!(ProfileHost::current().kernel.is_some());
    }
}
