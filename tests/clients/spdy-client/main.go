// spdy-client: an independent client for the CRI streaming server's SPDY
// endpoints (exec, attach, port-forward), written to behave like kubelet /
// client-go (tools/remotecommand, tools/portforward, transport/spdy,
// apimachinery util/httpstream/spdy) on top of the same SPDY library they
// use, moby/spdystream. Only the Go standard library and spdystream are
// imported, so it builds from Debian packages in GOPATH mode:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o spdy-client .
//
// The command line, output and result JSON are documented in
// tests/clients/README.md; the Rust integration tests code against that.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/spdystream"
)

const (
	// client-go: httpstream.HeaderProtocolVersion and friends.
	headerProtocolVersion = "X-Stream-Protocol-Version"
	headerSpdy31          = "SPDY/3.1"

	// client-go: createStreamResponseTimeout (util/httpstream/spdy/connection.go).
	createStreamResponseTimeout = 30 * time.Second
	// client-go: DefaultPingPeriod (transport/spdy/spdy.go).
	pingPeriod = 5 * time.Second

	protoV5 = "v5.channel.k8s.io"
	protoV4 = "v4.channel.k8s.io"
	protoV3 = "v3.channel.k8s.io"
	protoV2 = "v2.channel.k8s.io"
	protoV1 = "channel.k8s.io"
	protoPF = "portforward.k8s.io"

	defaultProtocols = protoV5 + "," + protoV4 + "," + protoV3 + "," + protoV2 + "," + protoV1

	exitOK      = 0
	exitError   = 1
	exitRefused = 2
)

var debugOn = os.Getenv("DEBUG") != ""

func debugf(format string, args ...interface{}) {
	if debugOn {
		fmt.Fprintf(os.Stderr, "spdy-client: "+format+"\n", args...)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  spdy-client exec|attach URL [--stdin] [--no-stdout] [--stderr] [--tty]
                              [--resize WxH]... [--protocols LIST]
                              [--method POST|GET] [--result PATH]
  spdy-client portforward URL --port LOCAL:REMOTE [--port ...]
                              [--method POST|GET] [--result PATH]
DEBUG=1 logs stream events (and spdystream's frame log) to stderr.
See tests/clients/README.md.
`)
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(exitError)
	}
	switch os.Args[1] {
	case "exec", "attach":
		os.Exit(runExec(os.Args[2:]))
	case "portforward", "port-forward":
		os.Exit(runPortForward(os.Args[2:]))
	case "-h", "--help", "help":
		usage()
		os.Exit(exitOK)
	default:
		fmt.Fprintf(os.Stderr, "spdy-client: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(exitError)
	}
}

// ---------------------------------------------------------------------------
// Command line

type execOptions struct {
	url       string
	stdin     bool
	stdout    bool
	stderr    bool
	tty       bool
	resizes   [][2]uint16
	protocols []string
	method    string
	result    string
}

type pfPort struct {
	local  uint16
	remote uint16
}

type pfOptions struct {
	url    string
	ports  []pfPort
	method string
	result string
}

// flagValue returns the value of a flag given as "--f v" or "--f=v".
func flagValue(args []string, i *int, name string) (string, error) {
	a := args[*i]
	if strings.HasPrefix(a, name+"=") {
		return a[len(name)+1:], nil
	}
	if *i+1 >= len(args) {
		return "", fmt.Errorf("%s needs a value", name)
	}
	*i++
	return args[*i], nil
}

func flagName(a string) string {
	if j := strings.IndexByte(a, '='); j >= 0 && strings.HasPrefix(a, "--") {
		return a[:j]
	}
	return a
}

func parseMethod(m string) (string, error) {
	m = strings.ToUpper(m)
	if m != "POST" && m != "GET" {
		return "", fmt.Errorf("--method must be POST or GET, not %q", m)
	}
	return m, nil
}

func parseExecArgs(args []string) (*execOptions, error) {
	o := &execOptions{stdout: true, method: "POST"}
	protocols := defaultProtocols
	for i := 0; i < len(args); i++ {
		a := args[i]
		var v string
		var err error
		switch flagName(a) {
		case "--stdin", "-i":
			o.stdin = true
		case "--no-stdout":
			o.stdout = false
		case "--stderr":
			o.stderr = true
		case "--tty", "-t":
			o.tty = true
		case "--resize":
			if v, err = flagValue(args, &i, "--resize"); err != nil {
				return nil, err
			}
			wh := strings.SplitN(strings.ToLower(v), "x", 2)
			if len(wh) != 2 {
				return nil, fmt.Errorf("--resize wants WxH, not %q", v)
			}
			w, err1 := strconv.ParseUint(wh[0], 10, 16)
			h, err2 := strconv.ParseUint(wh[1], 10, 16)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("--resize wants WxH with 16-bit numbers, not %q", v)
			}
			o.resizes = append(o.resizes, [2]uint16{uint16(w), uint16(h)})
		case "--protocols":
			if protocols, err = flagValue(args, &i, "--protocols"); err != nil {
				return nil, err
			}
		case "--method":
			if v, err = flagValue(args, &i, "--method"); err != nil {
				return nil, err
			}
			if o.method, err = parseMethod(v); err != nil {
				return nil, err
			}
		case "--result":
			if o.result, err = flagValue(args, &i, "--result"); err != nil {
				return nil, err
			}
		default:
			if strings.HasPrefix(a, "-") || o.url != "" {
				return nil, fmt.Errorf("unexpected argument %q", a)
			}
			o.url = a
		}
	}
	if o.url == "" {
		return nil, errors.New("URL missing")
	}
	for _, p := range strings.Split(protocols, ",") {
		if p = strings.TrimSpace(p); p != "" {
			o.protocols = append(o.protocols, p)
		}
	}
	if len(o.protocols) == 0 {
		return nil, errors.New("--protocols is empty")
	}
	if len(o.resizes) > 0 && !o.tty {
		return nil, errors.New("--resize needs --tty")
	}
	return o, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return uint16(n), nil
}

func parsePFArgs(args []string) (*pfOptions, error) {
	o := &pfOptions{method: "POST"}
	for i := 0; i < len(args); i++ {
		a := args[i]
		var v string
		var err error
		switch flagName(a) {
		case "--port", "-p":
			if v, err = flagValue(args, &i, flagName(a)); err != nil {
				return nil, err
			}
			// kubectl forms: LOCAL:REMOTE, :REMOTE (any free local port), PORT.
			var p pfPort
			if j := strings.IndexByte(v, ':'); j >= 0 {
				if j > 0 {
					if p.local, err = parsePort(v[:j]); err != nil {
						return nil, err
					}
				}
				if p.remote, err = parsePort(v[j+1:]); err != nil {
					return nil, err
				}
			} else {
				if p.remote, err = parsePort(v); err != nil {
					return nil, err
				}
				p.local = p.remote
			}
			if p.remote == 0 {
				return nil, fmt.Errorf("remote port 0 in %q", v)
			}
			o.ports = append(o.ports, p)
		case "--method":
			if v, err = flagValue(args, &i, "--method"); err != nil {
				return nil, err
			}
			if o.method, err = parseMethod(v); err != nil {
				return nil, err
			}
		case "--result":
			if o.result, err = flagValue(args, &i, "--result"); err != nil {
				return nil, err
			}
		default:
			if strings.HasPrefix(a, "-") || o.url != "" {
				return nil, fmt.Errorf("unexpected argument %q", a)
			}
			o.url = a
		}
	}
	if o.url == "" {
		return nil, errors.New("URL missing")
	}
	if len(o.ports) == 0 {
		return nil, errors.New("at least one --port LOCAL:REMOTE is needed")
	}
	return o, nil
}

// ---------------------------------------------------------------------------
// HTTP upgrade (client-go transport/spdy + apimachinery spdy.SpdyRoundTripper)

// upgradeRefused: the server answered, but not with a SPDY/3.1 upgrade.
type upgradeRefused struct {
	status   int
	protocol string
	accepted []string // X-Accepted-Stream-Protocol-Versions
	body     string
	reason   string
}

func (e *upgradeRefused) Error() string {
	return fmt.Sprintf("unable to upgrade connection: HTTP %d (%s): %s", e.status, e.reason, e.body)
}

// bufferedConn reads through the bufio.Reader that parsed the HTTP response,
// so SPDY frames the server sent right behind the 101 are not lost.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

type upgraded struct {
	conn     net.Conn // the raw TCP connection (for CloseWrite/Close)
	wrapped  net.Conn // what spdystream reads and writes
	status   int
	protocol string
}

func upgrade(rawURL, method string, protocols []string) (*upgraded, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("bad URL %q: %v", rawURL, err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("bad URL %q: only http:// is supported", rawURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("bad URL %q: no host", rawURL)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	debugf("dialing %s", host)
	conn, err := net.DialTimeout("tcp", host, 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("error sending request: %v", err)
	}

	req, err := http.NewRequest(method, u.String(), nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("error creating request: %v", err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", headerSpdy31)
	for _, p := range protocols {
		req.Header.Add(headerProtocolVersion, p)
	}
	// The handshake must not hang forever; the session itself has no deadline.
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("error sending request: %v", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("error reading upgrade response: %v", err)
	}
	debugf("upgrade response: %s %v", resp.Status, resp.Header)
	proto := resp.Header.Get(headerProtocolVersion)
	connection := strings.ToLower(resp.Header.Get("Connection"))
	upgradeHdr := strings.ToLower(resp.Header.Get("Upgrade"))
	if resp.StatusCode != http.StatusSwitchingProtocols ||
		!strings.Contains(connection, "upgrade") ||
		!strings.Contains(upgradeHdr, strings.ToLower(headerSpdy31)) {
		reason := "not 101 Switching Protocols"
		if resp.StatusCode == http.StatusSwitchingProtocols {
			reason = fmt.Sprintf("101 without Connection: Upgrade / Upgrade: SPDY/3.1 (got %q / %q)", connection, upgradeHdr)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		conn.Close()
		var accepted []string
		for _, v := range resp.Header.Values("X-Accepted-Stream-Protocol-Versions") {
			for _, a := range strings.Split(v, ",") {
				if a = strings.TrimSpace(a); a != "" {
					accepted = append(accepted, a)
				}
			}
		}
		return nil, &upgradeRefused{status: resp.StatusCode, protocol: proto, accepted: accepted, body: strings.TrimSpace(string(body)), reason: reason}
	}
	conn.SetDeadline(time.Time{})
	return &upgraded{
		conn:     conn,
		wrapped:  &bufferedConn{Conn: conn, r: br},
		status:   resp.StatusCode,
		protocol: proto,
	}, nil
}

// ---------------------------------------------------------------------------
// SPDY connection (client-go util/httpstream/spdy/connection.go)

type spdyConn struct {
	raw     net.Conn
	conn    *spdystream.Connection
	mu      sync.Mutex
	streams []*spdystream.Stream
	closed  int32
	// peerClosed is set when the connection ended before we closed it.
	peerClosed int32
}

func newSpdyConn(up *upgraded) (*spdyConn, error) {
	sc, err := spdystream.NewConnection(up.wrapped, false)
	if err != nil {
		up.conn.Close()
		return nil, fmt.Errorf("spdystream: %v", err)
	}
	c := &spdyConn{raw: up.conn, conn: sc}
	go sc.Serve(func(s *spdystream.Stream) {
		// The server has no business opening streams: refuse them.
		debugf("refusing server-initiated stream %d %v", s.Identifier(), s.Headers())
		s.Refuse()
	})
	go func() {
		<-sc.CloseChan()
		if atomic.LoadInt32(&c.closed) == 0 {
			atomic.StoreInt32(&c.peerClosed, 1)
			debugf("connection ended by the server")
		}
	}()
	go func() {
		t := time.NewTicker(pingPeriod)
		defer t.Stop()
		for {
			select {
			case <-sc.CloseChan():
				return
			case <-t.C:
			}
			if d, err := sc.Ping(); err != nil {
				debugf("ping failed: %v", err)
			} else {
				debugf("ping %v", d)
			}
		}
	}()
	return c, nil
}

// createStream opens a stream and waits for the server's reply, as client-go does.
func (c *spdyConn) createStream(h http.Header) (*spdystream.Stream, error) {
	debugf("opening stream %v", h)
	s, err := c.conn.CreateStream(h, nil, false)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.streams = append(c.streams, s)
	c.mu.Unlock()
	if err := s.WaitTimeout(createStreamResponseTimeout); err != nil {
		return nil, fmt.Errorf("stream %v (id %d): %v", h, s.Identifier(), err)
	}
	debugf("stream %d replied %v", s.Identifier(), h)
	return s, nil
}

// close resets every stream, sends GOAWAY and closes the TCP connection
// (client-go: connection.Close).
func (c *spdyConn) close() {
	if !atomic.CompareAndSwapInt32(&c.closed, 0, 1) {
		return
	}
	c.mu.Lock()
	for _, s := range c.streams {
		s.Reset()
	}
	c.mu.Unlock()
	done := make(chan struct{})
	go func() {
		c.conn.CloseWait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		debugf("connection shutdown took too long: closing the socket")
	}
	c.raw.Close()
	debugf("connection closed")
}

// ---------------------------------------------------------------------------
// Result file

func writeResult(path string, v interface{}) {
	if path == "" {
		return
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		fmt.Fprintf(os.Stderr, "spdy-client: result: %v\n", err)
		return
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "spdy-client: result: %v\n", err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		fmt.Fprintf(os.Stderr, "spdy-client: result: %v\n", err)
	}
}

// ---------------------------------------------------------------------------
// exec / attach (client-go tools/remotecommand v1.go .. v5.go)

type execResult struct {
	HTTPStatus *int   `json:"http_status"`
	Protocol   string `json:"protocol"`
	Error      string `json:"error"`
	ExitCode   *int   `json:"exit_code"`
	Message    string `json:"message"`
	// X-Accepted-Stream-Protocol-Versions of a refused upgrade (else empty).
	AcceptedProtocols []string `json:"accepted_protocols"`
	// Informative: the server ended the SPDY connection before the client
	// closed it.
	ServerClosedFirst bool `json:"server_closed_first"`
}

type execSession struct {
	o      *execOptions
	c      *spdyConn
	errS   *spdystream.Stream
	stdinS *spdystream.Stream
	outS   *spdystream.Stream
	errOut *spdystream.Stream
	resize *spdystream.Stream
}

// copyOut copies a stream to one of our own outputs as data arrives
// (os.File writes are unbuffered), then drains what is left, as client-go.
func copyOut(name string, dst *os.File, s *spdystream.Stream) {
	buf := make([]byte, 32*1024)
	total := 0
	for {
		n, err := s.Read(buf)
		if n > 0 {
			total += n
			if _, werr := dst.Write(buf[:n]); werr != nil {
				debugf("%s: write: %v", name, werr)
				io.Copy(io.Discard, s)
				break
			}
		}
		if err != nil {
			break
		}
	}
	debugf("%s: EOF after %d bytes", name, total)
}

func (e *execSession) createStreams(version int) error {
	h := func(t string) http.Header {
		hd := http.Header{}
		hd.Set("streamType", t)
		return hd
	}
	var err error
	if e.errS, err = e.c.createStream(h("error")); err != nil {
		return err
	}
	if e.o.stdin {
		if e.stdinS, err = e.c.createStream(h("stdin")); err != nil {
			return err
		}
	}
	if e.o.stdout {
		if e.outS, err = e.c.createStream(h("stdout")); err != nil {
			return err
		}
	}
	if e.o.stderr && !e.o.tty {
		if e.errOut, err = e.c.createStream(h("stderr")); err != nil {
			return err
		}
	}
	if version >= 3 && e.o.tty {
		if e.resize, err = e.c.createStream(h("resize")); err != nil {
			return err
		}
	}
	return nil
}

func readAllAsync(s *spdystream.Stream) <-chan []byte {
	ch := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(s)
		debugf("error stream: EOF after %q", b)
		ch <- b
	}()
	return ch
}

// streamV2 is client-go's streamProtocolV2/V3/V4.stream: returns the raw
// error-stream text.
func (e *execSession) streamV2() []byte {
	errCh := readAllAsync(e.errS)

	if e.resize != nil && len(e.o.resizes) > 0 {
		go func() {
			enc := json.NewEncoder(e.resize) // one object + '\n' per size
			for _, r := range e.o.resizes {
				size := struct {
					Width  uint16
					Height uint16
				}{r[0], r[1]}
				if err := enc.Encode(&size); err != nil {
					debugf("resize: %v", err)
				}
				debugf("resize sent %dx%d", r[0], r[1])
			}
		}()
	}

	if e.stdinS != nil {
		var once sync.Once
		closeStdin := func(why string) {
			once.Do(func() {
				debugf("stdin: closing (FIN): %s", why)
				if err := e.stdinS.Close(); err != nil {
					debugf("stdin: close: %v", err)
				}
			})
		}
		go func() {
			n, err := io.Copy(e.stdinS, os.Stdin)
			debugf("stdin: copied %d bytes, err %v", n, err)
			closeStdin("our stdin ended")
		}()
		go func() {
			// Waits for the server to close its side of stdin.
			io.Copy(io.Discard, e.stdinS)
			closeStdin("the server closed stdin")
		}()
	}

	var wg sync.WaitGroup
	if e.outS != nil {
		wg.Add(1)
		go func() { defer wg.Done(); copyOut("stdout", os.Stdout, e.outS) }()
	}
	if e.errOut != nil {
		wg.Add(1)
		go func() { defer wg.Done(); copyOut("stderr", os.Stderr, e.errOut) }()
	}
	wg.Wait()
	return <-errCh
}

// streamV1 is client-go's streamProtocolV1.stream: stdin is never closed,
// and a non-empty error stream ends the session at once.
func (e *execSession) streamV1() []byte {
	errCh := readAllAsync(e.errS)
	if e.stdinS != nil {
		go func() {
			n, err := io.Copy(e.stdinS, os.Stdin)
			debugf("stdin: copied %d bytes, err %v (v1: not closed)", n, err)
		}()
	}
	done := make(chan struct{}, 2)
	waitCount := 0
	if e.outS != nil {
		waitCount++
		go func() { copyOut("stdout", os.Stdout, e.outS); done <- struct{}{} }()
	}
	if e.errOut != nil {
		waitCount++
		go func() { copyOut("stderr", os.Stderr, e.errOut); done <- struct{}{} }()
	}
	var errText []byte
	gotErr := false
	for completed := 0; completed < waitCount; {
		select {
		case <-done:
			completed++
		case errText = <-errCh:
			gotErr = true
			if len(errText) > 0 {
				return errText
			}
			errCh = nil
		}
	}
	if !gotErr {
		// client-go v1 does not wait for the error stream here; take what has
		// already arrived, if anything.
		select {
		case errText = <-errCh:
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errText
}

// decodeV4 is client-go's errorDecoderV4 (metav1.Status on the error stream).
func decodeV4(msg []byte) (exitCode *int, message string) {
	zero := 0
	if len(msg) == 0 {
		return &zero, ""
	}
	var status struct {
		Status  string `json:"status"`
		Message string `json:"message"`
		Reason  string `json:"reason"`
		Details *struct {
			Causes []struct {
				Type    string `json:"reason"`
				Message string `json:"message"`
			} `json:"causes"`
		} `json:"details"`
	}
	if err := json.Unmarshal(msg, &status); err != nil {
		return nil, fmt.Sprintf("error stream protocol error: %v in %q", err, string(msg))
	}
	switch status.Status {
	case "Success":
		return &zero, ""
	case "Failure":
		if status.Reason == "NonZeroExitCode" {
			if status.Details == nil {
				return nil, "error stream protocol error: details must be set"
			}
			for _, c := range status.Details.Causes {
				if c.Type != "ExitCode" {
					continue
				}
				rc, err := strconv.ParseUint(c.Message, 10, 8)
				if err != nil {
					return nil, fmt.Sprintf("error stream protocol error: invalid exit code value %q", c.Message)
				}
				code := int(rc)
				return &code, ""
			}
			return nil, "error stream protocol error: no ExitCode cause given"
		}
		return nil, status.Message
	default:
		return nil, "error stream protocol error: unknown error"
	}
}

func runExec(args []string) int {
	o, err := parseExecArgs(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "spdy-client: %v\n", err)
		usage()
		return exitError
	}
	res := &execResult{AcceptedProtocols: []string{}}
	fail := func(code int, err error) int {
		fmt.Fprintf(os.Stderr, "spdy-client: %v\n", err)
		res.Message = err.Error()
		writeResult(o.result, res)
		return code
	}

	up, err := upgrade(o.url, o.method, o.protocols)
	if err != nil {
		var ref *upgradeRefused
		if errors.As(err, &ref) {
			st := ref.status
			res.HTTPStatus = &st
			res.Protocol = ref.protocol
			if ref.accepted != nil {
				res.AcceptedProtocols = ref.accepted
			}
			return fail(exitRefused, err)
		}
		return fail(exitError, err)
	}
	st := up.status
	res.HTTPStatus = &st
	res.Protocol = up.protocol

	offered := false
	for _, p := range o.protocols {
		if p == up.protocol {
			offered = true
		}
	}
	version := 0
	switch up.protocol {
	case protoV5, protoV4: // v5 over SPDY is v4 (client-go v5.go)
		version = 4
	case protoV3:
		version = 3
	case protoV2:
		version = 2
	case "", protoV1: // no header: client-go falls back to channel.k8s.io
		version = 1
		offered = true
	}
	if version == 0 || !offered {
		up.conn.Close()
		return fail(exitError, fmt.Errorf("server chose protocol %q, which was not offered (%s)", up.protocol, strings.Join(o.protocols, ",")))
	}
	debugf("protocol %q (v%d semantics)", up.protocol, version)

	c, err := newSpdyConn(up)
	if err != nil {
		return fail(exitError, err)
	}
	e := &execSession{o: o, c: c}
	if err := e.createStreams(version); err != nil {
		c.close()
		res.ServerClosedFirst = atomic.LoadInt32(&c.peerClosed) == 1
		return fail(exitError, err)
	}
	debugf("all streams open")

	var errText []byte
	if version == 1 {
		errText = e.streamV1()
	} else {
		errText = e.streamV2()
	}
	res.ServerClosedFirst = atomic.LoadInt32(&c.peerClosed) == 1
	c.close()

	res.Error = string(errText)
	if version == 4 {
		res.ExitCode, res.Message = decodeV4(errText)
	} else if len(errText) == 0 {
		zero := 0
		res.ExitCode = &zero
	} else {
		res.Message = string(errText)
	}
	debugf("result: exit_code %v message %q", res.ExitCode, res.Message)
	writeResult(o.result, res)
	return exitOK
}

// ---------------------------------------------------------------------------
// portforward (client-go tools/portforward/portforward.go)

type pfRequest struct {
	RequestID     int    `json:"request_id"`
	LocalPort     int    `json:"local_port"`
	RemotePort    int    `json:"remote_port"`
	Error         string `json:"error"`
	BytesToRemote int64  `json:"bytes_to_remote"`
	BytesToLocal  int64  `json:"bytes_to_local"`
}

type pfListen struct {
	LocalPort  int `json:"local_port"`
	RemotePort int `json:"remote_port"`
}

type pfResult struct {
	HTTPStatus *int         `json:"http_status"`
	Protocol   string       `json:"protocol"`
	Message    string       `json:"message"`
	Ports      []pfListen   `json:"ports"`
	Requests   []*pfRequest `json:"requests"`
}

type forwarder struct {
	c         *spdyConn
	nextID    int64
	mu        sync.Mutex
	requests  []*pfRequest
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup
	stopping  int32
	listeners []net.Listener
}

func (f *forwarder) track(conn net.Conn, add bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if add {
		f.conns[conn] = struct{}{}
	} else {
		delete(f.conns, conn)
	}
}

func (f *forwarder) handle(conn *net.TCPConn, local, remote uint16) {
	defer f.wg.Done()
	defer conn.Close()
	f.track(conn, true)
	defer f.track(conn, false)

	id := int(atomic.AddInt64(&f.nextID, 1) - 1)
	req := &pfRequest{RequestID: id, LocalPort: int(local), RemotePort: int(remote)}
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.mu.Unlock()
	debugf("request %d: local connection from %s to :%d -> %d", id, conn.RemoteAddr(), local, remote)

	h := http.Header{}
	h.Set("streamType", "error")
	h.Set("port", strconv.Itoa(int(remote)))
	h.Set("requestID", strconv.Itoa(id))
	errS, err := f.c.createStream(h)
	if err != nil {
		req.Error = "error creating error stream: " + err.Error()
		fmt.Fprintf(os.Stderr, "error: request %d: %s\n", id, req.Error)
		return
	}
	defer errS.Reset()
	// We never write to the error stream.
	errS.Close()
	errCh := readAllAsync(errS)

	h = http.Header{}
	h.Set("streamType", "data")
	h.Set("port", strconv.Itoa(int(remote)))
	h.Set("requestID", strconv.Itoa(id))
	dataS, err := f.c.createStream(h)
	if err != nil {
		req.Error = "error creating data stream: " + err.Error()
		fmt.Fprintf(os.Stderr, "error: request %d: %s\n", id, req.Error)
		return
	}
	defer dataS.Reset()

	remoteDone := make(chan struct{})
	localDone := make(chan struct{})
	go func() {
		n, err := io.Copy(conn, dataS)
		atomic.AddInt64(&req.BytesToLocal, n)
		debugf("request %d: data stream ended after %d bytes (%v): half-closing the local connection", id, n, err)
		conn.CloseWrite()
		close(remoteDone)
	}()
	go func() {
		n, err := io.Copy(dataS, conn)
		atomic.AddInt64(&req.BytesToRemote, n)
		debugf("request %d: local connection ended after %d bytes (%v): closing the data stream", id, n, err)
		dataS.Close()
		close(localDone)
	}()

	var errText []byte
	select {
	case errText = <-errCh:
		if len(errText) == 0 {
			<-remoteDone
			<-localDone
		}
	case <-func() chan struct{} {
		both := make(chan struct{})
		go func() { <-remoteDone; <-localDone; close(both) }()
		return both
	}():
		errText = <-errCh
	}
	if len(errText) > 0 {
		req.Error = string(errText)
		fmt.Fprintf(os.Stderr, "error: request %d: %s\n", id, errText)
	}
	debugf("request %d: done", id)
}

func runPortForward(args []string) int {
	o, err := parsePFArgs(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "spdy-client: %v\n", err)
		usage()
		return exitError
	}
	res := &pfResult{Ports: []pfListen{}, Requests: []*pfRequest{}}
	fail := func(code int, err error) int {
		fmt.Fprintf(os.Stderr, "spdy-client: %v\n", err)
		res.Message = err.Error()
		writeResult(o.result, res)
		return code
	}

	up, err := upgrade(o.url, o.method, []string{protoPF})
	if err != nil {
		var ref *upgradeRefused
		if errors.As(err, &ref) {
			st := ref.status
			res.HTTPStatus = &st
			res.Protocol = ref.protocol
			return fail(exitRefused, err)
		}
		return fail(exitError, err)
	}
	st := up.status
	res.HTTPStatus = &st
	res.Protocol = up.protocol
	if up.protocol != protoPF {
		up.conn.Close()
		return fail(exitError, fmt.Errorf("unable to negotiate protocol: client supports %q, server returned %q", protoPF, up.protocol))
	}
	c, err := newSpdyConn(up)
	if err != nil {
		return fail(exitError, err)
	}
	f := &forwarder{c: c, conns: map[net.Conn]struct{}{}}

	for _, p := range o.ports {
		l, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.local))))
		if err != nil {
			for _, l := range f.listeners {
				l.Close()
			}
			c.close()
			return fail(exitError, fmt.Errorf("unable to listen on port %d: %v", p.local, err))
		}
		f.listeners = append(f.listeners, l)
		actual := uint16(l.Addr().(*net.TCPAddr).Port)
		res.Ports = append(res.Ports, pfListen{LocalPort: int(actual), RemotePort: int(p.remote)})
		fmt.Fprintf(os.Stdout, "listening 127.0.0.1:%d -> %d\n", actual, p.remote)
		go func(l net.Listener, local, remote uint16) {
			for {
				conn, err := l.Accept()
				if err != nil {
					if atomic.LoadInt32(&f.stopping) == 0 {
						debugf("accept on :%d: %v", local, err)
					}
					return
				}
				if atomic.LoadInt32(&f.stopping) != 0 {
					conn.Close()
					return
				}
				f.wg.Add(1)
				go f.handle(conn.(*net.TCPConn), local, remote)
			}
		}(l, actual, p.remote)
	}
	fmt.Fprintln(os.Stdout, "ready")

	stdinEOF := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stdinEOF)
	}()
	select {
	case <-stdinEOF:
		debugf("stdin closed: stopping")
	case <-c.conn.CloseChan():
		res.Message = "lost connection to pod"
		fmt.Fprintln(os.Stderr, "spdy-client: lost connection to pod")
	}

	atomic.StoreInt32(&f.stopping, 1)
	for _, l := range f.listeners {
		l.Close()
	}
	f.mu.Lock()
	for conn := range f.conns {
		conn.Close()
	}
	f.mu.Unlock()
	c.close()
	waited := make(chan struct{})
	go func() { f.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		debugf("some requests did not finish")
	}
	f.mu.Lock()
	res.Requests = append(res.Requests, f.requests...)
	f.mu.Unlock()
	writeResult(o.result, res)
	return exitOK
}
