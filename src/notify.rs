//! Telling the service manager that the daemon is ready: systemd's
//! `sd_notify` protocol, as `Type=notify` units expect. The manager puts the
//! path of a datagram socket in `NOTIFY_SOCKET` (a leading `@` names an
//! abstract socket); one datagram `READY=1` says the CRI socket answers.
//! Without the variable there is no manager to tell, and nothing is sent.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `READY=1` (and a status line) to the service manager, if any.
pub fn ready(status: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os(NOTIFY_SOCKET) else {
        return Ok(false);
    };
    send_ready(&path.to_string_lossy(), status)?;
    Ok(true)
}

fn send_ready(manager: &str, status: &str) -> io::Result<()> {
    let address = manager_address(manager)?;
    let socket = UnixDatagram::unbound()?;
    let message = format!("READY=1\nSTATUS={status}\nMAINPID={}\n", std::process::id());
    socket.send_to_addr(message.as_bytes(), &address)?;
    Ok(())
}

fn manager_address(path: &str) -> io::Result<SocketAddr> {
    match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstract_and_path_addresses() {
        let a = manager_address("@peapod/notify").unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"peapod/notify"[..]));
        let p = manager_address("/run/systemd/notify").unwrap();
        assert_eq!(
            p.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
    }

    #[test]
    fn the_manager_receives_ready() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        send_ready(&path.to_string_lossy(), "serving").unwrap();
        let mut buf = [0u8; 256];
        let n = manager.recv(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        let pid = std::process::id();
        assert_eq!(text, format!("READY=1\nSTATUS=serving\nMAINPID={pid}\n"));
    }
}
