//! Serves one SPDY connection on 127.0.0.1 (the port is printed) and
//! echoes each stream's data until its FIN, then closes that stream; after
//! echoing a stream with header `x-close`, closes the connection. For the
//! Go client in testdata/gen/main.go, the real spdystream:
//!
//! ```text
//! cargo run -p peapod-spdy --example echo_server    # prints PORT
//! cd crates/spdy/testdata/gen
//! GO111MODULE=off GOPATH=/usr/share/gocode go run main.go echo-client PORT
//! ```

use bytes::Bytes;
use peapod_spdy::{serve, Connection, Stream};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    let (tcp, _) = listener.accept().await?;
    let (conn, mut incoming) = serve(tcp, Bytes::new());
    while let Some(stream) = incoming.next().await {
        eprintln!("stream {}: {:?}", stream.id, stream.headers);
        tokio::spawn(echo(stream, conn.clone()));
    }
    conn.closed().await;
    eprintln!("connection ended");
    Ok(())
}

async fn echo(mut stream: Stream, conn: Connection) {
    let mut echoed = 0;
    while let Some(data) = stream.reader.read().await {
        if let Err(e) = stream.writer.write(&data).await {
            eprintln!("stream {}: {e}", stream.id);
            return;
        }
        echoed += data.len();
    }
    stream.writer.close().await;
    eprintln!("stream {}: {echoed} bytes echoed", stream.id);
    if stream.header("x-close").is_some() {
        conn.close().await;
    }
}
