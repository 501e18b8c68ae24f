//! A real etcd 3.4 (`etcd`, Debian's `etcd-server`) with the v2 keys API on, on loopback, in its
//! own temporary directory; stoppable and restartable on the same ports and data, to test
//! outages. Talks HTTP/1.0 over a std socket, like [`super::influxd`].

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::influxd::free_port;

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running etcd, killed and its directory removed on drop.
pub struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    peer_port: u16,
}

impl Etcd {
    pub fn start() -> io::Result<Etcd> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "heapster-etcd-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let mut etcd = Etcd { child: None, dir, port: free_port()?, peer_port: free_port()? };
        etcd.resume()?;
        Ok(etcd)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops etcd (SIGKILL), keeping its data and ports for [`Etcd::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data.
    pub fn resume(&mut self) -> io::Result<()> {
        self.stop();
        let binary = find_on_path("etcd").ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "etcd not found; run scripts/test-deps.sh")
        })?;
        let client = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("etcd.log"))?;
        let child = Command::new(binary)
            .args(["--name", "fixture", "--enable-v2=true"])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("fixture={peer}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(io::Error::other(format!("etcd exited at start-up ({status}): {}", self.log())));
            }
            if let Ok((200, _)) = self.http("GET", "/v2/keys/", "") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("etcd not ready: {}", self.log()),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sets a v2 key.
    pub fn put(&self, key: &str, value: &str) -> io::Result<()> {
        let form: String =
            url::form_urlencoded::Serializer::new(String::new()).append_pair("value", value).finish();
        match self.http("PUT", &format!("/v2/keys{key}"), &form)? {
            (200 | 201, _) => Ok(()),
            (status, body) => Err(io::Error::other(format!("PUT {key}: HTTP {status}: {body}"))),
        }
    }

    /// Deletes a v2 key or directory, recursively.
    pub fn delete(&self, key: &str) -> io::Result<()> {
        match self.http("DELETE", &format!("/v2/keys{key}?recursive=true"), "")? {
            (200 | 404, _) => Ok(()),
            (status, body) => Err(io::Error::other(format!("DELETE {key}: HTTP {status}: {body}"))),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    fn http(&self, method: &str, path: &str, form: &str) -> io::Result<(u16, String)> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        );
        stream.write_all(request.as_bytes())?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
        Ok((status, body))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_keys_across_a_restart() {
        let mut etcd = Etcd::start().expect("etcd");
        etcd.put("/a/b", "{\"x\":1}").expect("put");
        let (status, body) = etcd.http("GET", "/v2/keys/a/b", "").expect("get");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("{\\\"x\\\":1}"), "{body}");
        etcd.stop();
        assert!(etcd.http("GET", "/v2/keys/a/b", "").is_err(), "stopped");
        etcd.resume().expect("resume");
        assert_eq!(etcd.http("GET", "/v2/keys/a/b", "").expect("get").0, 200);
        etcd.delete("/a").expect("delete");
        assert_eq!(etcd.http("GET", "/v2/keys/a/b", "").expect("get").0, 404);
    }
}
