//! A lost peer stops the process.
//!
//! Timely is not fault tolerant: when a peer's connection breaks, the thread that reads or
//! writes it (`timely:recv-N`, `timely:send-N`) panics and the graph can never progress again.
//! Rather than hang, the process says which peer it lost and exits at once with
//! [`EXIT_LOST_PEER`]; a restart of every process resumes from the event checkpoints.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The exit status after a lost peer.
pub const EXIT_LOST_PEER: i32 = 3;

/// How long the first report waits for others: when one process dies, a peer that exits on
/// losing it breaks its own connections too, and a process should name the peer that died, not
/// only the one that left after it.
const GRACE: Duration = Duration::from_millis(500);

/// Installs the panic hook that turns a broken peer connection into a clear exit.
pub fn exit_on_lost_peer(addresses: Vec<String>) {
    let previous = std::panic::take_hook();
    let lost: Arc<Mutex<BTreeMap<usize, String>>> = Arc::default();
    let stopping = Arc::new(AtomicBool::new(false));
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let peer = thread.name().and_then(peer_of_thread);
        if peer.is_none() && !stopping.load(Ordering::SeqCst) {
            previous(info);
            return;
        }
        if let Some(peer) = peer {
            let cause = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("connection broken")
                .to_string();
            lost.lock().unwrap_or_else(PoisonError::into_inner).entry(peer).or_insert(cause);
        }
        if stopping.swap(true, Ordering::SeqCst) {
            // The first report speaks for every thread; this one (a worker that found its
            // channels broken, another peer's thread) waits for the exit.
            loop {
                std::thread::park();
            }
        }
        std::thread::sleep(GRACE);
        let lost = lost.lock().unwrap_or_else(PoisonError::into_inner);
        for (peer, cause) in lost.iter() {
            let address = addresses.get(*peer).map_or("?", String::as_str);
            eprintln!("heapster: lost peer process {peer} ({address}): {cause}");
        }
        eprintln!(
            "heapster: stopping: the cluster cannot go on without every process; restart them all, \
             events resume from their checkpoints"
        );
        std::process::exit(EXIT_LOST_PEER);
    }));
}

/// The peer a timely networking thread talks to, from its name.
fn peer_of_thread(name: &str) -> Option<usize> {
    name.strip_prefix("timely:recv-").or_else(|| name.strip_prefix("timely:send-"))?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networking_threads_name_their_peer() {
        assert_eq!(peer_of_thread("timely:recv-2"), Some(2));
        assert_eq!(peer_of_thread("timely:send-10"), Some(10));
        assert_eq!(peer_of_thread("timely:work-1"), None);
        assert_eq!(peer_of_thread("collector"), None);
    }
}
