//! `hello`: the bare hyper hello-world server every benchmark is compared against; it does the least work an HTTP server can.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    name = "hello",
    version,
    about = "Hello-world HTTP/1.1 baseline server for loadtest"
)]
struct Args {
    /// Address to listen on; port 0 picks a free port, printed once bound.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Exit when stdin reaches end of file, so a parent that dies without
    /// cleaning up (e.g. SIGKILL) does not leave this server running.
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.exit_on_stdin_eof {
        exit_when_stdin_closes();
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{addr}")?;
        stdout.flush()?;
    }
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // Usually out of file descriptors; pausing lets connections close instead of spinning.
                eprintln!("hello: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            // A client going away mid-request is normal under load and not worth reporting.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(hello))
                .await;
        });
    }
}

async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"hello")));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let mut stdin = std::io::stdin();
        let mut scratch = [0_u8; 64];
        while matches!(stdin.read(&mut scratch), Ok(read) if read > 0) {}
        std::process::exit(0);
    });
}
