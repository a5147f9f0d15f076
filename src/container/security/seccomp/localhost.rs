//! Localhost seccomp profiles: a file in the OCI or Docker form, turned
//! into the OCI object for this host and container.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use serde::Deserialize;

use super::super::SecurityError;
use super::conditions::{entry_applies, Condition, ProfileHost};
use super::{from_json_string, parse_arch, parse_each, parse_named, seccomp_arg, syscall_rule};

const SECCOMP_REF_FIELD: &str = "config.linux.security_context.seccomp.localhost_ref";

/// A profile file: the OCI `linux.seccomp` object, or a Docker profile,
/// which is the same plus `archMap`, singular `name`, `includes`/`excludes`
/// and comments.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileFile {
    default_action: Option<String>,
    default_errno_ret: Option<u32>,
    architectures: Option<Vec<String>>,
    arch_map: Option<Vec<ArchMapEntry>>,
    flags: Option<Vec<String>>,
    listener_path: Option<PathBuf>,
    listener_metadata: Option<String>,
    syscalls: Option<Vec<SyscallEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: String,
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyscallEntry {
    names: Option<Vec<String>>,
    name: Option<String>,
    action: Option<String>,
    errno_ret: Option<u32>,
    args: Option<Vec<ArgEntry>>,
    includes: Option<Condition>,
    excludes: Option<Condition>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArgEntry {
    index: usize,
    value: u64,
    value_two: Option<u64>,
    op: String,
}

/// Reads a Localhost seccomp profile (`localhost_ref`, an absolute path)
/// and turns it into the OCI form: a Docker profile's `archMap` becomes
/// this host's architectures, and its entries whose `includes`/`excludes`
/// (capabilities in `caps`, host architecture, `minKernel` against the
/// running kernel) do not apply are dropped.
pub fn seccomp_from_file(path: &Path, caps: &[String]) -> Result<LinuxSeccomp, SecurityError> {
    if !path.is_absolute() {
        return Err(SecurityError::invalid(
            SECCOMP_REF_FIELD,
            format!("seccomp profile path {} must be absolute", path.display()),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        let what = if e.kind() == std::io::ErrorKind::NotFound {
            "does not exist".to_string()
        } else {
            format!("cannot be read: {e}")
        };
        SecurityError::invalid(
            SECCOMP_REF_FIELD,
            format!("seccomp profile {} {what}", path.display()),
        )
    })?;
    seccomp_from_json(&text, caps, &ProfileHost::current()).map_err(|message| {
        SecurityError::invalid(
            SECCOMP_REF_FIELD,
            format!("seccomp profile {}: {message}", path.display()),
        )
    })
}

/// The conversion behind [`seccomp_from_file`]; errors name the spot in
/// the profile.
fn seccomp_from_json(
    text: &str,
    caps: &[String],
    host: &ProfileHost,
) -> Result<LinuxSeccomp, String> {
    let file: ProfileFile = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let default_action = required_action(file.default_action.as_deref(), "defaultAction")?;
    let architectures = profile_architectures(&file, host)?;
    let flags: Option<Vec<LinuxSeccompFilterFlag>> = file
        .flags
        .as_deref()
        .map(|list| parse_each(list, "flags", "flag", from_json_string))
        .transpose()?;
    let rules = applicable_rules(file.syscalls.as_deref().unwrap_or_default(), caps, host)?;

    let mut profile = LinuxSeccomp::default();
    profile
        .set_default_action(default_action)
        .set_default_errno_ret(file.default_errno_ret)
        .set_architectures((!architectures.is_empty()).then_some(architectures))
        .set_flags(flags)
        .set_listener_path(file.listener_path)
        .set_listener_metadata(file.listener_metadata)
        .set_syscalls(Some(rules));
    Ok(profile)
}

/// An action the profile must give; `at` says where (`defaultAction`,
/// `syscalls[i].action`).
fn required_action(action: Option<&str>, at: &str) -> Result<LinuxSeccompAction, String> {
    match action {
        Some(a) => parse_named(a, at, "action", from_json_string),
        None => Err(format!("{at} is missing")),
    }
}

/// The profile's `architectures`, or from a Docker profile's `archMap`
/// this host's own architecture and its sub-architectures.
fn profile_architectures(file: &ProfileFile, host: &ProfileHost) -> Result<Vec<Arch>, String> {
    match (&file.architectures, &file.arch_map) {
        (Some(a), Some(m)) if !a.is_empty() && !m.is_empty() => {
            Err("architectures and archMap are both set; use one".to_string())
        }
        (_, Some(map)) if !map.is_empty() => arch_map_for(map, host.native()),
        (Some(list), _) => parse_each(list, "architectures", "architecture", parse_arch),
        (None, _) => Ok(Vec::new()),
    }
}

/// The entry of an `archMap` for the `native` architecture, flattened;
/// every entry is checked, also those for other hosts.
fn arch_map_for(map: &[ArchMapEntry], native: Option<Arch>) -> Result<Vec<Arch>, String> {
    let mut arches = Vec::new();
    for (i, entry) in map.iter().enumerate() {
        let at = format!("archMap[{i}]");
        let arch = parse_named(
            &entry.architecture,
            &format!("{at}.architecture"),
            "architecture",
            parse_arch,
        )?;
        let subs = parse_each(
            entry.sub_architectures.as_deref().unwrap_or_default(),
            &format!("{at}.subArchitectures"),
            "architecture",
            parse_arch,
        )?;
        if Some(arch) == native {
            arches.push(arch);
            arches.extend(subs);
        }
    }
    Ok(arches)
}

/// The rules of the profile's `syscalls` entries that apply to this
/// container on this host, in the profile's order.
fn applicable_rules(
    entries: &[SyscallEntry],
    caps: &[String],
    host: &ProfileHost,
) -> Result<Vec<LinuxSyscall>, String> {
    entries
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| {
            entry_rule(entry, &format!("syscalls[{i}]"), caps, host).transpose()
        })
        .collect()
}

/// One `syscalls` entry as a rule, or None when its conditions leave it
/// out here.
fn entry_rule(
    entry: &SyscallEntry,
    at: &str,
    caps: &[String],
    host: &ProfileHost,
) -> Result<Option<LinuxSyscall>, String> {
    let names = entry_names(entry, at)?;
    let action = required_action(entry.action.as_deref(), &format!("{at}.action"))?;
    let args = entry_args(entry.args.as_deref().unwrap_or_default(), at)?;
    let applies = entry_applies(
        entry.includes.as_ref(),
        entry.excludes.as_ref(),
        caps,
        host,
        at,
    )?;
    Ok(applies.then(|| syscall_rule(names, action, entry.errno_ret, args)))
}

/// The syscalls an entry names: its `names`, or a Docker profile's
/// singular `name`.
fn entry_names(entry: &SyscallEntry, at: &str) -> Result<Vec<String>, String> {
    let names = match (&entry.names, &entry.name) {
        (Some(list), Some(_)) if !list.is_empty() => {
            return Err(format!("{at}: name and names are both set; use one"))
        }
        (Some(list), _) if !list.is_empty() => list.clone(),
        (_, Some(name)) => vec![name.clone()],
        _ => return Err(format!("{at}.names: no syscall named")),
    };
    if let Some(j) = names.iter().position(|n| n.trim().is_empty()) {
        return Err(format!("{at}.names[{j}]: empty syscall name"));
    }
    Ok(names)
}

/// The argument conditions of an entry.
fn entry_args(args: &[ArgEntry], at: &str) -> Result<Vec<LinuxSeccompArg>, String> {
    args.iter()
        .enumerate()
        .map(|(j, arg)| {
            let at = format!("{at}.args[{j}]");
            let op = parse_named(
                &arg.op,
                &format!("{at}.op"),
                "operator",
                from_json_string::<LinuxSeccompOperator>,
            )?;
            if arg.index > 5 {
                return Err(format!(
                    "{at}.index: {} is not a syscall argument (0 to 5)",
                    arg.index
                ));
            }
            Ok(seccomp_arg(arg.index, arg.value, arg.value_two, op))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::security::capabilities::DEFAULT_CAPABILITIES;
    use crate::container::security::seccomp::default_seccomp;
    use crate::container::security::test_support::{invalid_field, strings};

    fn x86_host() -> ProfileHost {
        ProfileHost {
            arch: "x86_64",
            kernel: Some((6, 18, 44)),
        }
    }

    fn names_of(p: &LinuxSeccomp) -> Vec<Vec<String>> {
        p.syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .map(|r| r.names().clone())
            .collect()
    }

    fn profile_err(text: &str) -> String {
        seccomp_from_json(text, &[], &x86_host()).unwrap_err()
    }

    #[test]
    fn oci_shaped_profile_passes_through() {
        let text = r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
                {"names": ["personality"], "action": "SCMP_ACT_LOG",
                 "args": [{"index": 0, "value": 255, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        }"#;
        let p = seccomp_from_json(text, &[], &x86_host()).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(38));
        assert_eq!(
            p.architectures().clone().unwrap(),
            vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86]
        );
        assert_eq!(
            p.flags().clone().unwrap(),
            vec![LinuxSeccompFilterFlag::SeccompFilterFlagLog]
        );
        let rules = p.syscalls().clone().unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[1].errno_ret(), Some(13));
        let arg = rules[2].args().clone().unwrap()[0];
        assert_eq!(
            (arg.index(), arg.value(), arg.value_two()),
            (0, 255, Some(8))
        );
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        // What runc reads back is what the file said.
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(
            json["syscalls"][0]["names"],
            serde_json::json!(["read", "write"])
        );
        assert_eq!(json["syscalls"][2]["action"], "SCMP_ACT_LOG");
    }

    #[test]
    fn docker_profile_conditions_are_evaluated() {
        let text = r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
                {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}
            ],
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW", "comment": "always"},
                {"name": "getpid", "action": "SCMP_ACT_ALLOW", "args": null},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                {"names": ["newer"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
                {"names": ["set_tls"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm", "arm64"]}},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
                 "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                 "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["oldcall"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.0"}},
                {"names": ["both"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"caps": ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]}}
            ]
        }"#;
        let host = x86_host();
        let plain = seccomp_from_json(text, &strings(&["CAP_CHOWN"]), &host).unwrap();
        assert_eq!(
            plain.architectures().clone().unwrap(),
            vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
        );
        assert_eq!(
            names_of(&plain),
            vec![
                vec!["read"],
                vec!["getpid"],
                vec!["ptrace"],
                vec!["arch_prctl"],
                vec!["clone"],
                vec!["clone3"],
            ]
        );
        let clone = &plain.syscalls().as_ref().unwrap()[4];
        assert_eq!(clone.args().as_ref().unwrap()[0].value(), 0x7E02_0000);

        let admin =
            seccomp_from_json(text, &strings(&["SYS_ADMIN", "CAP_NET_ADMIN"]), &host).unwrap();
        assert_eq!(
            names_of(&admin),
            vec![
                vec!["read"],
                vec!["getpid"],
                vec!["mount"],
                vec!["ptrace"],
                vec!["arch_prctl"],
                vec!["both"],
            ]
        );

        let arm = ProfileHost {
            arch: "aarch64",
            kernel: Some((4, 4, 0)),
        };
        let p = seccomp_from_json(text, &[], &arm).unwrap();
        assert_eq!(
            p.architectures().clone().unwrap(),
            vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
        );
        assert_eq!(
            names_of(&p),
            vec![
                vec!["read"],
                vec!["getpid"],
                vec!["set_tls"],
                vec!["clone"],
                vec!["clone3"],
                vec!["oldcall"],
            ]
        );

        // A kernel that cannot be read meets no minimum and excludes nothing.
        let unknown = ProfileHost {
            arch: "x86_64",
            kernel: None,
        };
        let p = seccomp_from_json(text, &[], &unknown).unwrap();
        let names = names_of(&p);
        assert!(!names.contains(&vec!["ptrace".to_string()]));
        assert!(names.contains(&vec!["oldcall".to_string()]));
    }

    #[test]
    fn arch_map_without_this_host_leaves_native_only() {
        let text = r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_S390X", "subArchitectures": ["SCMP_ARCH_S390"]}],
            "syscalls": []}"#;
        let p = seccomp_from_json(text, &[], &x86_host()).unwrap();
        assert_eq!(p.architectures(), &None);
        assert_eq!(p.syscalls().as_ref().map(|s| s.len()), Some(0));
    }

    #[test]
    fn profile_mistakes_are_reported_where_they_are() {
        let cases: &[(&str, &str)] = &[
            ("{", "invalid JSON"),
            ("[]", "invalid JSON"),
            (r#"{"syscalls": []}"#, "defaultAction is missing"),
            (
                r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#,
                "defaultAction: unknown action \"SCMP_ACT_MAYBE\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_Z80"]}"#,
                "architectures[0]: unknown architecture \"SCMP_ARCH_Z80\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["i386"]}]}"#,
                "archMap[0].subArchitectures[0]: unknown architecture",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
                "architectures and archMap are both set",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_FAST"]}"#,
                "flags[0]: unknown flag",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "ALLOW"}]}"#,
                "syscalls[0].action: unknown action \"ALLOW\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]}"#,
                "syscalls[0].action is missing",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}]}"#,
                "syscalls[0].names: no syscall named",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}"#,
                "syscalls[0].names: no syscall named",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", ""], "action": "SCMP_ACT_ALLOW"}]}"#,
                "syscalls[0].names[1]: empty syscall name",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["a"], "name": "b", "action": "SCMP_ACT_ALLOW"}]}"#,
                "syscalls[0]: name and names are both set",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}"#,
                "syscalls[1].args[0].op: unknown operator \"SCMP_CMP_ABOUT\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
                "syscalls[0].args[0].index: 6 is not a syscall argument",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["vax"]}}]}"#,
                "syscalls[0].includes.arches[0]: unknown architecture \"vax\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_TELEPORT"]}}]}"#,
                "syscalls[0].excludes.caps[0]: unknown capability \"CAP_TELEPORT\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.x"}}]}"#,
                "syscalls[0].includes.minKernel: \"4.x\" is not a kernel version",
            ),
        ];
        for (text, want) in cases {
            let got = profile_err(text);
            assert!(got.contains(want), "for {text}\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn profile_file_errors_name_localhost_ref() {
        let dir = tempfile::tempdir().unwrap();
        let (field, message) =
            invalid_field(seccomp_from_file(Path::new("profiles/x.json"), &[]).unwrap_err());
        assert_eq!(field, SECCOMP_REF_FIELD);
        assert!(message.contains("must be absolute"), "{message}");

        let missing = dir.path().join("missing.json");
        let (field, message) = invalid_field(seccomp_from_file(&missing, &[]).unwrap_err());
        assert_eq!(field, SECCOMP_REF_FIELD);
        assert!(message.contains("does not exist"), "{message}");

        let (_, message) = invalid_field(seccomp_from_file(dir.path(), &[]).unwrap_err());
        assert!(message.contains("cannot be read"), "{message}");

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"defaultAction\": ").unwrap();
        let (field, message) = invalid_field(seccomp_from_file(&bad, &[]).unwrap_err());
        assert_eq!(field, SECCOMP_REF_FIELD);
        assert!(message.contains("invalid JSON"), "{message}");
        assert!(message.contains(&bad.display().to_string()), "{message}");
    }

    #[test]
    fn profile_file_is_read_for_this_host() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.json");
        std::fs::write(
            &path,
            r#"{"defaultAction": "SCMP_ACT_LOG", "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "excludes": {"caps": ["CAP_DAC_OVERRIDE"]}}]}"#,
        )
        .unwrap();
        let p = seccomp_from_file(&path, &[]).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActLog);
        assert_eq!(names_of(&p), vec![vec!["mkdir"]]);
        let p = seccomp_from_file(&path, &strings(&["DAC_OVERRIDE"])).unwrap();
        assert!(names_of(&p).is_empty());
    }

    #[test]
    fn our_default_profile_reads_back_as_a_localhost_profile() {
        let p = default_seccomp(&strings(&DEFAULT_CAPABILITIES));
        let text = serde_json::to_string(&p).unwrap();
        let back = seccomp_from_json(&text, &[], &x86_host()).unwrap();
        assert_eq!(back, p);
    }
}
