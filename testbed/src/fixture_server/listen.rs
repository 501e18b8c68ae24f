//! Listeners: one loopback address per kubelet, the same ports on all of them.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::TcpListener;

use super::FixtureError;

/// One loopback address per node, in name order from `base`.
pub fn kubelet_addrs(
    names: &BTreeSet<String>,
    base: Ipv4Addr,
) -> Result<Vec<(String, Ipv4Addr)>, FixtureError> {
    if !base.is_loopback() {
        return Err(FixtureError::Config(format!("kubelet base address {base} is not a loopback address")));
    }
    let start = u32::from(base);
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            u32::try_from(i)
                .ok()
                .and_then(|i| start.checked_add(i))
                .map(Ipv4Addr::from)
                .filter(Ipv4Addr::is_loopback)
                .map(|addr| (name.clone(), addr))
                .ok_or_else(|| {
                    FixtureError::Config(format!(
                        "{} nodes do not fit in loopback addresses from {base}",
                        names.len()
                    ))
                })
        })
        .collect()
}

pub async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, FixtureError> {
    TcpListener::bind(addr).await.map_err(|source| FixtureError::Bind {
        what: what.to_string(),
        addr,
        source,
    })
}

/// Binds `port` on every address; with port 0, one port free on all of them, retrying when
/// another process holds the first choice on some address.
pub async fn bind_same_port(
    addrs: &[(String, Ipv4Addr)],
    port: u16,
    what: &str,
) -> Result<Vec<TcpListener>, FixtureError> {
    let Some((_, first)) = addrs.first() else {
        return Ok(Vec::new());
    };
    const ATTEMPTS: usize = 50;
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        let first_listener = bind(SocketAddr::from((*first, port)), what).await?;
        let chosen = first_listener.local_addr().map_err(FixtureError::Runtime)?.port();
        let mut listeners = vec![first_listener];
        let mut conflict = false;
        for (_, addr) in &addrs[1..] {
            let at = SocketAddr::from((*addr, chosen));
            match TcpListener::bind(at).await {
                Ok(listener) => listeners.push(listener),
                Err(source) if port == 0 && source.kind() == io::ErrorKind::AddrInUse => {
                    last_error = Some(FixtureError::Bind { what: what.to_string(), addr: at, source });
                    conflict = true;
                    break;
                }
                Err(source) => return Err(FixtureError::Bind { what: what.to_string(), addr: at, source }),
            }
        }
        if !conflict {
            return Ok(listeners);
        }
    }
    Err(last_error.unwrap_or_else(|| FixtureError::Config(format!("no free {what} port"))))
}

pub fn local_port(listener: Option<&TcpListener>) -> u16 {
    listener.and_then(|l| l.local_addr().ok()).map_or(0, |a| a.port())
}

/// A bound address a client can dial: an unspecified IP becomes loopback.
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port())),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port())),
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigns_consecutive_loopback_addresses_in_name_order() {
        let names: BTreeSet<String> = ["b", "a", "c"].iter().map(|n| n.to_string()).collect();
        let addrs = kubelet_addrs(&names, Ipv4Addr::new(127, 0, 0, 2)).unwrap();
        let expected: Vec<(String, Ipv4Addr)> = vec![
            ("a".into(), Ipv4Addr::new(127, 0, 0, 2)),
            ("b".into(), Ipv4Addr::new(127, 0, 0, 3)),
            ("c".into(), Ipv4Addr::new(127, 0, 0, 4)),
        ];
        assert_eq!(addrs, expected);
        let err = kubelet_addrs(&names, Ipv4Addr::new(10, 0, 0, 1)).unwrap_err().to_string();
        assert!(err.contains("not a loopback"), "{err}");
        let err = kubelet_addrs(&names, Ipv4Addr::new(127, 255, 255, 254)).unwrap_err().to_string();
        assert!(err.contains("do not fit"), "{err}");
    }

    #[tokio::test]
    async fn binds_one_port_on_every_address() {
        let addrs: Vec<(String, Ipv4Addr)> =
            (2..5).map(|i| (format!("n{i}"), Ipv4Addr::new(127, 0, 0, i))).collect();
        let listeners = bind_same_port(&addrs, 0, "test").await.unwrap();
        let ports: BTreeSet<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
        assert_eq!(ports.len(), 1);
        // A fixed port that is taken is an error naming the address.
        let taken = *ports.first().unwrap();
        let err = bind_same_port(&addrs, taken, "test").await.unwrap_err().to_string();
        assert!(err.contains(&format!("127.0.0.2:{taken}")), "{err}");
        assert_eq!(reachable("0.0.0.0:80".parse().unwrap()), "127.0.0.1:80".parse().unwrap());
    }
}
