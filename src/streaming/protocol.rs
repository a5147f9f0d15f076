//! The sub-protocols a streaming client may speak, which one a connection
//! gets, and how each reports how an exec or attach ended.
//!
//! Exec and attach speak the channel protocol: `channel.k8s.io` (v1),
//! `v2`, `v3` (adds the resize stream), `v4` (the end is a JSON
//! `metav1.Status` instead of plain text) and, over WebSocket only, `v5`
//! (v4 plus a message that closes one channel) and the `base64.` variants
//! (text messages). Over SPDY, v5 is answered with v4, as the Kubernetes
//! streaming library does: clients treat them alike there. Port-forward
//! speaks `portforward.k8s.io` over SPDY and the channel framing of v4 over
//! WebSocket. The first protocol of the client's list that the server
//! supports wins (clients list the newest first) and the answer names it.

use serde::Serialize;

/// The channel protocol's versions, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V1,
    V2,
    V3,
    V4,
    V5,
}

/// A sub-protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocol {
    /// Its name, as the answer repeats it; empty when the client offered
    /// none (plain `channel.k8s.io` then, as the library serves it).
    pub name: &'static str,
    pub version: Version,
    /// WebSocket text messages with base64 payloads.
    pub base64: bool,
}

const fn protocol(name: &'static str, version: Version, base64: bool) -> Protocol {
    Protocol {
        name,
        version,
        base64,
    }
}

/// Exec and attach over SPDY.
const SPDY_CHANNEL: &[Protocol] = &[
    protocol("v4.channel.k8s.io", Version::V4, false),
    protocol("v3.channel.k8s.io", Version::V3, false),
    protocol("v2.channel.k8s.io", Version::V2, false),
    protocol("channel.k8s.io", Version::V1, false),
];

/// Exec and attach over WebSocket.
const WEBSOCKET_CHANNEL: &[Protocol] = &[
    protocol("v5.channel.k8s.io", Version::V5, false),
    protocol("v4.channel.k8s.io", Version::V4, false),
    protocol("v4.base64.channel.k8s.io", Version::V4, true),
    protocol("v3.channel.k8s.io", Version::V3, false),
    protocol("v2.channel.k8s.io", Version::V2, false),
    protocol("channel.k8s.io", Version::V1, false),
    protocol("base64.channel.k8s.io", Version::V1, true),
];

/// Port-forward over SPDY.
const SPDY_PORT_FORWARD: &[Protocol] = &[protocol("portforward.k8s.io", Version::V1, false)];

/// Port-forward over WebSocket.
const WEBSOCKET_PORT_FORWARD: &[Protocol] = &[
    protocol("v4.channel.k8s.io", Version::V4, false),
    protocol("v4.base64.channel.k8s.io", Version::V4, true),
];

/// What a streaming URL is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Attach,
    PortForward,
}

impl Kind {
    /// The URL's first path element.
    pub fn route(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::Attach => "attach",
            Kind::PortForward => "portforward",
        }
    }

    pub fn from_route(route: &str) -> Option<Kind> {
        [Kind::Exec, Kind::Attach, Kind::PortForward]
            .into_iter()
            .find(|k| k.route() == route)
    }
}

/// How the client connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Spdy,
    WebSocket,
}

/// The protocols served for `kind` over `transport`, preferred first.
pub fn supported(kind: Kind, transport: Transport) -> &'static [Protocol] {
    match (kind, transport) {
        (Kind::PortForward, Transport::Spdy) => SPDY_PORT_FORWARD,
        (Kind::PortForward, Transport::WebSocket) => WEBSOCKET_PORT_FORWARD,
        (_, Transport::Spdy) => SPDY_CHANNEL,
        (_, Transport::WebSocket) => WEBSOCKET_CHANNEL,
    }
}

/// The client's offers from its header lines, each of which may hold a
/// comma-separated list.
pub fn offers<'a>(header_values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    header_values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The first offer the server supports.
pub fn choose(offered: &[String], supported: &'static [Protocol]) -> Option<Protocol> {
    offered
        .iter()
        .find_map(|o| supported.iter().find(|p| p.name == o).copied())
}

/// What a WebSocket client that offers no protocol speaks: the oldest
/// channel framing, which port-forward shares.
pub const WEBSOCKET_DEFAULT: Protocol = protocol("", Version::V1, false);

/// How an exec or attach session ended, for the error stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command (or the attached container) ended; its exit code.
    Exited(i32),
    /// Nothing ran, or the session broke: what went wrong.
    Failed(String),
}

#[derive(Serialize)]
struct Status {
    metadata: Metadata,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

#[derive(Serialize)]
struct Metadata {}

#[derive(Serialize)]
struct Details {
    causes: Vec<Cause>,
}

#[derive(Serialize)]
struct Cause {
    reason: &'static str,
    message: String,
}

/// What the error stream carries at the end of a session: v4 and later
/// always a JSON `metav1.Status`; older versions plain text, on failure
/// only. `command` names the exec'd command; `None` for attach.
pub fn end_message(version: Version, outcome: &Outcome, command: Option<&[String]>) -> Vec<u8> {
    let message = failure_message(outcome, command);
    if version < Version::V4 {
        return message.unwrap_or_default().into_bytes();
    }
    serde_json::to_vec(&status(outcome, message)).unwrap_or_default()
}

/// The `metav1.Status` of an outcome: Success, NonZeroExitCode with the
/// code as its cause (from which clients take their exit code), or
/// InternalError.
fn status(outcome: &Outcome, message: Option<String>) -> Status {
    let (status, reason, details, code) = match outcome {
        Outcome::Exited(0) => ("Success", None, None, None),
        Outcome::Exited(exit) => {
            let cause = Cause {
                reason: "ExitCode",
                message: exit.to_string(),
            };
            let details = Details {
                causes: vec![cause],
            };
            ("Failure", Some("NonZeroExitCode"), Some(details), None)
        }
        Outcome::Failed(_) => ("Failure", Some("InternalError"), None, Some(500)),
    };
    Status {
        metadata: Metadata {},
        status,
        message,
        reason,
        details,
        code,
    }
}

/// The message of a session that did not succeed, in the words of the
/// Kubernetes streaming library (which clients show to their users).
fn failure_message(outcome: &Outcome, command: Option<&[String]>) -> Option<String> {
    match (outcome, command) {
        (Outcome::Exited(0), _) => None,
        (Outcome::Exited(code), Some(cmd)) => Some(format!(
            "command terminated with non-zero exit code: error executing command {}, exit code {code}",
            go_list(cmd)
        )),
        (Outcome::Exited(code), None) => Some(format!(
            "command terminated with non-zero exit code: exit code {code}"
        )),
        (Outcome::Failed(e), Some(_)) => Some(format!(
            "Internal error occurred: error executing command in container: {e}"
        )),
        (Outcome::Failed(e), None) => Some(format!(
            "Internal error occurred: error attaching to container: {e}"
        )),
    }
}

/// `[a b c]`, as Go prints a list of strings.
fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn offers_come_from_lines_and_lists() {
        assert_eq!(
            offers(["v5.channel.k8s.io, v4.channel.k8s.io", "channel.k8s.io"]),
            strings(&["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"])
        );
        assert!(offers([" , "]).is_empty());
    }

    #[test]
    fn spdy_answers_v4_to_what_client_go_offers() {
        let offered = strings(&[
            "v5.channel.k8s.io",
            "v4.channel.k8s.io",
            "v3.channel.k8s.io",
            "v2.channel.k8s.io",
            "channel.k8s.io",
        ]);
        let p = choose(&offered, supported(Kind::Exec, Transport::Spdy)).unwrap();
        assert_eq!((p.name, p.version), ("v4.channel.k8s.io", Version::V4));
        let p = choose(&offered, supported(Kind::Exec, Transport::WebSocket)).unwrap();
        assert_eq!((p.name, p.version), ("v5.channel.k8s.io", Version::V5));
    }

    #[test]
    fn the_clients_order_wins() {
        let offered = strings(&["v2.channel.k8s.io", "v4.channel.k8s.io"]);
        let p = choose(&offered, supported(Kind::Attach, Transport::Spdy)).unwrap();
        assert_eq!(p.version, Version::V2);
        let offered = strings(&["v4.base64.channel.k8s.io"]);
        let p = choose(&offered, supported(Kind::Exec, Transport::WebSocket)).unwrap();
        assert!(p.base64);
    }

    #[test]
    fn no_common_protocol() {
        let offered = strings(&["v5.channel.k8s.io"]);
        assert_eq!(
            choose(&offered, supported(Kind::Exec, Transport::Spdy)),
            None
        );
        let offered = strings(&["SPDY/3.1+portforward.k8s.io"]);
        assert_eq!(
            choose(&offered, supported(Kind::PortForward, Transport::WebSocket)),
            None
        );
        let offered = strings(&["portforward.k8s.io"]);
        assert!(choose(&offered, supported(Kind::PortForward, Transport::Spdy)).is_some());
    }

    #[test]
    fn v4_success_and_exit_codes() {
        let cmd = strings(&["sh", "-c", "exit 3"]);
        assert_eq!(
            String::from_utf8(end_message(Version::V4, &Outcome::Exited(0), Some(&cmd))).unwrap(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        assert_eq!(
            String::from_utf8(end_message(Version::V4, &Outcome::Exited(3), Some(&cmd))).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
    }

    #[test]
    fn v4_internal_error() {
        let out = end_message(Version::V5, &Outcome::Failed("no such file".into()), None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"Internal error occurred: error attaching to container: no such file","reason":"InternalError","code":500}"#
        );
    }

    #[test]
    fn older_versions_write_text_on_failure_only() {
        let cmd = strings(&["false"]);
        assert!(end_message(Version::V3, &Outcome::Exited(0), Some(&cmd)).is_empty());
        assert_eq!(
            String::from_utf8(end_message(Version::V2, &Outcome::Exited(1), Some(&cmd))).unwrap(),
            "command terminated with non-zero exit code: error executing command [false], exit code 1"
        );
    }

    #[test]
    fn routes() {
        for k in [Kind::Exec, Kind::Attach, Kind::PortForward] {
            assert_eq!(Kind::from_route(k.route()), Some(k));
        }
        assert_eq!(Kind::from_route("other"), None);
    }
}
