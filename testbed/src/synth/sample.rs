//! Moves a node's counters on by one scrape: gauges wander around a base level, cumulative
//! counters grow by rate x elapsed time, and every aggregate (pod, `pods` cgroup, node) grows by
//! what its children grew plus its own overhead, so it never falls below their sum and never
//! resets when a child restarts.

use super::cluster::{
    Cluster, Container, MIB, NODE_ALLOCATABLE_MEMORY_KI, NODE_MEMORY_KI, Net, Node, Pod, SysSim, Volume,
    pages,
};
use super::rng::{self, Rng};

/// Logs rotate at this size (the kubelet's `containerLogMaxSize` x files kept).
const LOG_CAP: u64 = 50 * MIB;

/// What the children of an aggregate reported this scrape.
#[derive(Default)]
struct Totals {
    nano: u64,
    cpu: u64,
    ws: u64,
    usage: u64,
    rss: u64,
    pf: u64,
    mpf: u64,
    net: Net,
    fs_used: u64,
    fs_inodes: u64,
    containers: u64,
}

/// The growth of one cgroup's counters since its previous scrape (all of them when it is new).
struct Delta {
    cpu: u64,
    pf: u64,
    mpf: u64,
}

impl Cluster {
    /// Scrapes `node` at the end of `window` (`now`, seconds): every live pod, then the node.
    pub fn sample_node(&mut self, node: usize, window: usize, now: i64) {
        let mut rng = Rng::derive(self.seed, &[rng::SAMPLE, node as u64, window as u64]);
        let max_off = self.max_off;
        let Cluster { nodes, pods, .. } = self;
        let node = &mut nodes[node];
        let mut totals = Totals::default();
        for &p in &node.pods {
            let pod = &mut pods[p];
            if !pod.deleted {
                pod.sample(now, max_off, &mut rng, &mut totals);
            }
        }
        node.sample(now, max_off, &mut rng, &totals);
    }
}

/// A scrape time a few seconds before the window end, different per cgroup as real scrapes are.
fn scrape_time(now: i64, max_off: u64, rng: &mut Rng) -> (i64, u64) {
    let off = rng.range(1, max_off);
    (now - off as i64, off)
}

impl Container {
    fn sample(&mut self, now: i64, max_off: u64, rng: &mut Rng) -> Delta {
        let (t, off) = scrape_time(now, max_off, rng);
        let limit_nano = self.resources.cpu_limit_m.map_or(u64::MAX, |m| m * 1_000_000);
        let s = &mut self.sim;
        s.nano = rng.scale(s.cpu_base, 60, 140).min(limit_nano);
        let fresh = s.time == 0;
        let elapsed = (t - if fresh { self.start_secs } else { s.time }).max(1) as u64;
        let delta = if fresh {
            Delta {
                cpu: rng.scale(s.cpu_base, 80, 120) * elapsed,
                pf: s.pf_rate * elapsed,
                mpf: rng.below(elapsed / 3_600 + 2),
            }
        } else {
            Delta {
                cpu: s.nano * elapsed,
                pf: rng.scale(s.pf_rate, 50, 150) * elapsed,
                mpf: u64::from(rng.chance(3)),
            }
        };
        s.cum += delta.cpu;
        s.pf += delta.pf;
        s.mpf += delta.mpf;
        let limit_ws = self.resources.memory_limit_mi.map_or(u64::MAX, |m| m * MIB * 95 / 100);
        s.ws = pages(rng.scale(s.ws_base, 92, 108).min(limit_ws));
        s.usage = s.ws + pages(rng.scale(s.ws, 5, 40));
        s.rss = pages(rng.scale(s.ws, 60, 95));
        if !fresh {
            s.rootfs_used += rng.below(3) * 4_096;
        }
        if s.logs_used == 0 {
            s.logs_used = pages((s.log_rate * elapsed).min(LOG_CAP - rng.below(10 * MIB))).max(4_096);
        } else {
            s.logs_used += pages(rng.scale(s.log_rate, 50, 150) * elapsed);
            if s.logs_used > LOG_CAP {
                s.logs_used -= 40 * MIB;
            }
        }
        s.time = t;
        s.off = off;
        delta
    }

    /// Log files live on the node's disk, counted once per file like real inodes.
    pub fn logs_inodes(&self) -> u64 {
        1 + u64::from(self.restart_count) + self.sim.logs_used / (10 * MIB)
    }
}

impl Volume {
    fn sample(&mut self, max_off: u64, rng: &mut Rng) {
        self.used += pages(self.growth * rng.below(3));
        if self.growth > 0 && rng.chance(30) {
            self.inodes_used += 1;
        }
        self.off = rng.range(1, max_off);
    }
}

impl Pod {
    fn sample(&mut self, now: i64, max_off: u64, rng: &mut Rng, totals: &mut Totals) {
        let (t, off) = scrape_time(now, max_off, rng);
        let mut sum = Totals::default();
        for c in &mut self.containers {
            let d = c.sample(now, max_off, rng);
            sum.nano += c.sim.nano;
            sum.cpu += d.cpu;
            sum.pf += d.pf;
            sum.mpf += d.mpf;
            sum.ws += c.sim.ws;
            sum.usage += c.sim.usage;
            sum.rss += c.sim.rss;
            sum.fs_used += c.sim.rootfs_used + c.sim.logs_used;
            sum.fs_inodes += c.sim.rootfs_inodes + c.logs_inodes();
        }
        for v in &mut self.volumes {
            if v.in_summary() {
                v.sample(max_off, rng);
                if !v.on_tmpfs() {
                    sum.fs_used += v.used;
                    sum.fs_inodes += v.inodes_used;
                }
            }
        }
        let s = &mut self.sim;
        let fresh = s.time == 0;
        let elapsed = (t - if fresh { self.start_secs } else { s.time }).max(1) as u64;
        s.nano = sum.nano + s.pause_nano;
        s.cum += sum.cpu + s.pause_nano * elapsed;
        s.ws = sum.ws + s.pause_ws;
        s.usage = sum.usage + s.pause_ws + rng.below(64) * 4_096;
        s.rss = sum.rss + pages(s.pause_ws / 2);
        s.pf += sum.pf;
        s.mpf += sum.mpf;
        let net = Net {
            rx: rng.scale(s.rx_rate, 50, 150) * elapsed,
            tx: rng.scale(s.tx_rate, 50, 150) * elapsed,
            rx_errors: u64::from(rng.chance(1)),
            tx_errors: 0,
        };
        s.net.rx += net.rx;
        s.net.tx += net.tx;
        s.net.rx_errors += net.rx_errors;
        s.eph_used = sum.fs_used;
        s.eph_inodes = sum.fs_inodes;
        s.time = t;
        s.off = off;
        s.net_off = rng.range(1, max_off);

        totals.nano += s.nano;
        totals.cpu += sum.cpu + s.pause_nano * elapsed;
        totals.ws += s.ws;
        totals.usage += s.usage;
        totals.rss += s.rss;
        totals.pf += sum.pf;
        totals.mpf += sum.mpf;
        totals.net.rx += net.rx;
        totals.net.tx += net.tx;
        totals.net.rx_errors += net.rx_errors;
        totals.fs_used += sum.fs_used;
        totals.fs_inodes += sum.fs_inodes;
        totals.containers += self.containers.len() as u64;
    }
}

impl SysSim {
    fn sample(&mut self, now: i64, max_off: u64, rng: &mut Rng) -> Delta {
        let (t, off) = scrape_time(now, max_off, rng);
        let fresh = self.time == 0;
        let elapsed = (t - if fresh { self.start_secs } else { self.time }).max(1) as u64;
        self.nano = rng.scale(self.nano_base, 70, 130);
        let delta = Delta {
            cpu: if fresh { self.nano_base * elapsed } else { self.nano * elapsed },
            pf: rng.scale(self.pf_rate, 50, 150) * elapsed,
            mpf: if fresh { elapsed / rng.range(3_000, 20_000) } else { u64::from(rng.chance(2)) },
        };
        self.cum += delta.cpu;
        self.pf += delta.pf;
        self.mpf += delta.mpf;
        self.ws = pages(rng.scale(self.ws_base, 95, 105));
        self.usage = self.ws + pages(rng.scale(self.ws, 20, 200));
        self.rss = pages(rng.scale(self.ws, 70, 95));
        self.time = t;
        self.off = off;
        delta
    }
}

impl Node {
    fn sample(&mut self, now: i64, max_off: u64, rng: &mut Rng, pods: &Totals) {
        let s = &mut self.sim;
        let kubelet = s.kubelet.sample(now, max_off, rng);
        let runtime = s.runtime.sample(now, max_off, rng);

        let (t, off) = scrape_time(now, max_off, rng);
        let fresh = s.time == 0;
        let elapsed = (t - if fresh { self.boot_secs } else { s.time }).max(1) as u64;

        let (pods_t, pods_off) = scrape_time(now, max_off, rng);
        let pods_overhead = rng.range(100_000, 2_000_000);
        s.pods.nano = pods.nano + pods_overhead;
        s.pods.cum += pods.cpu + pods_overhead * elapsed;
        s.pods.ws = pods.ws + rng.range(2, 12) * MIB;
        s.pods.usage = pods.usage + rng.range(8, 64) * MIB;
        s.pods.rss = pods.rss + rng.range(1, 4) * MIB;
        s.pods.pf += pods.pf;
        s.pods.mpf += pods.mpf;
        s.pods.time = pods_t;
        s.pods.off = pods_off;

        let system_nano = rng.scale(s.system_nano, 70, 130);
        s.nano = s.pods.nano + s.kubelet.nano + s.runtime.nano + system_nano;
        s.cum += pods.cpu + pods_overhead * elapsed + kubelet.cpu + runtime.cpu + system_nano * elapsed;
        s.ws = s.pods.ws + s.kubelet.ws + s.runtime.ws + pages(rng.scale(s.system_ws, 95, 105));
        s.usage = s.ws + pages(rng.scale(s.cache, 95, 105));
        s.rss = s.pods.rss + s.kubelet.rss + s.runtime.rss + pages(rng.scale(s.system_ws, 40, 60));
        s.pf += pods.pf + kubelet.pf + runtime.pf + rng.range(20, 400) * elapsed;
        s.mpf += pods.mpf + kubelet.mpf + runtime.mpf + u64::from(rng.chance(10));

        let rx = pods.net.rx + rng.scale(s.base_rx_rate, 50, 150) * elapsed;
        let tx = pods.net.tx + rng.scale(s.base_tx_rate, 50, 150) * elapsed;
        s.eth0.rx += rx;
        s.eth0.tx += tx;
        s.eth0.rx_errors += pods.net.rx_errors;
        // The bridge receives what pods send and sends what they receive.
        s.cbr0.rx += pods.net.tx;
        s.cbr0.tx += pods.net.rx;

        s.fs_base_used += rng.below(16) * 4_096;
        s.fs_used = s.fs_base_used + pods.fs_used;
        s.fs_inodes_used = s.fs_base_inodes + pods.fs_inodes;
        s.procs = 180 + pods.containers * rng.range(2, 5);
        s.time = t;
        s.off = off;
        s.net_off = rng.range(1, max_off);
        s.fs_off = rng.range(1, max_off);
    }

    pub fn memory_capacity(&self) -> u64 {
        NODE_MEMORY_KI * 1_024
    }

    pub fn memory_allocatable(&self) -> u64 {
        NODE_ALLOCATABLE_MEMORY_KI * 1_024
    }
}
