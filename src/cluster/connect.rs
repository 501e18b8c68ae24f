//! The peers' sockets: process `p` connects to every lower process and accepts every higher one
//! (timely's layout), exchanging a hello that names the process and the cluster's shape.
//!
//! Timely's own set-up retries forever and takes any stranger's connection for a peer; here the
//! wait is bounded, a process that cannot reach its peers says which, and a peer started with a
//! different `--processes` or `-w` is refused by name rather than corrupting the exchange.

use std::any::Any;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::zero_copy::stream::Stream;
use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};

use super::ClusterConfig;

/// What a hello starts with, so that a stray connection is told apart from a peer.
const MAGIC: &[u8; 8] = b"heapstr1";
const HELLO_LEN: usize = 8 + 3 * 8;
/// How long a peer may take to answer a hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_ATTEMPT: Duration = Duration::from_millis(500);
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot listen on {address} (process {process} in the hostfile): {source}")]
    Listen { process: usize, address: String, source: io::Error },
    #[error("peers not reachable within {}: {missing}", humantime::format_duration(*.waited))]
    Unreachable { waited: Duration, missing: String },
    #[error("process {process} ({address}) {what}")]
    Mismatch { process: usize, address: String, what: String },
    #[error("networking: {0}")]
    Io(#[from] io::Error),
}

/// The connected processes, ready for timely's workers.
pub struct Network {
    pub builders: Vec<AllocatorBuilder>,
    /// Joins timely's send and receive threads when dropped.
    pub guard: Box<dyn Any + Send>,
    /// Bytes this process exchanged with its peers.
    pub traffic: Arc<Traffic>,
    /// When the cluster started, in ms since the epoch by the leader's clock: every process
    /// counts its windows from it, so they all start with the same one.
    pub started_ms: u64,
}

/// Bytes sent to and received from the peers, for the run's report and benchmarks.
#[derive(Debug, Default)]
pub struct Traffic {
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

/// A peer's socket that counts what goes through it.
struct Counted {
    stream: TcpStream,
    traffic: Arc<Traffic>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.traffic.received.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.stream.write(buf)?;
        self.traffic.sent.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl Stream for Counted {
    fn try_clone(&self) -> io::Result<Self> {
        Ok(Counted { stream: self.stream.try_clone()?, traffic: Arc::clone(&self.traffic) })
    }

    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.stream.set_nonblocking(nonblocking)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.stream.shutdown(how)
    }
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").field("workers", &self.builders.len()).finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hello {
    process: u64,
    processes: u64,
    workers: u64,
}

impl Hello {
    fn encode(&self) -> [u8; HELLO_LEN] {
        let mut out = [0u8; HELLO_LEN];
        out[..8].copy_from_slice(MAGIC);
        out[8..16].copy_from_slice(&self.process.to_be_bytes());
        out[16..24].copy_from_slice(&self.processes.to_be_bytes());
        out[24..32].copy_from_slice(&self.workers.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8; HELLO_LEN]) -> Option<Hello> {
        if &bytes[..8] != MAGIC {
            return None;
        }
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_be_bytes(b)
        };
        Some(Hello { process: word(8), processes: word(16), workers: word(24) })
    }

    fn read(stream: &mut TcpStream) -> io::Result<Option<Hello>> {
        let mut bytes = [0u8; HELLO_LEN];
        stream.read_exact(&mut bytes)?;
        Ok(Hello::decode(&bytes))
    }
}

/// Connects to every peer, waiting at most the configured time, then starts timely's
/// networking over the sockets.
pub fn connect(config: &ClusterConfig, workers: usize) -> Result<Network, ConnectError> {
    let me = config.process;
    let ours = Hello { process: me as u64, processes: config.processes as u64, workers: workers as u64 };
    let own = &config.addresses[me];
    let listener =
        listen(own).map_err(|source| ConnectError::Listen { process: me, address: own.clone(), source })?;
    listener.set_nonblocking(true)?;
    let mut sockets: Vec<Option<TcpStream>> = (0..config.processes).map(|_| None).collect();
    let mut last_error: Vec<Option<String>> = vec![None; config.processes];
    let deadline = Instant::now() + config.connect_timeout;
    tracing::info!(process = me, processes = config.processes, address = %own, "connecting to the peers");
    loop {
        let waiting: Vec<usize> =
            (0..config.processes).filter(|&p| p != me && sockets[p].is_none()).collect();
        if waiting.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let missing = waiting
                .iter()
                .map(|&p| {
                    let why = match (&last_error[p], p < me) {
                        (Some(e), _) => e.clone(),
                        (None, true) => "no answer".to_string(),
                        (None, false) => "it has not connected".to_string(),
                    };
                    format!("process {p} ({}): {why}", config.addresses[p])
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(ConnectError::Unreachable { waited: config.connect_timeout, missing });
        }
        let mut progress = false;
        for &peer in waiting.iter().filter(|&&p| p < me) {
            match dial(&config.addresses[peer], ours) {
                Ok((stream, theirs)) => {
                    check(config, peer, Some(peer), theirs, ours)?;
                    tracing::info!(peer, address = %config.addresses[peer], "connected to a peer");
                    sockets[peer] = Some(stream);
                    progress = true;
                }
                Err(e) => last_error[peer] = Some(e.to_string()),
            }
        }
        match listener.accept() {
            Ok((mut stream, from)) => {
                progress = true;
                match greet(&mut stream, ours) {
                    Ok(Some(theirs)) => {
                        let peer = theirs.process as usize;
                        check(config, peer, None, Some(theirs), ours)?;
                        if peer <= me || sockets[peer].is_some() {
                            tracing::warn!(%from, peer, "a second or misdirected hello; ignored");
                            continue;
                        }
                        tracing::info!(peer, %from, "peer connected");
                        sockets[peer] = Some(stream);
                    }
                    Ok(None) | Err(_) => tracing::warn!(%from, "a connection that is not a peer; closed"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
        if !progress {
            std::thread::sleep(POLL);
        }
    }
    drop(listener);
    let started_ms = agree_on_start(&mut sockets, me)?;
    for socket in sockets.iter().flatten() {
        socket.set_read_timeout(None)?;
        socket.set_write_timeout(None)?;
        socket.set_nonblocking(false)?;
        socket.set_nodelay(true)?;
    }
    let traffic = Arc::new(Traffic::default());
    let sockets: Vec<Option<Counted>> = sockets
        .into_iter()
        .map(|s| s.map(|stream| Counted { stream, traffic: Arc::clone(&traffic) }))
        .collect();
    let hooks = timely::communication::Hooks::default();
    let local = ProcessBuilder::new_typed_vector(workers, hooks.refill.clone(), hooks.spill.clone());
    let (builders, guard) = initialize_networking_from_sockets(local, sockets, me, workers, hooks)?;
    tracing::info!(process = me, processes = config.processes, "every peer connected");
    Ok(Network {
        builders: builders.into_iter().map(AllocatorBuilder::Tcp).collect(),
        guard: Box::new(guard),
        traffic,
        started_ms,
    })
}

/// The leader tells every peer the start time, before timely owns the sockets.
fn agree_on_start(sockets: &mut [Option<TcpStream>], me: usize) -> io::Result<u64> {
    if me == 0 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for socket in sockets.iter_mut().flatten() {
            socket.write_all(&now.to_be_bytes())?;
        }
        return Ok(now);
    }
    let leader = sockets
        .first_mut()
        .and_then(Option::as_mut)
        .ok_or_else(|| io::Error::other("no connection to process 0"))?;
    let mut bytes = [0u8; 8];
    leader
        .read_exact(&mut bytes)
        .map_err(|e| io::Error::new(e.kind(), format!("process 0's start time: {e}")))?;
    Ok(u64::from_be_bytes(bytes))
}

fn resolve(address: &str) -> io::Result<SocketAddr> {
    address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{address} resolves to nothing")))
}

fn listen(address: &str) -> io::Result<TcpListener> {
    TcpListener::bind(resolve(address)?)
}

/// Connects to a lower peer and swaps hellos.
fn dial(address: &str, ours: Hello) -> io::Result<(TcpStream, Option<Hello>)> {
    let mut stream = TcpStream::connect_timeout(&resolve(address)?, CONNECT_ATTEMPT)?;
    stream.set_read_timeout(Some(HELLO_TIMEOUT))?;
    stream.set_write_timeout(Some(HELLO_TIMEOUT))?;
    stream.write_all(&ours.encode())?;
    let theirs = Hello::read(&mut stream)?;
    Ok((stream, theirs))
}

/// Answers a higher peer's hello.
fn greet(stream: &mut TcpStream, ours: Hello) -> io::Result<Option<Hello>> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(HELLO_TIMEOUT))?;
    stream.set_write_timeout(Some(HELLO_TIMEOUT))?;
    let Some(theirs) = Hello::read(stream)? else { return Ok(None) };
    stream.write_all(&ours.encode())?;
    Ok(Some(theirs))
}

/// A peer must be who we dialled and agree on the cluster's shape.
fn check(
    config: &ClusterConfig,
    peer: usize,
    expected: Option<usize>,
    theirs: Option<Hello>,
    ours: Hello,
) -> Result<(), ConnectError> {
    let address = config.addresses.get(peer).cloned().unwrap_or_else(|| "?".into());
    let mismatch = |what: String| ConnectError::Mismatch { process: peer, address: address.clone(), what };
    let Some(theirs) = theirs else {
        return Err(mismatch("answered, but not as a heapster peer".into()));
    };
    if theirs.processes != ours.processes || theirs.process >= ours.processes {
        return Err(mismatch(format!(
            "runs as process {} of {}, this one as process {} of {}: every process needs the same --processes and hostfile",
            theirs.process, theirs.processes, ours.process, ours.processes
        )));
    }
    if let Some(expected) = expected
        && theirs.process as usize != expected
    {
        return Err(mismatch(format!("answers as process {}: the hostfiles differ", theirs.process)));
    }
    if theirs.workers != ours.workers {
        return Err(mismatch(format!(
            "runs {} workers and this one {}: every process needs the same -w",
            theirs.workers, ours.workers
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hellos_round_trip_and_strangers_are_refused() {
        let hello = Hello { process: 2, processes: 3, workers: 4 };
        assert_eq!(Hello::decode(&hello.encode()), Some(hello));
        assert_eq!(Hello::decode(&[b'x'; HELLO_LEN]), None);
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    #[test]
    fn an_absent_peer_is_named_after_the_wait() {
        let addresses = vec![format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port())];
        let config = ClusterConfig {
            processes: 2,
            process: 1,
            addresses: addresses.clone(),
            connect_timeout: Duration::from_millis(300),
        };
        let err = connect(&config, 1).unwrap_err().to_string();
        assert!(err.contains("not reachable within 300ms"), "{err}");
        assert!(err.contains(&format!("process 0 ({})", addresses[0])), "{err}");
    }

    #[test]
    fn a_peer_with_other_workers_is_refused_by_name() {
        let addresses = vec![format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port())];
        let config = |process| ClusterConfig {
            processes: 2,
            process,
            addresses: addresses.clone(),
            connect_timeout: Duration::from_secs(10),
        };
        let (zero, one) = (config(0), config(1));
        let peer = std::thread::spawn(move || connect(&zero, 2).map(|_| ()).map_err(|e| e.to_string()));
        let err = connect(&one, 1).unwrap_err().to_string();
        assert!(err.contains("process 0") && err.contains("-w"), "{err}");
        let theirs = peer.join().unwrap().unwrap_err();
        assert!(theirs.contains("process 1") && theirs.contains("-w"), "{theirs}");
    }
}
