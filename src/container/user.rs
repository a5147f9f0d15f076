//! The user a container runs as, resolved in the container's own
//! `/etc/passwd` and `/etc/group`, and path resolution inside a rootfs.
//!
//! A rootfs comes from an image and is not trusted: its files are reached
//! through [`secure_join`], so a symlinked `/etc/passwd` cannot make peapod
//! read a host file.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Symlinks followed in one resolution before giving up with ELOOP.
const MAX_LINK_HOPS: u32 = 255;

/// The host path of `unsafe_path` as the container sees it with `root` as
/// its `/`: every symlink met, absolute or relative, is resolved inside
/// `root`, and `..` never climbs above it. Components that do not exist
/// are kept as named, so the result need not exist. More than 255 symlinks
/// fail with ELOOP.
///
/// The answer is only as good as the tree is still: whoever can change the
/// tree meanwhile can swap a component for a symlink, so open the result
/// with `O_NOFOLLOW` (or better, keep the tree still).
pub fn secure_join(root: &Path, unsafe_path: &str) -> io::Result<PathBuf> {
    let mut pending: VecDeque<OsString> = components(OsStr::new(unsafe_path)).collect();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut hops = 0u32;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = join_all(root, &resolved).join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.as_os_str().as_bytes().starts_with(b"/") {
                    resolved.clear();
                }
                for c in components(target.as_os_str()).rev() {
                    pending.push_front(c);
                }
            }
            Ok(_) => resolved.push(part),
            // Missing, or below a non-directory: nothing more to resolve
            // here, the name stands as it is.
            Err(e) if e.kind() == io::ErrorKind::NotFound => resolved.push(part),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => resolved.push(part),
            Err(e) => return Err(e),
        }
    }
    Ok(join_all(root, &resolved))
}

/// The components of a path, without empty ones and `.`.
fn components(path: &OsStr) -> impl DoubleEndedIterator<Item = OsString> + '_ {
    path.as_bytes()
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsStr::from_bytes(c).to_os_string())
}

fn join_all(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut path = root.to_path_buf();
    path.extend(parts);
    path
}

// ---------------------------------------------------------------------------
// User resolution
// ---------------------------------------------------------------------------

const FIELD_RUN_AS_USER: &str = "config.linux.security_context.run_as_user";
const FIELD_RUN_AS_GROUP: &str = "config.linux.security_context.run_as_group";
const FIELD_RUN_AS_USERNAME: &str = "config.linux.security_context.run_as_username";
const FIELD_IMAGE_USER: &str = "image user";

/// What decides a container's user: the CRI security context and the
/// image's configured `User`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserRequest {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_username: String,
    /// OCI image config `User`: "", "name", "uid", "name:group", "uid:gid",
    /// "uid:group", "name:gid".
    pub image_user: String,
    pub supplemental_groups: Vec<i64>,
}

/// The process identity of a container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Groups besides `gid`, in order: those of `/etc/group` listing the
    /// user, then the requested supplemental groups.
    pub additional_gids: Vec<u32>,
    /// The name `/etc/passwd` gives the user, if it lists it.
    pub username: Option<String>,
    /// The home directory `/etc/passwd` gives, if it lists the user.
    pub home: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum UserError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    Io(String),
}

impl UserError {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        UserError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Lines of a passwd or group file worth reading: no blanks, comments or
/// NIS compat entries (`+name`, `-name`).
fn entry_lines(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#') && !t.starts_with('+') && !t.starts_with('-')
        })
        .map(|l| l.split(':').collect())
}

/// `name:password:uid:gid:gecos:home:shell`; lines too short or with bad
/// ids are skipped.
fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    entry_lines(text)
        .filter_map(|f| {
            if f.len() < 4 || f[0].is_empty() {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].trim().parse().ok()?,
                gid: f[3].trim().parse().ok()?,
                home: f.get(5).filter(|h| !h.is_empty()).map(|h| h.to_string()),
            })
        })
        .collect()
}

/// `name:password:gid:member,member`; the member list may be missing.
fn parse_group(text: &str) -> Vec<GroupEntry> {
    entry_lines(text)
        .filter_map(|f| {
            if f.len() < 3 || f[0].is_empty() {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// A file of the container, read through [`secure_join`]; None when it
/// does not exist.
fn read_container_file(rootfs: &Path, path: &str) -> Result<Option<String>, UserError> {
    let io_error = |e: io::Error| UserError::Io(format!("reading the container's {path}: {e}"));
    let host_path = secure_join(rootfs, path).map_err(io_error)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&host_path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(None),
        Err(e) => return Err(io_error(e)),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io_error)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// An id from the request: 0 to 4294967294 (4294967295 is `(uid_t)-1`,
/// which the kernel reads as "leave unchanged").
fn request_id(value: i64, field: &str) -> Result<u32, UserError> {
    u32::try_from(value)
        .ok()
        .filter(|v| *v != u32::MAX)
        .ok_or_else(|| {
            UserError::invalid(
                field,
                format!("{value} is not a valid id (0 to {})", u32::MAX - 1),
            )
        })
}

fn is_numeric(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A numeric id written in the image config.
fn image_id(s: &str) -> Result<u32, UserError> {
    s.parse::<u32>()
        .ok()
        .filter(|v| *v != u32::MAX)
        .ok_or_else(|| UserError::invalid(FIELD_IMAGE_USER, format!("{s} is not a valid id")))
}

fn user_not_found(field: &str, name: &str) -> UserError {
    UserError::invalid(
        field,
        format!("user {name} not found in the container's /etc/passwd"),
    )
}

/// Resolves the user a container runs as, the way containerd does:
/// `run_as_username`, else `run_as_user`, else the image's `User`, else
/// root. A name must be in the rootfs's `/etc/passwd`; a uid takes its
/// primary group from there when listed, else 0; `run_as_group` (or the
/// image user's `:group`) sets the primary group. Additional groups are
/// those of `/etc/group` listing the user's name, then
/// `supplemental_groups`, without repeats or the primary group.
pub fn resolve_user(rootfs: &Path, req: &UserRequest) -> Result<ResolvedUser, UserError> {
    let ids = RequestedIds::of(req)?;
    let accounts = Accounts::read(rootfs)?;
    let mut identity = primary_identity(req, ids.run_as_user, &accounts)?;
    if let Some(gid) = ids.run_as_group {
        identity.gid = gid;
    }
    let additional_gids = additional_gids(&accounts.groups, &identity, &ids.supplemental);
    Ok(ResolvedUser {
        uid: identity.uid,
        gid: identity.gid,
        additional_gids,
        username: identity.entry.map(|e| e.name.clone()),
        home: identity.entry.and_then(|e| e.home.clone()),
    })
}

/// The ids of a [`UserRequest`], checked.
struct RequestedIds {
    run_as_user: Option<u32>,
    run_as_group: Option<u32>,
    supplemental: Vec<u32>,
}

impl RequestedIds {
    fn of(req: &UserRequest) -> Result<Self, UserError> {
        let run_as_user = req
            .run_as_user
            .map(|v| request_id(v, FIELD_RUN_AS_USER))
            .transpose()?;
        let run_as_group = req
            .run_as_group
            .map(|v| request_id(v, FIELD_RUN_AS_GROUP))
            .transpose()?;
        if run_as_group.is_some() && run_as_user.is_none() && req.run_as_username.is_empty() {
            return Err(UserError::invalid(
                FIELD_RUN_AS_GROUP,
                "run_as_group requires run_as_user or run_as_username",
            ));
        }
        let supplemental = req
            .supplemental_groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                request_id(
                    *g,
                    &format!("config.linux.security_context.supplemental_groups[{i}]"),
                )
            })
            .collect::<Result<Vec<u32>, _>>()?;
        Ok(RequestedIds {
            run_as_user,
            run_as_group,
            supplemental,
        })
    }
}

/// The container's `/etc/passwd` and `/etc/group`, empty where missing.
struct Accounts {
    passwd: Vec<PasswdEntry>,
    groups: Vec<GroupEntry>,
}

impl Accounts {
    fn read(rootfs: &Path) -> Result<Self, UserError> {
        let passwd = read_container_file(rootfs, "/etc/passwd")?
            .map(|t| parse_passwd(&t))
            .unwrap_or_default();
        let groups = read_container_file(rootfs, "/etc/group")?
            .map(|t| parse_group(&t))
            .unwrap_or_default();
        Ok(Accounts { passwd, groups })
    }

    /// The user `/etc/passwd` lists as `name`, with its primary group;
    /// `field` is the request field that named it.
    fn by_name(&self, name: &str, field: &str) -> Result<Identity<'_>, UserError> {
        let entry = self
            .passwd
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| user_not_found(field, name))?;
        Ok(Identity {
            uid: entry.uid,
            gid: entry.gid,
            entry: Some(entry),
        })
    }

    /// `uid`, with the primary group `/etc/passwd` gives it, else 0.
    fn by_uid(&self, uid: u32) -> Identity<'_> {
        let entry = self.passwd.iter().find(|e| e.uid == uid);
        Identity {
            uid,
            gid: entry.map_or(0, |e| e.gid),
            entry,
        }
    }
}

/// A uid and primary gid, with the uid's `/etc/passwd` entry if it has one.
struct Identity<'a> {
    uid: u32,
    gid: u32,
    entry: Option<&'a PasswdEntry>,
}

/// The user before `run_as_group` applies: `run_as_username`, else
/// `run_as_user`, else the image's `User`, else root.
fn primary_identity<'a>(
    req: &UserRequest,
    run_as_user: Option<u32>,
    accounts: &'a Accounts,
) -> Result<Identity<'a>, UserError> {
    if !req.run_as_username.is_empty() {
        accounts.by_name(&req.run_as_username, FIELD_RUN_AS_USERNAME)
    } else if let Some(uid) = run_as_user {
        Ok(accounts.by_uid(uid))
    } else if !req.image_user.is_empty() {
        image_identity(&req.image_user, accounts)
    } else {
        Ok(accounts.by_uid(0))
    }
}

/// The image config's `User`: `user` or `user:group`, each a name or an id.
fn image_identity<'a>(image_user: &str, accounts: &'a Accounts) -> Result<Identity<'a>, UserError> {
    let (user, group) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };
    let mut identity = if is_numeric(user) {
        accounts.by_uid(image_id(user)?)
    } else if user.is_empty() {
        return Err(UserError::invalid(
            FIELD_IMAGE_USER,
            format!("{image_user:?} names no user"),
        ));
    } else {
        accounts.by_name(user, FIELD_IMAGE_USER)?
    };
    if let Some(group) = group {
        identity.gid = image_group(image_user, group, accounts)?;
    }
    Ok(identity)
}

/// The gid of the `group` part of the image's `user:group`.
fn image_group(image_user: &str, group: &str, accounts: &Accounts) -> Result<u32, UserError> {
    if is_numeric(group) {
        return image_id(group);
    }
    if group.is_empty() {
        return Err(UserError::invalid(
            FIELD_IMAGE_USER,
            format!("{image_user:?} names no group after ':'"),
        ));
    }
    accounts
        .groups
        .iter()
        .find(|e| e.name == group)
        .map(|e| e.gid)
        .ok_or_else(|| {
            UserError::invalid(
                FIELD_IMAGE_USER,
                format!("group {group} not found in the container's /etc/group"),
            )
        })
}

/// The groups of `/etc/group` listing the user's name, then the
/// supplemental groups, without repeats or the primary group.
fn additional_gids(groups: &[GroupEntry], identity: &Identity, supplemental: &[u32]) -> Vec<u32> {
    let member_of = identity.entry.map(|e| e.name.as_str());
    let from_group_file = groups
        .iter()
        .filter(|g| member_of.is_some_and(|name| g.members.iter().any(|m| m == name)))
        .map(|g| g.gid);
    let mut gids = Vec::new();
    for g in from_group_file.chain(supplemental.iter().copied()) {
        if g != identity.gid && !gids.contains(&g) {
            gids.push(g);
        }
    }
    gids
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    // --- secure_join ---

    #[test]
    fn plain_paths_join_under_root() {
        let t = tree();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        assert_eq!(secure_join(r, "/etc/passwd").unwrap(), r.join("etc/passwd"));
        assert_eq!(secure_join(r, "etc/passwd").unwrap(), r.join("etc/passwd"));
        assert_eq!(
            secure_join(r, "//etc/./passwd/").unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(secure_join(r, "").unwrap(), r.to_path_buf());
        assert_eq!(secure_join(r, "/").unwrap(), r.to_path_buf());
        // Missing components are fine.
        assert_eq!(
            secure_join(r, "/no/such/file").unwrap(),
            r.join("no/such/file")
        );
    }

    #[test]
    fn dot_dot_never_climbs_above_root() {
        let t = tree();
        let r = t.path();
        assert_eq!(
            secure_join(r, "/../../etc/passwd").unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(secure_join(r, "a/../../../b").unwrap(), r.join("b"));
        assert_eq!(secure_join(r, "..").unwrap(), r.to_path_buf());
    }

    #[test]
    fn absolute_symlinks_resolve_inside_root() {
        let t = tree();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        symlink("/host-secret", r.join("etc/passwd")).unwrap();
        assert_eq!(
            secure_join(r, "/etc/passwd").unwrap(),
            r.join("host-secret")
        );
        symlink("/../../../../etc/shadow", r.join("etc/group")).unwrap();
        assert_eq!(secure_join(r, "/etc/group").unwrap(), r.join("etc/shadow"));
    }

    #[test]
    fn relative_symlinks_cannot_escape() {
        let t = tree();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        symlink("../../../../../../outside/passwd", r.join("etc/passwd")).unwrap();
        assert_eq!(
            secure_join(r, "/etc/passwd").unwrap(),
            r.join("outside/passwd")
        );
        symlink("..", r.join("etc/up")).unwrap();
        assert_eq!(secure_join(r, "/etc/up/etc/up/x").unwrap(), r.join("x"));
        // Once at the root, a further `up` is just a missing name.
        assert_eq!(secure_join(r, "/etc/up/up/x").unwrap(), r.join("up/x"));
    }

    #[test]
    fn symlinked_directories_in_the_middle() {
        let t = tree();
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/lib/os")).unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        symlink("/usr/lib/os", r.join("usr/etc")).unwrap();
        assert_eq!(
            secure_join(r, "/lib/os/release").unwrap(),
            r.join("usr/lib/os/release")
        );
        assert_eq!(
            secure_join(r, "/usr/etc/release").unwrap(),
            r.join("usr/lib/os/release")
        );
        // `..` after a symlink applies to where the link led, as the kernel does.
        assert_eq!(
            secure_join(r, "/usr/etc/../x").unwrap(),
            r.join("usr/lib/x")
        );
        // A chain: a -> b -> /c/d.
        symlink("b", r.join("a")).unwrap();
        symlink("/c/d", r.join("b")).unwrap();
        assert_eq!(secure_join(r, "/a/e").unwrap(), r.join("c/d/e"));
    }

    #[test]
    fn dangling_symlink_points_to_where_it_would_be() {
        let t = tree();
        let r = t.path();
        symlink("/nowhere/file", r.join("dangling")).unwrap();
        assert_eq!(secure_join(r, "/dangling").unwrap(), r.join("nowhere/file"));
    }

    #[test]
    fn a_regular_file_in_the_middle_is_kept_as_named() {
        let t = tree();
        let r = t.path();
        write(r, "file", "x");
        assert_eq!(secure_join(r, "/file/below").unwrap(), r.join("file/below"));
    }

    #[test]
    fn symlink_loops_fail_with_eloop() {
        let t = tree();
        let r = t.path();
        symlink("/loop-b", r.join("loop-a")).unwrap();
        symlink("loop-a", r.join("loop-b")).unwrap();
        let e = secure_join(r, "/loop-a").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        symlink(".", r.join("self")).unwrap();
        symlink("self/self", r.join("self2")).unwrap();
        assert_eq!(secure_join(r, "/self2/x").unwrap(), r.join("x"));
    }

    #[test]
    fn at_most_255_link_hops() {
        let t = tree();
        let r = t.path();
        // l0 -> l1 -> ... -> l255 -> /target: 256 hops from l0, 255 from l1.
        for i in 0..256 {
            symlink(format!("l{}", i + 1), r.join(format!("l{i}"))).unwrap();
        }
        std::fs::remove_file(r.join("l255")).unwrap();
        symlink("/target", r.join("l255")).unwrap();
        assert_eq!(secure_join(r, "/l1").unwrap(), r.join("target"));
        let e = secure_join(r, "/l0").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn the_result_stays_under_root_whatever_the_links() {
        let t = tree();
        let r = t.path();
        std::fs::create_dir_all(r.join("d/e")).unwrap();
        symlink("/", r.join("d/root")).unwrap();
        symlink("../../..", r.join("d/e/up")).unwrap();
        symlink("/d/e/up/../../d/e", r.join("etc")).unwrap();
        for p in [
            "/d/root/../../..",
            "/d/e/up/../x",
            "/etc/passwd",
            "/etc/up/etc/up/z",
            "d/e/up/d/root/d/e/up/y",
        ] {
            let got = secure_join(r, p).unwrap();
            assert!(got.starts_with(r), "{p} gave {}", got.display());
            // Resolving the answer again changes nothing: no link is left.
            let rel = got.strip_prefix(r).unwrap().to_str().unwrap().to_string();
            assert_eq!(secure_join(r, &rel).unwrap(), got, "{p}");
            assert!(
                !got.components()
                    .any(|c| c == std::path::Component::ParentDir),
                "{p} gave {}",
                got.display()
            );
        }
    }

    // --- passwd and group parsing ---

    #[test]
    fn passwd_parsing_is_tolerant() {
        let text = "# comment\n\
            root:x:0:0:root:/root:/bin/sh\n\
            \n\
            +nisuser::::::\n\
            -blocked\n\
            short:x:1\n\
            badid:x:abc:0::/:/bin/sh\n\
            nohome:x:5:6\n\
            app:x:1002:1003:App:/home/app:/bin/sh\r\n";
        let e = parse_passwd(text);
        assert_eq!(
            e,
            vec![
                PasswdEntry {
                    name: "root".into(),
                    uid: 0,
                    gid: 0,
                    home: Some("/root".into())
                },
                PasswdEntry {
                    name: "nohome".into(),
                    uid: 5,
                    gid: 6,
                    home: None
                },
                PasswdEntry {
                    name: "app".into(),
                    uid: 1002,
                    gid: 1003,
                    home: Some("/home/app".into())
                },
            ]
        );
    }

    #[test]
    fn group_parsing_is_tolerant() {
        let text =
            "root:x:0:\nwheel:x:10:root, app ,\n#x:x:1:\n+:::\nnomembers:x:20\nbad:x:q:app\n";
        let g = parse_group(text);
        assert_eq!(g.len(), 3);
        assert_eq!(g[1].members, vec!["root", "app"]);
        assert!(g[2].members.is_empty());
    }

    // --- resolve_user ---

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
        alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
        app:x:1002:1003:App:/srv/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\n\
        daemon:x:1:\n\
        wheel:x:10:root,alice\n\
        alice:x:1000:\n\
        docker:x:999:alice\n\
        app:x:1003:\n\
        extra:x:1004:app\n\
        nogroup:x:65534:\n";

    fn rootfs() -> tempfile::TempDir {
        let t = tree();
        write(t.path(), "etc/passwd", PASSWD);
        write(t.path(), "etc/group", GROUP);
        t
    }

    fn req() -> UserRequest {
        UserRequest::default()
    }

    fn invalid(e: UserError) -> (String, String) {
        match e {
            UserError::Invalid { field, message } => (field, message),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn nothing_asked_is_root() {
        let t = rootfs();
        let u = resolve_user(t.path(), &req()).unwrap();
        assert_eq!(
            u,
            ResolvedUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![10],
                username: Some("root".into()),
                home: Some("/root".into()),
            }
        );
    }

    #[test]
    fn busybox_files() {
        let t = tree();
        write(
            t.path(),
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
             nobody:x:65534:65534:nobody:/home:/bin/false\nwww-data:x:33:33:www-data:/var/www:/bin/false\n",
        );
        write(
            t.path(),
            "etc/group",
            "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nwheel:x:10:root\nwww-data:x:33:\nnogroup:x:65534:\n",
        );
        // kubelet sends run_as_user {} (uid 0) for an image without USER.
        let u = resolve_user(
            t.path(),
            &UserRequest {
                run_as_user: Some(0),
                ..req()
            },
        )
        .unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
        assert_eq!(u.additional_gids, vec![10]);
        assert_eq!(u.username.as_deref(), Some("root"));
        assert_eq!(u.home.as_deref(), Some("/root"));
        let u = resolve_user(
            t.path(),
            &UserRequest {
                run_as_username: "www-data".into(),
                ..req()
            },
        )
        .unwrap();
        assert_eq!((u.uid, u.gid), (33, 33));
        assert!(u.additional_gids.is_empty());
        assert_eq!(u.home.as_deref(), Some("/var/www"));
    }

    #[test]
    fn kitchen_sink_pod_uid_gid_and_supplemental_groups() {
        // The fixture's CreateContainer: run_as_user 1000, run_as_group
        // 3000, supplemental_groups [2000, 4000], busybox rootfs.
        let t = rootfs();
        let u = resolve_user(
            t.path(),
            &UserRequest {
                run_as_user: Some(1000),
                run_as_group: Some(3000),
                supplemental_groups: vec![2000, 4000],
                ..req()
            },
        )
        .unwrap();
        assert_eq!(u.uid, 1000);
        assert_eq!(u.gid, 3000);
        // alice is in wheel and docker; then the pod's groups.
        assert_eq!(u.additional_gids, vec![10, 999, 2000, 4000]);
        assert_eq!(u.username.as_deref(), Some("alice"));
        assert_eq!(u.home.as_deref(), Some("/home/alice"));
    }

    #[test]
    fn a_user_in_two_groups() {
        let t = rootfs();
        let u = resolve_user(
            t.path(),
            &UserRequest {
                run_as_username: "alice".into(),
                ..req()
            },
        )
        .unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.additional_gids, vec![10, 999]);
    }

    #[test]
    fn image_user_name_resolved_by_passwd() {
        let t = rootfs();
        let u = resolve_user(
            t.path(),
            &UserRequest {
                image_user: "app".into(),
                ..req()
            },
        )
        .unwrap();
        assert_eq!(
            u,
            ResolvedUser {
                uid: 1002,
                gid: 1003,
                additional_gids: vec![1004],
                username: Some("app".into()),
                home: Some("/srv/app".into()),
            }
        );
    }

    #[test]
    fn image_user_with_a_group() {
        let t = rootfs();
        let image = |s: &str| UserRequest {
            image_user: s.into(),
            ..req()
        };
        // app:extra — the primary group is extra, so it is not repeated.
        let u = resolve_user(t.path(), &image("app:extra")).unwrap();
        assert_eq!((u.uid, u.gid), (1002, 1004));
        assert!(u.additional_gids.is_empty());
        assert_eq!(u.username.as_deref(), Some("app"));

        let u = resolve_user(t.path(), &image("1000:999")).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 999));
        assert_eq!(u.additional_gids, vec![10]);

        let u = resolve_user(t.path(), &image("1002:wheel")).unwrap();
        assert_eq!((u.uid, u.gid), (1002, 10));
        assert_eq!(u.additional_gids, vec![1004]);

        let u = resolve_user(t.path(), &image("alice:5000")).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 5000));

        let u = resolve_user(t.path(), &image("4242")).unwrap();
        assert_eq!((u.uid, u.gid), (4242, 0));
        assert_eq!(u.username, None);

        let (field, message) = invalid(resolve_user(t.path(), &image("app:nosuch")).unwrap_err());
        assert_eq!(field, "image user");
        assert_eq!(
            message,
            "group nosuch not found in the container's /etc/group"
        );
        let (field, message) = invalid(resolve_user(t.path(), &image("ghost")).unwrap_err());
        assert_eq!(field, "image user");
        assert_eq!(
            message,
            "user ghost not found in the container's /etc/passwd"
        );
        for bad in [":1000", "app:", "99999999999", "1000:4294967295"] {
            let (field, _) = invalid(resolve_user(t.path(), &image(bad)).unwrap_err());
            assert_eq!(field, "image user", "{bad}");
        }
    }

    #[test]
    fn uid_not_in_passwd_gets_gid_0_and_no_name() {
        let t = rootfs();
        let u = resolve_user(
            t.path(),
            &UserRequest {
                run_as_user: Some(12345),
                supplemental_groups: vec![0, 12, 12, 7],
                ..req()
            },
        )
        .unwrap();
        assert_eq!(
            u,
            ResolvedUser {
                uid: 12345,
                gid: 0,
                additional_gids: vec![12, 7],
                username: None,
                home: None,
            }
        );
    }

    #[test]
    fn precedence_username_then_uid_then_image() {
        let t = rootfs();
        let u = resolve_user(
            t.path(),
            &UserRequest {
                run_as_username: "app".into(),
                run_as_user: Some(1000),
                image_user: "daemon".into(),
                ..req()
            },
        )
        .unwrap();
        assert_eq!(u.uid, 1002);
        let u = resolve_user(
            t.path(),
            &UserRequest {
                run_as_user: Some(1),
                image_user: "app:extra".into(),
                ..req()
            },
        )
        .unwrap();
        assert_eq!((u.uid, u.gid), (1, 1));
        assert_eq!(u.username.as_deref(), Some("daemon"));
    }

    #[test]
    fn run_as_group_overrides_the_primary_group() {
        let t = rootfs();
        let u = resolve_user(
            t.path(),
            &UserRequest {
                run_as_username: "alice".into(),
                run_as_group: Some(10),
                ..req()
            },
        )
        .unwrap();
        assert_eq!((u.uid, u.gid), (1000, 10));
        // wheel is now primary, so only docker remains extra.
        assert_eq!(u.additional_gids, vec![999]);
    }

    #[test]
    fn run_as_group_alone_is_invalid() {
        let t = rootfs();
        for image_user in ["", "app"] {
            let (field, message) = invalid(
                resolve_user(
                    t.path(),
                    &UserRequest {
                        run_as_group: Some(3000),
                        image_user: image_user.into(),
                        ..req()
                    },
                )
                .unwrap_err(),
            );
            assert_eq!(field, "config.linux.security_context.run_as_group");
            assert_eq!(
                message,
                "run_as_group requires run_as_user or run_as_username"
            );
        }
    }

    #[test]
    fn out_of_range_ids_name_their_field() {
        let t = rootfs();
        let cases = [
            (
                UserRequest {
                    run_as_user: Some(-1),
                    ..req()
                },
                "config.linux.security_context.run_as_user",
            ),
            (
                UserRequest {
                    run_as_user: Some(1 << 32),
                    ..req()
                },
                "config.linux.security_context.run_as_user",
            ),
            (
                UserRequest {
                    run_as_user: Some(1000),
                    run_as_group: Some(-5),
                    ..req()
                },
                "config.linux.security_context.run_as_group",
            ),
            (
                UserRequest {
                    run_as_user: Some(1000),
                    supplemental_groups: vec![1, 2, i64::MAX],
                    ..req()
                },
                "config.linux.security_context.supplemental_groups[2]",
            ),
        ];
        for (r, want) in cases {
            let (field, message) = invalid(resolve_user(t.path(), &r).unwrap_err());
            assert_eq!(field, want);
            assert!(message.contains("not a valid id"), "{message}");
        }
        // The largest real id is fine.
        let u = resolve_user(
            t.path(),
            &UserRequest {
                run_as_user: Some(i64::from(u32::MAX - 1)),
                ..req()
            },
        )
        .unwrap();
        assert_eq!(u.uid, u32::MAX - 1);
    }

    #[test]
    fn unknown_username_is_invalid() {
        let t = rootfs();
        let (field, message) = invalid(
            resolve_user(
                t.path(),
                &UserRequest {
                    run_as_username: "mallory".into(),
                    ..req()
                },
            )
            .unwrap_err(),
        );
        assert_eq!(field, "config.linux.security_context.run_as_username");
        assert_eq!(
            message,
            "user mallory not found in the container's /etc/passwd"
        );
    }

    #[test]
    fn without_passwd_and_group_files() {
        let t = tree();
        let u = resolve_user(t.path(), &req()).unwrap();
        assert_eq!(
            u,
            ResolvedUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![],
                username: None,
                home: None,
            }
        );
        let u = resolve_user(
            t.path(),
            &UserRequest {
                image_user: "1000:1000".into(),
                supplemental_groups: vec![5],
                ..req()
            },
        )
        .unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (1000, 1000, vec![5]));
        let (field, message) = invalid(
            resolve_user(
                t.path(),
                &UserRequest {
                    image_user: "app".into(),
                    ..req()
                },
            )
            .unwrap_err(),
        );
        assert_eq!(field, "image user");
        assert!(message.contains("/etc/passwd"));
        // /etc as a plain file: nothing below it exists.
        write(t.path(), "etc", "not a directory");
        assert_eq!(resolve_user(t.path(), &req()).unwrap().username, None);
    }

    #[test]
    fn symlinked_passwd_outside_the_rootfs_stays_inside() {
        // A host-side decoy the link points at by a path valid on the host.
        let host = tree();
        write(
            host.path(),
            "passwd",
            "root:x:0:0:HOST:/host-root:/bin/sh\nhostonly:x:7777:7777::/:/bin/sh\n",
        );
        let host_passwd = host.path().join("passwd");

        let t = tree();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        symlink(&host_passwd, t.path().join("etc/passwd")).unwrap();
        // Not followed to the host: the link resolves inside the rootfs,
        // where nothing is.
        let u = resolve_user(t.path(), &req()).unwrap();
        assert_eq!(u.home, None);
        assert!(resolve_user(
            t.path(),
            &UserRequest {
                run_as_username: "hostonly".into(),
                ..req()
            }
        )
        .is_err());

        // The same absolute path inside the rootfs is what is read.
        let inner = t.path().join(host_passwd.strip_prefix("/").unwrap());
        write(
            t.path(),
            inner.strip_prefix(t.path()).unwrap().to_str().unwrap(),
            PASSWD,
        );
        let u = resolve_user(t.path(), &req()).unwrap();
        assert_eq!(u.home.as_deref(), Some("/root"));

        // A relative escape lands inside too.
        let t2 = tree();
        std::fs::create_dir_all(t2.path().join("etc")).unwrap();
        let depth = t2.path().components().count() + 2;
        let up = "../".repeat(depth);
        symlink(
            format!("{up}{}", host_passwd.strip_prefix("/").unwrap().display()),
            t2.path().join("etc/passwd"),
        )
        .unwrap();
        let u = resolve_user(t2.path(), &req()).unwrap();
        assert_eq!(u.home, None);
    }

    #[test]
    fn passwd_that_is_a_directory_is_an_io_error() {
        let t = tree();
        std::fs::create_dir_all(t.path().join("etc/passwd")).unwrap();
        match resolve_user(t.path(), &req()) {
            Err(UserError::Io(m)) => assert!(m.contains("/etc/passwd"), "{m}"),
            other => panic!("expected Io, got {other:?}"),
        }
    }

    #[test]
    fn resolved_user_round_trips_through_json() {
        let u = ResolvedUser {
            uid: 1,
            gid: 2,
            additional_gids: vec![3],
            username: Some("x".into()),
            home: None,
        };
        let back: ResolvedUser = serde_json::from_str(&serde_json::to_string(&u).unwrap()).unwrap();
        assert_eq!(back, u);
    }
}
