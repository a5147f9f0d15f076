//! The `includes` and `excludes` conditions of a Docker seccomp profile's
//! entries: capabilities, the host's architecture, the running kernel.

use oci_spec::runtime::Arch;
use serde::Deserialize;

use super::super::capabilities::{has_capability, normalize_capability};
use super::{parse_arch, parse_each};

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

/// Whether a profile entry applies here: its `includes` holds and its
/// `excludes` does not. Both are checked before deciding, so a mistake is
/// reported even in an entry that would not apply here.
pub(super) fn entry_applies(
    includes: Option<&Condition>,
    excludes: Option<&Condition>,
    caps: &[String],
    host: &ProfileHost,
    at: &str,
) -> Result<bool, String> {
    let included = condition_holds(includes, true, caps, host, &format!("{at}.includes"))?;
    let excluded = condition_holds(excludes, false, caps, host, &format!("{at}.excludes"))?;
    Ok(included && !excluded)
}

/// Evaluates an `includes` (`all_must_hold`: every capability present, the
/// host among the arches, the kernel at least minKernel) or an `excludes`
/// (any of them holding excludes the entry). An absent condition gives
/// "include" for includes and "do not exclude" for excludes.
fn condition_holds(
    cond: Option<&Condition>,
    all_must_hold: bool,
    caps: &[String],
    host: &ProfileHost,
    at: &str,
) -> Result<bool, String> {
    let Some(cond) = cond else {
        return Ok(all_must_hold);
    };
    let tests = [
        caps_test(cond.caps.as_deref(), all_must_hold, caps, at)?,
        arches_test(cond.arches.as_deref(), host, at)?,
        min_kernel_test(cond.min_kernel.as_deref(), host, at)?,
    ];
    Ok(combine(tests.into_iter().flatten(), all_must_hold))
}

/// All of `tests` hold (an `includes`), or any of them (an `excludes`).
fn combine(tests: impl IntoIterator<Item = bool>, all_must_hold: bool) -> bool {
    let mut tests = tests.into_iter();
    if all_must_hold {
        tests.all(|t| t)
    } else {
        tests.any(|t| t)
    }
}

/// The container holds the condition's capabilities (all of them, or any
/// for an `excludes`); None when it names none.
fn caps_test(
    list: Option<&[String]>,
    all_must_hold: bool,
    caps: &[String],
    at: &str,
) -> Result<Option<bool>, String> {
    let wanted = parse_each(
        list.unwrap_or_default(),
        &format!("{at}.caps"),
        "capability",
        normalize_capability,
    )?;
    let held = wanted.iter().map(|cap| has_capability(caps, cap));
    Ok((!wanted.is_empty()).then(|| combine(held, all_must_hold)))
}

/// The host is among the condition's architectures; None when it names
/// none.
fn arches_test(
    list: Option<&[String]>,
    host: &ProfileHost,
    at: &str,
) -> Result<Option<bool>, String> {
    let list = list.unwrap_or_default();
    parse_each(list, &format!("{at}.arches"), "architecture", |a| {
        (CONDITION_ARCHES.contains(&a) || parse_arch(a).is_some()).then_some(())
    })?;
    Ok((!list.is_empty()).then(|| list.iter().any(|a| host.matches_arch(a))))
}

/// The running kernel is at least the condition's `minKernel`; None when
/// it gives none.
fn min_kernel_test(
    min: Option<&str>,
    host: &ProfileHost,
    at: &str,
) -> Result<Option<bool>, String> {
    let Some(min) = min else {
        return Ok(None);
    };
    let wanted = kernel_release(min)
        .filter(|_| min.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!("{at}.minKernel: {min:?} is not a kernel version such as \"4.8\"")
        })?;
    // An unknown running kernel satisfies no minimum.
    Ok(Some(host.kernel.is_some_and(|k| k >= wanted)))
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
