//! Summary body buffers, reused: a scrape reads into a buffer the workers handed back after
//! parsing, so a window of a thousand ~70-400 kB bodies costs no allocation once the pool is
//! warm, and no buffer is freed on a thread other than the one that allocated it.
//!
//! Only buffers the pool lent are taken back ([`recycle`] of a body read from a file, as replay
//! does, is a plain drop), and the pool keeps at most [`KEPT_BYTES`] of them: an idle collector
//! holds about what one window had in flight at once.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What the pool keeps at most, in buffer capacity.
const KEPT_BYTES: usize = 32 << 20;
/// A buffer larger than this is freed rather than kept: one huge node does not pin memory.
const KEPT_BUFFER: usize = 4 << 20;

struct Pool {
    free: Mutex<Free>,
    /// Buffers lent and not handed back yet.
    lent: AtomicUsize,
}

struct Free {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

static POOL: Pool = Pool::new();

/// An empty buffer for a body, with the capacity of an earlier body when one is free.
pub fn take() -> Vec<u8> {
    POOL.take()
}

/// Hands a body's buffer back once it is parsed. A buffer the pool did not lend, or one past
/// the pool's bounds, is dropped.
pub fn recycle(buffer: Vec<u8>) {
    POOL.recycle(buffer)
}

impl Pool {
    const fn new() -> Pool {
        Pool { free: Mutex::new(Free { buffers: Vec::new(), bytes: 0 }), lent: AtomicUsize::new(0) }
    }

    fn take(&self) -> Vec<u8> {
        self.lent.fetch_add(1, Ordering::Relaxed);
        let Ok(mut free) = self.free.lock() else { return Vec::new() };
        match free.buffers.pop() {
            Some(buffer) => {
                free.bytes -= buffer.capacity();
                buffer
            }
            None => Vec::new(),
        }
    }

    fn recycle(&self, mut buffer: Vec<u8>) {
        if self.lent.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_err() {
            return;
        }
        if buffer.capacity() == 0 || buffer.capacity() > KEPT_BUFFER {
            return;
        }
        buffer.clear();
        let Ok(mut free) = self.free.lock() else { return };
        if free.bytes + buffer.capacity() <= KEPT_BYTES {
            free.bytes += buffer.capacity();
            free.buffers.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lent_buffers_come_back_cleared_and_others_are_dropped() {
        let pool = Pool::new();
        // Not lent: dropped, so replay's bodies never fill the pool.
        pool.recycle(Vec::with_capacity(1000));
        assert!(pool.free.lock().unwrap().buffers.is_empty());
        let mut body = pool.take();
        body.extend_from_slice(&[7u8; 5000]);
        let capacity = body.capacity();
        pool.recycle(body);
        let again = pool.take();
        assert!(again.is_empty(), "a recycled buffer comes back cleared");
        assert_eq!(again.capacity(), capacity);
        // Too large to keep: freed, and the next buffer is a new one.
        let mut huge = again;
        huge.reserve_exact(KEPT_BUFFER + 1);
        pool.recycle(huge);
        assert_eq!(pool.take().capacity(), 0);
    }

    #[test]
    fn the_pool_keeps_at_most_its_budget() {
        let pool = Pool::new();
        let lent: Vec<Vec<u8>> = (0..40).map(|_| pool.take()).collect();
        for mut buffer in lent {
            buffer.reserve_exact(1 << 20);
            pool.recycle(buffer);
        }
        let free = pool.free.lock().unwrap();
        assert!(free.bytes <= KEPT_BYTES, "{} bytes kept", free.bytes);
        assert!(free.buffers.len() < 40 && !free.buffers.is_empty(), "{} kept", free.buffers.len());
        assert_eq!(free.bytes, free.buffers.iter().map(Vec::capacity).sum::<usize>());
    }
}
