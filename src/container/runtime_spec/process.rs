//! The process: its command line, environment, working directory,
//! terminal, user, capabilities, no_new_privileges, AppArmor profile,
//! `oom_score_adj` and SELinux label.

use std::path::PathBuf;

use oci_spec::runtime::{Spec, User};

use super::base::process_of;
use super::SpecInputs;
use crate::container::error::ContainerError;
use crate::container::security;
use crate::host::DEFAULT_PATH;
use crate::image::manifest::RunConfig;

/// The process to run, as Kubernetes defines it: `command` replaces the
/// image's entrypoint (and drops its cmd), `args` replace its cmd.
pub fn command_line(
    command: &[String],
    args: &[String],
    image: &RunConfig,
) -> Result<Vec<String>, ContainerError> {
    let argv: Vec<String> = if !command.is_empty() {
        command.iter().chain(args).cloned().collect()
    } else if !args.is_empty() {
        image.entrypoint.iter().chain(args).cloned().collect()
    } else {
        image.entrypoint.iter().chain(&image.cmd).cloned().collect()
    };
    if argv.is_empty() {
        return Err(ContainerError::invalid(
            "config.command",
            "no command: neither the container config nor the image sets an entrypoint or cmd",
        ));
    }
    Ok(argv)
}

/// The image's environment, then `HOSTNAME`, then the config's variables;
/// a later value of a name replaces the earlier one in place. PATH is
/// added when nothing set it.
pub fn environment(image_env: &[String], hostname: &str, envs: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in image_env {
        set_variable(&mut out, e.clone());
    }
    if !hostname.is_empty() {
        set_variable(&mut out, format!("HOSTNAME={hostname}"));
    }
    for (k, v) in envs {
        set_variable(&mut out, format!("{k}={v}"));
    }
    if !out.iter().any(|e| e.starts_with("PATH=")) {
        out.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    out
}

/// The name of a `NAME=value` entry (all of it without `=`).
fn variable_name(entry: &str) -> &str {
    entry.split_once('=').map(|(k, _)| k).unwrap_or(entry)
}

/// Sets `NAME=value` in `env`: in the place of an earlier value of the
/// name, else at the end.
fn set_variable(env: &mut Vec<String>, entry: String) {
    let name = variable_name(&entry);
    match env.iter_mut().find(|e| variable_name(e) == name) {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    }
}

/// The `oom_score_adj` to give the process: the requested one, raised to
/// the floor when the daemon may not lower it.
pub fn oom_score_adj(requested: i64, floor: Option<i64>) -> i32 {
    let v = match floor {
        Some(min) if requested < min => min,
        _ => requested,
    };
    v.clamp(-1000, 1000) as i32
}

/// The working directory: the config's, else the image's, else `/`.
fn working_dir(i: &SpecInputs<'_>) -> Result<String, ContainerError> {
    let spec = &i.rec.spec;
    let cwd = if !spec.working_dir.is_empty() {
        spec.working_dir.clone()
    } else if !i.image.working_dir.is_empty() {
        i.image.working_dir.clone()
    } else {
        "/".to_string()
    };
    if !cwd.starts_with('/') {
        return Err(ContainerError::invalid(
            "config.working_dir",
            format!("{cwd:?} must be an absolute path"),
        ));
    }
    Ok(cwd)
}

/// The capabilities the process gets, by name. The seccomp step asks too:
/// the default profile allows the calls these capabilities gate.
pub(super) fn capabilities(i: &SpecInputs<'_>) -> Result<Vec<String>, ContainerError> {
    let sec = &i.rec.spec.security;
    Ok(security::capability_set(
        &sec.add_capabilities,
        &sec.drop_capabilities,
        sec.privileged,
    )?)
}

pub fn with_args(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let argv = command_line(&i.rec.spec.command, &i.rec.spec.args, i.image)?;
    process_of(spec).set_args(Some(argv));
    Ok(())
}

pub fn with_env(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let hostname = i.pod.container_hostname();
    let env = environment(&i.image.env, &hostname, &i.rec.spec.envs);
    process_of(spec).set_env(Some(env));
    Ok(())
}

pub fn with_cwd(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let cwd = working_dir(i)?;
    process_of(spec).set_cwd(PathBuf::from(cwd));
    Ok(())
}

pub fn with_terminal(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    process_of(spec).set_terminal(Some(i.rec.spec.tty));
    Ok(())
}

/// The resolved uid, gid and additional groups.
pub fn with_user(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let mut user = User::default();
    user.set_uid(i.user.uid);
    user.set_gid(i.user.gid);
    let groups = &i.user.additional_gids;
    user.set_additional_gids((!groups.is_empty()).then(|| groups.clone()));
    process_of(spec).set_user(user);
    Ok(())
}

pub fn with_capabilities(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let caps = capabilities(i)?;
    process_of(spec).set_capabilities(Some(security::to_oci_capabilities(&caps)));
    Ok(())
}

pub fn with_no_new_privileges(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let no_new_privs = i.rec.spec.security.no_new_privs;
    process_of(spec).set_no_new_privileges(Some(no_new_privs));
    Ok(())
}

pub fn with_apparmor(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let sec = &i.rec.spec.security;
    let profile = security::apparmor_profile(
        sec.apparmor.profile_type,
        &sec.apparmor.localhost_ref,
        sec.privileged,
    )?;
    process_of(spec).set_apparmor_profile(profile);
    Ok(())
}

/// The `oom_score_adj` in force, raised to the host's floor.
pub fn with_oom_score_adj(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let adj = oom_score_adj(i.rec.resources.oom_score_adj, i.host.oom_score_adj_min);
    process_of(spec).set_oom_score_adj(Some(adj));
    Ok(())
}

pub fn with_selinux(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let label = match &i.rec.spec.security.selinux {
        Some(s) => security::selinux_label(&s.user, &s.role, &s.r#type, &s.level)?,
        None => None,
    };
    process_of(spec).set_selinux_label(label);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::runtime_spec::base;
    use crate::container::runtime_spec::test_support::*;
    use crate::container::spec::SelinuxSpec;

    fn image_with(entrypoint: &[&str], cmd: &[&str]) -> RunConfig {
        RunConfig {
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_and_args_follow_kubernetes_rules() {
        let img = image_with(&["/ep"], &["c1", "c2"]);
        assert_eq!(
            command_line(&[], &[], &img).unwrap(),
            v(&["/ep", "c1", "c2"])
        );
        assert_eq!(
            command_line(&[], &v(&["a"]), &img).unwrap(),
            v(&["/ep", "a"])
        );
        assert_eq!(command_line(&v(&["/c"]), &[], &img).unwrap(), v(&["/c"]));
        assert_eq!(
            command_line(&v(&["/c"]), &v(&["a"]), &img).unwrap(),
            v(&["/c", "a"])
        );
        let only_cmd = image_with(&[], &["sh"]);
        assert_eq!(command_line(&[], &[], &only_cmd).unwrap(), v(&["sh"]));
        let e = command_line(&[], &[], &image_with(&[], &[])).unwrap_err();
        assert!(e.to_string().starts_with("config.command:"), "{e}");
    }

    #[test]
    fn environment_overlays_in_place() {
        let env = environment(
            &v(&["PATH=/img", "A=1", "B=2"]),
            "pod1",
            &[
                ("B".into(), "x".into()),
                ("C".into(), "3".into()),
                ("HOSTNAME".into(), "h".into()),
            ],
        );
        assert_eq!(env, v(&["PATH=/img", "A=1", "B=x", "HOSTNAME=h", "C=3"]));
        let env = environment(&[], "", &[]);
        assert_eq!(env, vec![format!("PATH={DEFAULT_PATH}")]);
    }

    #[test]
    fn oom_score_adj_is_raised_to_the_floor_only_when_restricted() {
        assert_eq!(oom_score_adj(-997, Some(0)), 0);
        assert_eq!(oom_score_adj(998, Some(0)), 998);
        assert_eq!(oom_score_adj(-997, None), -997);
        assert_eq!(oom_score_adj(5000, None), 1000);
    }

    #[test]
    fn with_args_sets_the_command_line_only() {
        let mut f = Fixture::plain();
        let j = run(with_args, &f.inputs());
        assert_eq!(
            j["process"]["args"],
            serde_json::json!(["/entry", "serve", "--port=80"])
        );
        f.rec.spec.command = v(&["/bin/app"]);
        let j = run(with_args, &f.inputs());
        assert_eq!(j["process"]["args"], serde_json::json!(["/bin/app"]));
        assert_changes_only(with_args, &f.inputs(), &["/process/args"]);
        f.image = RunConfig::default();
        f.rec.spec.command.clear();
        let e = with_args(&f.inputs(), &mut base::empty_spec()).unwrap_err();
        assert!(e.to_string().starts_with("config.command:"), "{e}");
    }

    #[test]
    fn with_env_sets_the_environment_only() {
        let mut f = Fixture::plain();
        f.rec.spec.envs = vec![("A".into(), "1".into())];
        let j = run(with_env, &f.inputs());
        assert_eq!(
            j["process"]["env"],
            serde_json::json!(["PATH=/img/bin:/bin", "IMG=1", "A=1", "HOSTNAME=web-0"])
        );
        assert_changes_only(with_env, &f.inputs(), &["/process/env"]);
    }

    #[test]
    fn with_cwd_takes_the_config_then_the_image_then_the_root() {
        let mut f = Fixture::plain();
        assert_eq!(run(with_cwd, &f.inputs())["process"]["cwd"], "/srv");
        f.rec.spec.working_dir = "/work".into();
        assert_eq!(run(with_cwd, &f.inputs())["process"]["cwd"], "/work");
        assert_changes_only(with_cwd, &f.inputs(), &["/process/cwd"]);
        f.rec.spec.working_dir.clear();
        f.image.working_dir.clear();
        assert_eq!(run(with_cwd, &f.inputs())["process"]["cwd"], "/");
        f.rec.spec.working_dir = "work".into();
        let e = with_cwd(&f.inputs(), &mut base::empty_spec()).unwrap_err();
        assert!(e.to_string().starts_with("config.working_dir:"), "{e}");
    }

    #[test]
    fn with_terminal_follows_tty() {
        let mut f = Fixture::plain();
        assert_eq!(
            run(with_terminal, &f.inputs())["process"]["terminal"],
            false
        );
        f.rec.spec.tty = true;
        assert_eq!(run(with_terminal, &f.inputs())["process"]["terminal"], true);
        assert_changes_only(with_terminal, &f.inputs(), &["/process/terminal"]);
    }

    #[test]
    fn with_user_sets_ids_and_groups_only() {
        let mut f = Fixture::plain();
        let j = run(with_user, &f.inputs());
        assert_eq!(
            j["process"]["user"],
            serde_json::json!({"uid": 1000, "gid": 3000})
        );
        f.user.additional_gids = vec![5, 6];
        let j = run(with_user, &f.inputs());
        assert_eq!(
            j["process"]["user"]["additionalGids"],
            serde_json::json!([5, 6])
        );
        assert_changes_only(with_user, &f.inputs(), &["/process/user"]);
    }

    #[test]
    fn with_capabilities_adds_and_drops_from_the_defaults() {
        let mut f = Fixture::plain();
        f.rec.spec.security.add_capabilities = v(&["NET_ADMIN"]);
        f.rec.spec.security.drop_capabilities = v(&["CHOWN"]);
        let j = run(with_capabilities, &f.inputs());
        let bounding = j["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(bounding.len(), security::DEFAULT_CAPABILITIES.len());
        assert!(bounding.contains(&serde_json::json!("CAP_NET_ADMIN")));
        assert!(!bounding.contains(&serde_json::json!("CAP_CHOWN")));
        assert_changes_only(with_capabilities, &f.inputs(), &["/process/capabilities"]);
    }

    #[test]
    fn with_no_new_privileges_follows_the_request() {
        let mut f = Fixture::plain();
        assert_eq!(
            run(with_no_new_privileges, &f.inputs())["process"]["noNewPrivileges"],
            false
        );
        f.rec.spec.security.no_new_privs = true;
        assert_eq!(
            run(with_no_new_privileges, &f.inputs())["process"]["noNewPrivileges"],
            true
        );
        assert_changes_only(
            with_no_new_privileges,
            &f.inputs(),
            &["/process/noNewPrivileges"],
        );
    }

    #[test]
    fn with_apparmor_sets_no_profile_when_unconfined_or_privileged() {
        let mut f = Fixture::plain();
        f.rec.spec.security.apparmor.profile_type = 1;
        let j = run(with_apparmor, &f.inputs());
        assert!(j["process"].get("apparmorProfile").is_none(), "{j}");
        f.rec.spec.security.apparmor.profile_type = 0;
        f.rec.spec.security.privileged = true;
        let j = run(with_apparmor, &f.inputs());
        assert!(j["process"].get("apparmorProfile").is_none(), "{j}");
        assert_changes_only(with_apparmor, &f.inputs(), &["/process/apparmorProfile"]);
    }

    #[test]
    fn with_oom_score_adj_raises_to_the_floor() {
        let mut f = Fixture::plain();
        f.rec.resources.oom_score_adj = -997;
        assert_eq!(
            run(with_oom_score_adj, &f.inputs())["process"]["oomScoreAdj"],
            -997
        );
        f.host.oom_score_adj_min = Some(-100);
        assert_eq!(
            run(with_oom_score_adj, &f.inputs())["process"]["oomScoreAdj"],
            -100
        );
        assert_changes_only(with_oom_score_adj, &f.inputs(), &["/process/oomScoreAdj"]);
    }

    #[test]
    fn with_selinux_sets_the_label_when_asked() {
        let mut f = Fixture::plain();
        assert!(run(with_selinux, &f.inputs())["process"]
            .get("selinuxLabel")
            .is_none());
        f.rec.spec.security.selinux = Some(SelinuxSpec {
            user: "u".into(),
            role: "r".into(),
            r#type: "t".into(),
            level: "s0".into(),
        });
        assert_eq!(
            run(with_selinux, &f.inputs())["process"]["selinuxLabel"],
            "u:r:t:s0"
        );
        assert_changes_only(with_selinux, &f.inputs(), &["/process/selinuxLabel"]);
        f.rec.spec.security.selinux.as_mut().unwrap().user = "a:b".into();
        let e = with_selinux(&f.inputs(), &mut base::empty_spec()).unwrap_err();
        assert!(e.to_string().contains("selinux_options.user"), "{e}");
    }
}
