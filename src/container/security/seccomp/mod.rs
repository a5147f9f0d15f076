//! Seccomp: peapod's RuntimeDefault profile, built for a container's
//! capabilities, and Localhost profiles read from a file (OCI or Docker
//! form). Both come out as the OCI `linux.seccomp` object.

mod conditions;
mod default_profile;
mod localhost;
mod syscalls;

use oci_spec::runtime::{
    Arch, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompOperator,
    LinuxSyscall,
};
use serde::Deserialize;

pub use default_profile::default_seccomp;
pub use localhost::seccomp_from_file;

fn syscall_rule(
    names: Vec<String>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    args: Vec<LinuxSeccompArg>,
) -> LinuxSyscall {
    let mut rule = LinuxSyscall::default();
    rule.set_names(names)
        .set_action(action)
        .set_errno_ret(errno_ret)
        .set_args(if args.is_empty() { None } else { Some(args) });
    rule
}

fn seccomp_arg(
    index: usize,
    value: u64,
    value_two: Option<u64>,
    op: LinuxSeccompOperator,
) -> LinuxSeccompArg {
    let builder = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    let builder = match value_two {
        Some(v) => builder.value_two(v),
        None => builder,
    };
    // Every field has a value, so building cannot fail.
    builder
        .build()
        .expect("seccomp argument with every field set")
}

/// A value oci-spec knows by its JSON string (an action, architecture,
/// operator or flag); None when it knows no such name.
fn from_json_string<T: for<'de> Deserialize<'de>>(s: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

fn parse_arch(s: &str) -> Option<Arch> {
    from_json_string(s)
}

/// `value` through `parse`, or the error a profile reader reports:
/// `{at}: unknown {what} "value"`.
fn parse_named<T>(
    value: &str,
    at: &str,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, String> {
    parse(value).ok_or_else(|| format!("{at}: unknown {what} {value:?}"))
}

/// Every value of the list `at` through `parse`; the first one it does not
/// know is reported as `{at}[i]: unknown {what} "value"`.
fn parse_each<T>(
    list: &[String],
    at: &str,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, String> {
    list.iter()
        .enumerate()
        .map(|(i, value)| parse_named(value, &format!("{at}[{i}]"), what, &parse))
        .collect()
}
