// Command gen produces and checks SPDY/3 frames with moby/spdystream's
// framer, the Go code kubelet's peer uses, for peapod-spdy's tests.
//
// Run it in GOPATH mode against the system's Go sources (Debian package
// golang-github-docker-spdystream-dev; the import path is
// github.com/moby/spdystream, github.com/docker/spdystream links to it):
//
//	cd crates/spdy/testdata/gen
//	GO111MODULE=off GOPATH=/usr/share/gocode go run main.go gen ..
//	    writes ../go_frames.bin (see writeGoFrames)
//	GO111MODULE=off GOPATH=/usr/share/gocode go run main.go check FILE
//	    reads every frame in FILE with one framer (so one zlib context),
//	    prints each, and exits non-zero on the first error
//	GO111MODULE=off GOPATH=/usr/share/gocode go run main.go echo-client PORT
//	    drives a spdystream client connection against 127.0.0.1:PORT (see
//	    echoClient), exits non-zero on the first failure
//
// The Rust side writes a FILE to check with:
//
//	cargo run -p peapod-spdy --example write_frames -- /tmp/rust_frames.bin
//
// and serves the echo client with (it prints its port):
//
//	cargo run -p peapod-spdy --example echo_server
package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/moby/spdystream"
	"github.com/moby/spdystream/spdy"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: main.go gen DIR | check FILE | echo-client PORT")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = writeGoFrames(filepath.Join(os.Args[2], "go_frames.bin"))
	case "check":
		err = checkFrames(os.Args[2])
	case "echo-client":
		err = echoClient(os.Args[2])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func header(pairs ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(pairs); i += 2 {
		h[pairs[i]] = append(h[pairs[i]], pairs[i+1])
	}
	return h
}

// writeGoFrames writes, on one framer, what a port-forward client and a
// spdystream server send: SYN_STREAM 1 (error stream), SYN_STREAM 3 (data
// stream), SYN_REPLY 1 with an empty header block, HEADERS 3 with a name of
// two values, DATA 3 "hello" with FIN, PING 1.
func writeGoFrames(path string) error {
	var out bytes.Buffer
	framer, err := spdy.NewFramer(&out, nil)
	if err != nil {
		return err
	}
	frames := []spdy.Frame{
		&spdy.SynStreamFrame{StreamId: 1, Headers: header(
			"streamtype", "error", "port", "8080", "requestid", "0")},
		&spdy.SynStreamFrame{StreamId: 3, Headers: header(
			"streamtype", "data", "port", "8080", "requestid", "0")},
		&spdy.SynReplyFrame{StreamId: 1, Headers: http.Header{}},
		&spdy.HeadersFrame{StreamId: 3, Headers: header("x-multi", "a", "x-multi", "b")},
		&spdy.DataFrame{StreamId: 3, Flags: spdy.DataFlagFin, Data: []byte("hello")},
		&spdy.PingFrame{Id: 1},
	}
	for _, frame := range frames {
		if err := framer.WriteFrame(frame); err != nil {
			return err
		}
	}
	return os.WriteFile(path, out.Bytes(), 0o644)
}

func checkFrames(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	framer, err := spdy.NewFramer(io.Discard, bytes.NewReader(data))
	if err != nil {
		return err
	}
	for n := 1; ; n++ {
		frame, err := framer.ReadFrame()
		if err == io.EOF {
			fmt.Printf("ok: %d frames\n", n-1)
			return nil
		}
		if err != nil {
			return fmt.Errorf("frame %d: %v", n, err)
		}
		fmt.Printf("frame %d: %s\n", n, describe(frame))
	}
}

func describe(frame spdy.Frame) string {
	switch f := frame.(type) {
	case *spdy.SynStreamFrame:
		return fmt.Sprintf("SYN_STREAM id=%d flags=%d headers=%v", f.StreamId, f.CFHeader.Flags, f.Headers)
	case *spdy.SynReplyFrame:
		return fmt.Sprintf("SYN_REPLY id=%d flags=%d headers=%v", f.StreamId, f.CFHeader.Flags, f.Headers)
	case *spdy.HeadersFrame:
		return fmt.Sprintf("HEADERS id=%d flags=%d headers=%v", f.StreamId, f.CFHeader.Flags, f.Headers)
	case *spdy.RstStreamFrame:
		return fmt.Sprintf("RST_STREAM id=%d status=%d", f.StreamId, f.Status)
	case *spdy.PingFrame:
		return fmt.Sprintf("PING id=%d", f.Id)
	case *spdy.GoAwayFrame:
		return fmt.Sprintf("GOAWAY last=%d status=%d", f.LastGoodStreamId, f.Status)
	case *spdy.DataFrame:
		return fmt.Sprintf("DATA id=%d flags=%d data=%q", f.StreamId, f.Flags, f.Data)
	default:
		return fmt.Sprintf("%T", frame)
	}
}

// echoClient opens streams on a spdystream client connection, as client-go
// does, against a server echoing each stream's data and then closing its
// side: a ping, five streams at once each sending one DATA frame of 1 kB to
// 4 MB then FIN, another ping, and a last stream (header x-close) after
// whose echo the server closes the connection.
func echoClient(port string) error {
	tcp, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		return err
	}
	conn, err := spdystream.NewConnection(tcp, false)
	if err != nil {
		return err
	}
	go conn.Serve(spdystream.NoOpStreamHandler)
	if _, err := conn.Ping(); err != nil {
		return fmt.Errorf("ping: %v", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for i := 0; i < 5; i++ {
		stream, err := openStream(conn, header("streamtype", "data", "requestid", fmt.Sprint(i)))
		if err != nil {
			return err
		}
		wg.Add(1)
		go func(size int) {
			defer wg.Done()
			errs <- echo(stream, pattern(size))
		}(1000 << (i * 3))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	if _, err := conn.Ping(); err != nil {
		return fmt.Errorf("second ping: %v", err)
	}
	last, err := openStream(conn, header("x-close", "1"))
	if err != nil {
		return err
	}
	if err := echo(last, []byte("last")); err != nil {
		return err
	}
	select {
	case <-conn.CloseChan():
		fmt.Println("ok: the server closed the connection")
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("the server did not close the connection")
	}
}

func openStream(conn *spdystream.Connection, h http.Header) (*spdystream.Stream, error) {
	stream, err := conn.CreateStream(h, nil, false)
	if err != nil {
		return nil, err
	}
	if err := stream.WaitTimeout(10 * time.Second); err != nil {
		return nil, fmt.Errorf("stream %d reply: %v", stream.Identifier(), err)
	}
	return stream, nil
}

func pattern(size int) []byte {
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i * 31)
	}
	return payload
}

// echo writes payload in one DATA frame, then FIN, and reads the echo to
// the server's FIN.
func echo(stream *spdystream.Stream, payload []byte) error {
	go func() {
		stream.Write(payload)
		stream.Close()
	}()
	got, err := io.ReadAll(stream)
	if err != nil {
		return fmt.Errorf("stream %d: %v", stream.Identifier(), err)
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("stream %d: %d bytes echoed, %d sent", stream.Identifier(), len(got), len(payload))
	}
	fmt.Printf("stream %d: %d bytes echoed\n", stream.Identifier(), len(payload))
	return nil
}
