//! This machine's own addresses: what the sidecar's SSRF guard refuses
//! besides its fixed private ranges (`host_addresses` in its
//! configuration), and where `doctor --self-test` aims its probe.
//!
//! The sidecar sits on an ordinary bridge, so its connections to any
//! address of the host arrive at the host as local traffic: a service
//! listening on all addresses, or a port the engine publishes for another
//! container, answers at the host's public address too, and a wildcard
//! route (`*.amazonaws.com` takes `ec2-…` names to it) would reach it
//! through the proxy. Private and loopback addresses are refused anyway;
//! the public ones must be named.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bottle_egress::addr::{MAX_HOST_ADDRESSES, is_forbidden};

const FIB_TRIE: &str = "/proc/net/fib_trie";
const IF_INET6: &str = "/proc/net/if_inet6";

/// This host's own addresses but loopback and link-local: IPv4 from
/// /proc/net/fib_trie (`/32 host LOCAL` entries), IPv6 of global scope
/// from /proc/net/if_inet6. Sorted, IPv4 first, without duplicates. Those
/// of the network namespace this process runs in: a CLI inside a
/// container sees that container's.
pub fn local() -> io::Result<Vec<IpAddr>> {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot read {path}: {e}")))
    };
    // A kernel with IPv6 disabled has no if_inet6, and no IPv6 address.
    let v6 = match read(IF_INET6) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        other => other?,
    };
    Ok(parse(&read(FIB_TRIE)?, &v6))
}

fn parse(fib_trie: &str, if_inet6: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut last = None;
    for line in fib_trie.lines() {
        let t = line.trim_start_matches([' ', '|', '+', '-']);
        if t.contains("/32 host LOCAL") {
            // The entry belongs to the address on the line before it.
            if let Some(v4) = last.filter(|a: &Ipv4Addr| !a.is_loopback()) {
                out.push(IpAddr::V4(v4));
            }
        } else if let Some(addr) = t.split_whitespace().next()
            && let Ok(v4) = addr.parse::<Ipv4Addr>()
        {
            last = Some(v4);
        }
    }
    for line in if_inet6.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Scope 00 is global; fe80 (20) and ::1 (10) are left out.
        if f.len() >= 4
            && f[3] == "00"
            && f[0].len() == 32
            && let Ok(bits) = u128::from_str_radix(f[0], 16)
        {
            out.push(IpAddr::V6(Ipv6Addr::from(bits)));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The sidecar's `host_addresses`, and what to warn about.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ForSidecar {
    pub addresses: Vec<IpAddr>,
    pub warnings: Vec<String>,
}

/// This machine's addresses for the sidecar when the engine runs here
/// (`docker_host` is `DOCKER_HOST`). For an engine elsewhere none: the
/// sidecar's host is that machine, whose addresses the CLI cannot see
/// (docs/security.md, "Known limits"); `wildcard` (the bottle has a `*`
/// route, which could reach them) makes that a warning.
pub fn for_sidecar(docker_host: Option<&str>, wildcard: bool) -> ForSidecar {
    let own = local();
    let own_list = own.as_deref().unwrap_or_default();
    if !engine_is_local(docker_host, own_list) {
        let mut out = ForSidecar::default();
        if wildcard {
            out.warnings.push(format!(
                "the engine at `{}` runs on another machine, whose own addresses the \
                 sidecar cannot be told: a wildcard route may reach services on them",
                docker_host.unwrap_or_default()
            ));
        }
        return out;
    }
    match own {
        Ok(all) => sidecar_list(all),
        Err(e) => ForSidecar {
            addresses: Vec::new(),
            warnings: vec![format!(
                "{e}: the sidecar cannot be told this machine's own addresses, so the \
                 agent may reach services on them through a wildcard route"
            )],
        },
    }
}

/// Whether the engine at `docker_host` runs on this machine: the default
/// socket, any unix socket, or TCP to a loopback or unspecified address
/// (in any of their forms) or to one of `own`, this machine's addresses.
/// Anything else (`tcp://` to another host, `ssh://`) is taken as remote.
/// A socket forwarded from another machine looks local; the list is then
/// this machine's, which costs nothing but covers nothing either.
pub fn engine_is_local(docker_host: Option<&str>, own: &[IpAddr]) -> bool {
    let Some(host) = docker_host.map(str::trim).filter(|h| !h.is_empty()) else {
        return true;
    };
    if host.starts_with("unix://") {
        return true;
    }
    let Some(name) = bottle_docker::engine::tcp_host(host) else {
        return false;
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| {
            let ip = ip.to_canonical();
            ip.is_loopback() || ip.is_unspecified() || own.contains(&ip)
        })
}

/// Keeps what the fixed ranges do not already refuse (the bridges'
/// gateways, LAN and loopback addresses), at most [`MAX_HOST_ADDRESSES`]
/// (IPv4 first), with a warning naming what had to be left out.
fn sidecar_list(all: Vec<IpAddr>) -> ForSidecar {
    let mut addresses: Vec<IpAddr> = all.into_iter().filter(|ip| !is_forbidden(*ip)).collect();
    addresses.sort();
    addresses.dedup();
    let mut warnings = Vec::new();
    if addresses.len() > MAX_HOST_ADDRESSES {
        let left_out = addresses.split_off(MAX_HOST_ADDRESSES);
        warnings.push(format!(
            "this machine has {} public addresses; the sidecar refuses the first \
             {MAX_HOST_ADDRESSES}, and the agent may reach services on the other {} \
             (from {}) through a wildcard route",
            MAX_HOST_ADDRESSES + left_out.len(),
            left_out.len(),
            left_out[0],
        ));
    }
    ForSidecar {
        addresses,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: a failed step is a failed test

    use super::*;

    /// A cloud VM's tables: a public address on eth0, the docker0 bridge,
    /// loopback; the IPv6 global, link-local and loopback addresses.
    const FIB_TRIE: &str = "\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     |-- 172.17.0.1
        /32 host LOCAL
     |-- 198.51.100.7
        /32 host LOCAL
     |-- 198.51.100.255
        /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 198.51.100.7
        /32 host LOCAL
";
    const IF_INET6: &str = "\
00000000000000000000000000000001 01 80 10 80       lo
20010db8000000000000000000000007 02 40 00 00     eth0
fe800000000000000000000000000007 02 40 20 80     eth0
fd000000000000000000000000000002 03 40 00 00  docker0
";

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn the_tables_give_every_own_address_but_loopback_and_link_local() {
        assert_eq!(
            parse(FIB_TRIE, IF_INET6),
            ips(&["172.17.0.1", "198.51.100.7", "2001:db8::7", "fd00::2"])
        );
        assert!(parse("", "").is_empty());
        assert!(parse("garbage\n|-- nope\n/32 host LOCAL\n", "zz 1 2 00 3 x\n").is_empty());
    }

    /// Attack this closes: a wildcard route and a name resolving to the
    /// host's public address. The sidecar gets that address; what its
    /// fixed ranges refuse anyway (the bridge's gateway, a ULA) is left out.
    #[test]
    fn a_local_engine_gives_the_sidecar_the_public_addresses() {
        let got = sidecar_list(parse(FIB_TRIE, IF_INET6));
        assert_eq!(got.addresses, ips(&["198.51.100.7", "2001:db8::7"]));
        assert!(got.warnings.is_empty());
    }

    #[test]
    fn past_the_bound_the_rest_is_named_in_a_warning() {
        let all: Vec<IpAddr> = (0..300u32)
            .map(|n| IpAddr::V4(Ipv4Addr::from(0xcb00_7100 + n))) // 203.0.113.0 on
            .collect();
        let got = sidecar_list(all);
        assert_eq!(got.addresses.len(), MAX_HOST_ADDRESSES);
        assert_eq!(got.warnings.len(), 1);
        let w = &got.warnings[0];
        assert!(
            w.contains("300 public addresses") && w.contains("other 44"),
            "{w}"
        );
        assert!(w.contains("203.0.114.0"), "the first one left out: {w}");
    }

    /// On Linux the tables are there to read; what they hold is this
    /// machine's business (a container's may hold only private addresses).
    #[test]
    fn this_machines_tables_read() {
        let all = local().unwrap();
        assert!(all.iter().all(|ip| !ip.is_loopback()), "{all:?}");
    }

    #[test]
    fn which_engines_are_local() {
        // This machine's own public address counts as local.
        let own = ips(&["198.51.100.7"]);
        for local in [
            None,
            Some(""),
            Some("unix:///var/run/docker.sock"),
            Some("unix:///run/user/1000/docker.sock"),
            Some("tcp://127.0.0.1:2375"),
            Some("tcp://localhost:2375"),
            Some("tcp://[::1]:2375"),
            Some("http://127.0.0.2:2375/"),
            Some("tcp://0.0.0.0:2375"),
            Some("tcp://[::ffff:127.0.0.1]:2375"),
            Some("tcp://[::]:2375"),
            Some("tcp://198.51.100.7:2376"),
        ] {
            assert!(engine_is_local(local, &own), "{local:?}");
        }
        for remote in [
            "tcp://10.0.0.5:2376",
            "tcp://docker.example:2376",
            "tcp://[2001:db8::1]:2376",
            "ssh://me@build.example",
            "npipe:////./pipe/docker_engine",
        ] {
            assert!(!engine_is_local(Some(remote), &own), "{remote}");
            assert_eq!(
                for_sidecar(Some(remote), false),
                ForSidecar::default(),
                "{remote}"
            );
            let warned = for_sidecar(Some(remote), true);
            assert!(warned.addresses.is_empty());
            assert!(warned.warnings[0].contains("another machine"), "{warned:?}");
        }
    }
}
