#!/usr/bin/env python3
"""ws_client.py: an independent WebSocket client for the CRI streaming server
(exec, attach, port-forward), built on the official Python client's
kubernetes.stream.ws_client (WSClient, PortForward) as code using that
library would drive it. Only the standard library and the `kubernetes`
package are used. The command line, output and result JSON are documented
in tests/clients/README.md; the Rust integration tests code against that.

  ws_client.py exec|attach URL [--stdin] [--protocol P] [--resize WxH]
                               [--result PATH]
  ws_client.py portforward URL --port REMOTE [--protocol P] [--eof-idle S]
                               [--result PATH]

Exit status: 0 the session ran (whatever the remote exit code), 2 the
WebSocket upgrade was refused (HTTP status other than 101), 1 any other
error.
"""

import argparse
import base64
import json
import os
import select
import socket
import sys
import threading
import time
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

from kubernetes.client import Configuration
from kubernetes.stream.ws_client import (
    ERROR_CHANNEL,
    STDERR_CHANNEL,
    STDIN_CHANNEL,
    STDOUT_CHANNEL,
    RESIZE_CHANNEL,
    V5_CHANNEL_PROTOCOL,
    PortForward,
    WSClient,
    create_websocket,
    get_websocket_url,
)
from websocket import WebSocketBadStatusException, WebSocketConnectionClosedException

EXIT_OK, EXIT_ERROR, EXIT_REFUSED = 0, 1, 2
DEBUG = bool(os.environ.get("DEBUG"))


def debug(msg):
    if DEBUG:
        sys.stderr.write("ws_client: %s\n" % msg)
        sys.stderr.flush()


def write_result(path, result):
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def out(stream, data):
    """Writes bytes to our own stdout/stderr at once (binary-safe)."""
    if data:
        stream.buffer.write(data)
        stream.buffer.flush()


def read_fd0():
    """Reads our stdin unbuffered: returns what one read(2) gives, b'' at EOF."""
    try:
        return os.read(0, 65536)
    except OSError:
        return b""


def subprotocol_of(ws):
    """The negotiated Sec-WebSocket-Protocol of a websocket-client socket."""
    sub = getattr(ws, "subprotocol", None)
    if not sub:
        for k, v in (ws.getheaders() or {}).items():
            if k.lower() == "sec-websocket-protocol":
                return v
    return sub or ""


def refused(e, result, path):
    """A WebSocketBadStatusException: the server did not switch protocols."""
    body = e.resp_body or b""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    result["http_status"] = e.status_code
    for k, v in (e.resp_headers or {}).items():
        if k.lower() == "sec-websocket-protocol":
            result["protocol"] = v
    result["message"] = "unable to upgrade connection: HTTP %s: %s" % (
        e.status_code, body.strip())
    sys.stderr.write("ws_client: %s\n" % result["message"])
    write_result(path, result)
    return EXIT_REFUSED


def fail(msg, result, path):
    result["message"] = msg
    sys.stderr.write("ws_client: %s\n" % msg)
    write_result(path, result)
    return EXIT_ERROR


# --------------------------------------------------------------------------
# base64 subprotocols. The library has no base64 support (it takes the first
# byte of every frame, text or binary, as the channel number and never
# decodes base64), so for *.base64.channel.k8s.io this client does that one
# step itself: a text message is ASCII '0'+channel then padded base64
# (apimachinery wsstream). The library still does the WebSocket framing and
# buffering: its channel '0'+N holds the concatenated base64 text of
# channel N, which decodes quad by quad since every message is padded.

def is_base64(protocol):
    return "base64." in protocol


def b64_decode_concat(text):
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    text = "".join(text.split())
    res = bytearray()
    for i in range(0, len(text) - len(text) % 4, 4):
        res += base64.b64decode(text[i:i + 4])
    return bytes(res), text[len(text) - len(text) % 4:]


class ChannelReader:
    """Reads channel N from a WSClient, decoding base64 when negotiated."""

    def __init__(self, client, b64):
        self.client = client
        self.b64 = b64
        self.pending = {}

    def read(self, channel):
        if not self.b64:
            data = self.client.read_channel(channel)
            return data if isinstance(data, bytes) else data.encode()
        raw = self.client.read_channel(ord("0") + channel)
        if isinstance(raw, bytes):
            raw = raw.decode("ascii", "replace")
        data, rest = b64_decode_concat(self.pending.get(channel, "") + raw)
        self.pending[channel] = rest
        return data

    def write(self, channel, data):
        if self.b64:
            # The library sends a str as a text frame: '0'+channel, base64.
            self.client.write_channel(ord("0") + channel,
                                      base64.b64encode(data).decode("ascii"))
        else:
            self.client.write_channel(channel, data)


# --------------------------------------------------------------------------
# exec / attach

def parse_status(text):
    """client-go's errorDecoderV4 on a metav1.Status (for the base64 shim,
    whose error channel the library's returncode cannot see)."""
    if not text:
        return 0, ""
    try:
        st = json.loads(text)
    except ValueError as e:
        return None, "error stream protocol error: %s in %r" % (e, text)
    if st.get("status") == "Success":
        return 0, ""
    if st.get("status") == "Failure":
        if st.get("reason") == "NonZeroExitCode":
            for c in (st.get("details") or {}).get("causes") or []:
                if c.get("reason") == "ExitCode":
                    try:
                        return int(c.get("message")), ""
                    except (TypeError, ValueError):
                        return None, "error stream protocol error: invalid exit code value %r" % c.get("message")
            return None, "error stream protocol error: no ExitCode cause given"
        return None, st.get("message") or ""
    return None, "error stream protocol error: unknown error"


def run_exec(args):
    result = {"http_status": None, "protocol": "", "error": "", "exit_code": None,
              "message": "", "closed_cleanly": False}
    url = get_websocket_url(args.url)
    headers = {"sec-websocket-protocol": args.protocol}
    debug("connecting to %s offering %s" % (url, args.protocol))
    try:
        client = WSClient(Configuration(), url, headers, False, binary=True)
    except WebSocketBadStatusException as e:
        return refused(e, result, args.result)
    except Exception as e:  # noqa: BLE001 - report any connection error
        return fail("error connecting: %s" % e, result, args.result)

    result["http_status"] = client.sock.getstatus()
    protocol = client.subprotocol or ""
    result["protocol"] = protocol
    debug("connected: HTTP %s, protocol %r" % (result["http_status"], protocol))
    b64 = is_base64(protocol)
    channels = ChannelReader(client, b64)
    v5 = protocol == V5_CHANNEL_PROTOCOL

    for w, h in args.resize:
        channels.write(RESIZE_CHANNEL,
                       json.dumps({"Width": w, "Height": h}, separators=(",", ":")).encode() + b"\n")
        debug("resize sent %dx%d" % (w, h))

    if args.stdin:
        def pump_stdin():
            try:
                while True:
                    data = read_fd0()
                    if not data:
                        break
                    channels.write(STDIN_CHANNEL, data)
                if v5:
                    # The library's close_channel sends [255, 0] (v5 only).
                    client.close_channel(STDIN_CHANNEL)
                    debug("stdin EOF: sent close for channel 0")
                else:
                    debug("stdin EOF: %s has no way to close stdin" % protocol)
            except Exception as e:  # noqa: BLE001 - the session may be over
                debug("stdin: %s" % e)
        threading.Thread(target=pump_stdin, daemon=True).start()

    error_text = b""
    try:
        while client.is_open():
            client.update(timeout=None)
            out(sys.stdout, channels.read(STDOUT_CHANNEL))
            out(sys.stderr, channels.read(STDERR_CHANNEL))
            if b64:
                error_text += channels.read(ERROR_CHANNEL)
        result["closed_cleanly"] = True
        debug("close frame received")
    except WebSocketConnectionClosedException as e:
        debug("connection lost: %s" % e)
    except Exception as e:  # noqa: BLE001
        debug("connection error: %s" % e)
    # The library answered the server's close frame already; drop the TCP
    # connection without a second close frame. WSClient then counts as closed
    # (its returncode needs that), and what the last update buffered is read.
    client.sock.shutdown()
    out(sys.stdout, channels.read(STDOUT_CHANNEL))
    out(sys.stderr, channels.read(STDERR_CHANNEL))

    if b64:
        error_text += channels.read(ERROR_CHANNEL)
    else:
        # peek: the library's returncode reads the same buffer afterwards.
        e = client.peek_channel(ERROR_CHANNEL)
        error_text = e if isinstance(e, bytes) else e.encode()
    result["error"] = error_text.decode("utf-8", "replace")

    if protocol.startswith("v4.") or protocol.startswith("v5."):
        if b64:
            result["exit_code"], result["message"] = parse_status(result["error"])
        else:
            try:
                result["exit_code"] = client.returncode  # the library's parsing
            except Exception as e:  # noqa: BLE001 - e.g. a status without details
                try:
                    st = json.loads(result["error"])
                    result["message"] = st.get("message") or str(e)
                except ValueError:
                    result["message"] = "error stream: %s" % (result["error"] or "empty")
    elif not error_text:
        result["exit_code"] = 0
    else:
        result["message"] = result["error"]
    debug("result: %s" % result)
    write_result(args.result, result)
    return EXIT_OK


# --------------------------------------------------------------------------
# portforward

def run_portforward(args):
    result = {"http_status": None, "protocol": "", "error": "", "message": "",
              "bytes_sent": 0, "bytes_received": 0}
    u = urlparse(args.url)
    query = parse_qsl(u.query, keep_blank_values=True)
    if not any(k == "port" for k, _ in query):
        query.append(("port", str(args.port)))
    parts = list(u)
    parts[4] = urlencode(query)
    url = get_websocket_url(urlunparse(parts))
    # Without a protocol given, the library offers its own default
    # (v5.channel.k8s.io,v4.channel.k8s.io).
    headers = {"sec-websocket-protocol": args.protocol} if args.protocol else None
    debug("connecting to %s" % url)
    try:
        ws = create_websocket(Configuration(), url, headers)
    except WebSocketBadStatusException as e:
        return refused(e, result, args.result)
    except Exception as e:  # noqa: BLE001
        return fail("error connecting: %s" % e, result, args.result)
    result["http_status"] = ws.getstatus()
    result["protocol"] = subprotocol_of(ws)
    debug("connected: HTTP %s, protocol %r" % (result["http_status"], result["protocol"]))

    # The library's proxy thread raises RuntimeError on protocol violations
    # (bad first frame, unknown channel, unexpected opcode): catch it, or we
    # would wait forever on a socket nobody serves.
    proxy_error = []
    socks = []

    def hook(a):
        if a.thread is not None and a.thread.name.startswith("Kubernetes port forward proxy"):
            proxy_error.append("%s: %s" % (a.exc_type.__name__, a.exc_value))
            for s in socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        else:
            sys.__excepthook__(a.exc_type, a.exc_value, a.exc_traceback)
    threading.excepthook = hook

    pf = PortForward(ws, [args.port])
    sock = pf.socket(args.port)
    socks.append(sock)
    if proxy_error:  # failed before we had the socket
        sock.shutdown(socket.SHUT_RDWR)
    sock.setblocking(True)
    # stdout carries only the port's data: the readiness line goes to stderr.
    sys.stderr.write("ready\n")
    sys.stderr.flush()

    stdin_eof = []  # the time our stdin ended

    def pump_stdin():
        try:
            while True:
                data = read_fd0()
                if not data:
                    break
                sock.sendall(data)
                result["bytes_sent"] += len(data)
            debug("stdin EOF after %d bytes" % result["bytes_sent"])
        except OSError as e:
            debug("stdin -> port: %s" % e)
        stdin_eof.append(time.monotonic())
    threading.Thread(target=pump_stdin, daemon=True).start()

    # The port's bytes to our stdout until the library closes its end (the
    # server ended the port or the WebSocket, or we shut ours). After our
    # stdin's EOF, once nothing came for --eof-idle seconds, we shut our end
    # for writing: the library then closes the port and the WebSocket (it has
    # no half-close), dropping anything still on its way.
    idle = args.eof_idle
    last = time.monotonic()
    shut = False
    while True:
        try:
            ready, _, _ = select.select([sock], [], [], 0.05)
            if ready:
                data = sock.recv(1 << 20)
                if not data:
                    break
                last = time.monotonic()
                result["bytes_received"] += len(data)
                out(sys.stdout, data)
            elif stdin_eof and idle >= 0 and not shut \
                    and time.monotonic() - max(last, stdin_eof[0]) >= idle:
                debug("stdin ended and nothing came for %ss: closing the port" % idle)
                sock.shutdown(socket.SHUT_WR)
                shut = True
        except OSError as e:
            debug("port -> stdout: %s" % e)
            break
    debug("port closed after %d bytes" % result["bytes_received"])

    err = pf.error(args.port)
    if err:
        result["error"] = err
        sys.stderr.write("error: port %d: %s\n" % (args.port, err))
        sys.stderr.flush()
    if proxy_error:
        result["message"] = "port-forward proxy failed: " + proxy_error[0]
        sys.stderr.write("ws_client: %s\n" % result["message"])
    try:
        pf.close()
        ws.close()
    except Exception:  # noqa: BLE001
        pass
    write_result(args.result, result)
    return EXIT_ERROR if proxy_error else EXIT_OK


# --------------------------------------------------------------------------

def parse_resize(v):
    try:
        w, h = v.lower().split("x", 1)
        w, h = int(w), int(h)
        if not (0 <= w < 65536 and 0 <= h < 65536):
            raise ValueError
        return w, h
    except ValueError:
        raise argparse.ArgumentTypeError("want WxH, not %r" % v)


def main():
    p = argparse.ArgumentParser(
        prog="ws_client.py",
        description="WebSocket client for CRI streaming URLs, on the kubernetes "
                    "Python client's ws_client (see tests/clients/README.md).")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("exec", "attach"):
        e = sub.add_parser(name, help="%s over WebSocket" % name)
        e.add_argument("url")
        e.add_argument("--stdin", action="store_true",
                       help="copy our stdin to channel 0 (at EOF: [255,0] on v5)")
        e.add_argument("--protocol", default="v4.channel.k8s.io",
                       help="the Sec-WebSocket-Protocol header (default v4.channel.k8s.io)")
        e.add_argument("--resize", type=parse_resize, action="append", default=[],
                       metavar="WxH", help="send a terminal size on channel 4 at start")
        e.add_argument("--result", help="write the result JSON here")
    f = sub.add_parser("portforward", aliases=["port-forward"], help="port-forward over WebSocket")
    f.add_argument("url")
    f.add_argument("--port", type=int, required=True, help="the remote port")
    f.add_argument("--protocol", default=None,
                   help="the Sec-WebSocket-Protocol header (default: the library's own)")
    f.add_argument("--eof-idle", type=float, default=2.0, metavar="SECONDS",
                   help="after our stdin's EOF, close the port once nothing came from "
                        "it for SECONDS (default 2; 0 = at once; negative = wait for "
                        "the server to end it)")
    f.add_argument("--close-on-eof", dest="eof_idle", action="store_const", const=0.0,
                   help="same as --eof-idle 0")
    f.add_argument("--result", help="write the result JSON here")
    args = p.parse_args()
    try:
        if args.cmd in ("exec", "attach"):
            code = run_exec(args)
        else:
            code = run_portforward(args)
    except KeyboardInterrupt:
        code = EXIT_ERROR
    sys.stdout.flush()
    sys.stderr.flush()
    # Our stdin thread may still be blocked in read(2): do not wait for it.
    os._exit(code)


if __name__ == "__main__":
    main()
