//! Starts the `hello` baseline server as a child process and makes sure it dies with us.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
const READY_LINE_PREFIX: &str = "listening on http://";

/// Where `cargo build -p loadtest` puts `hello`: next to the `loadtest` executable.
pub fn default_hello_path() -> Result<PathBuf> {
    let current = std::env::current_exe().context("locating the loadtest executable")?;
    Ok(current.with_file_name(format!("hello{}", std::env::consts::EXE_SUFFIX)))
}

/// Extracts the bound address from the one line `hello` prints once it listens.
pub fn parse_ready_line(line: &str) -> Result<SocketAddr> {
    let address = line
        .trim()
        .strip_prefix(READY_LINE_PREFIX)
        .ok_or_else(|| anyhow!("unexpected first line from hello: {line:?}"))?;
    address
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("unparsable address in hello's line {line:?}"))
}

/// The running baseline server; killed and reaped on drop, so an early error
/// anywhere in a comparison cannot leave it behind.
pub struct BaselineServer {
    child: Child,
    addr: SocketAddr,
}

impl BaselineServer {
    pub fn spawn(hello_bin: &Path) -> Result<Self> {
        if !hello_bin.is_file() {
            bail!(
                "baseline binary not found at {}; build it with `cargo build -p loadtest --release` or pass --hello-bin",
                hello_bin.display()
            );
        }
        let mut child = Command::new(hello_bin)
            .args(["--listen", "127.0.0.1:0", "--exit-on-stdin-eof"])
            // Held open by us; if we are killed without cleanup, hello sees EOF and exits.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", hello_bin.display()))?;
        let stdout = child.stdout.take().expect("stdout was piped");
        match wait_for_ready_line(stdout) {
            Ok(addr) => Ok(Self { child, addr }),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(error.context(format!("waiting for {} to listen", hello_bin.display())))
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for BaselineServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads on a helper thread because std pipes have no read timeout, and keeps draining
/// afterwards so the child can never block on a full pipe.
fn wait_for_ready_line(stdout: impl Read + Send + 'static) -> Result<SocketAddr> {
    let (line_sender, line_receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let first = reader.read_line(&mut line).map(|_| line);
        let _ = line_sender.send(first);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let line = match line_receiver.recv_timeout(STARTUP_TIMEOUT) {
        Ok(read) => read.context("reading hello's stdout")?,
        Err(_) => bail!("hello printed nothing within {STARTUP_TIMEOUT:?}"),
    };
    if line.is_empty() {
        bail!("hello exited before printing its address");
    }
    parse_ready_line(&line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_yields_the_address() {
        assert_eq!(
            parse_ready_line("listening on http://127.0.0.1:4321\n").unwrap(),
            "127.0.0.1:4321".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            parse_ready_line("listening on http://[::1]:80/").unwrap(),
            "[::1]:80".parse::<SocketAddr>().unwrap()
        );
        assert!(parse_ready_line("hello world").is_err());
        assert!(parse_ready_line("listening on http://nowhere").is_err());
    }
}
