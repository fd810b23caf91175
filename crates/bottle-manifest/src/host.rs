//! Hosts as a manifest writes them (routes, `http` token hosts, `resolve`
//! keys), read exactly as the sidecar will read them.
//!
//! The sidecar classifies a host with [`bottle_addr::classify_host`], by
//! inet_aton's rules: `10.1` is 10.0.0.1 to it, `0x7f000001` and
//! `2130706433` are 127.0.0.1, and `foo.123` (a numeric last label) is a
//! broken address it refuses. The manifest uses that same function, and on
//! top of it accepts an address only in the one spelling that reads the same
//! to a person, to the plan and to the sidecar: a dotted quad (`10.0.0.1`)
//! or an IPv6 address as the sidecar prints it (`2001:db8::1`). Anything the
//! sidecar would read as an address in another spelling, or refuse as a
//! broken one, is refused here with the form to write instead, so a host
//! the plan shows as a name is a name to the sidecar too.

use std::net::IpAddr;

use bottle_addr::{HostKind, classify_host};

/// What an accepted host denotes; its text is the host as written (lower
/// case), which is also the sidecar's own spelling of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// `*`: any host name.
    Any,
    /// `*.example.com`: the names under the domain (held without `*.`).
    Under(String),
    /// A DNS name.
    Name(String),
    /// An IP address, written as `IpAddr`'s display (so canonically).
    Ip(IpAddr),
}

/// Why a host is refused, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub why: String,
    pub hint: String,
}

fn refuse(why: String, hint: impl Into<String>) -> Refusal {
    Refusal {
        why,
        hint: hint.into(),
    }
}

const NAME_HINT: &str =
    "write a name like `api.example.com`, `*.example.com` or `*`; no scheme, port or path";

/// A route or token host: `*`, `*.DOMAIN`, a DNS name or an IP address.
/// `raw` is already lower-cased.
pub fn parse_host(raw: &str) -> Result<Host, Refusal> {
    if raw == "*" {
        return Ok(Host::Any);
    }
    if let Some(domain) = raw.strip_prefix("*.") {
        return match parse_single(domain) {
            Ok(Written::Name(n)) => Ok(Host::Under(n)),
            Ok(Written::Ip(_)) | Err(Single::Address { .. } | Single::Numeric) => Err(refuse(
                format!("`{raw}` is a wildcard over an address or a number, not a domain"),
                "a wildcard covers the names under a domain, such as `*.example.com`; \
                 write an address on its own, such as `10.0.0.1`",
            )),
            Err(Single::NotAName) => Err(refuse(format!("`{raw}` is not a host name"), NAME_HINT)),
        };
    }
    match parse_single(raw) {
        Ok(Written::Name(n)) => Ok(Host::Name(n)),
        Ok(Written::Ip(ip)) => Ok(Host::Ip(ip)),
        Err(Single::Address { ip, how }) => Err(refuse(
            format!("`{raw}` {how}"),
            format!(
                "write `{ip}`; an address counts only as a dotted quad (`10.0.0.1`) or as \
                 IPv6 in its short form (`2001:db8::1`), or write a host name"
            ),
        )),
        Err(Single::Numeric) => Err(refuse(format!("`{raw}` {NUMERIC}"), NUMERIC_HINT)),
        Err(Single::NotAName) => Err(refuse(format!("`{raw}` is not a host name"), NAME_HINT)),
    }
}

/// A `resolve` key: a DNS name only. `raw` is already lower-cased.
pub fn parse_name(raw: &str) -> Result<String, Refusal> {
    const HINT: &str = "a `resolve` key is the host name the agent uses, with the address \
                        as its value, such as `git.internal: 10.0.0.5`";
    match parse_single(raw) {
        Ok(Written::Name(n)) => Ok(n),
        Ok(Written::Ip(ip)) | Err(Single::Address { ip, .. }) => Err(refuse(
            format!("is the IP address {ip} to the sidecar, not a host name"),
            HINT,
        )),
        Err(Single::Numeric) => Err(refuse(NUMERIC.to_string(), HINT)),
        Err(Single::NotAName) => Err(refuse("is not a host name".to_string(), HINT)),
    }
}

const NUMERIC: &str =
    "ends in a numeric label, so the sidecar reads it as an IP address, and it is not a valid one";
const NUMERIC_HINT: &str = "a host name's last label needs a letter (`api.example.com`); an \
                            address is written as a dotted quad such as `10.0.0.1`";

enum Written {
    Name(String),
    Ip(IpAddr),
}

enum Single {
    /// The sidecar reads it as `ip`, spelt otherwise; `how` says so.
    Address {
        ip: IpAddr,
        how: String,
    },
    /// Numeric-looking, but no address: the sidecar refuses it.
    Numeric,
    NotAName,
}

/// One host, no wildcard: as [`classify_host`] reads it, in its canonical
/// spelling only.
fn parse_single(raw: &str) -> Result<Written, Single> {
    match classify_host(raw) {
        HostKind::Ip(ip) if ip.to_string() == raw => Ok(Written::Ip(ip)),
        HostKind::Ip(ip) => Err(Single::Address {
            ip,
            how: match raw.parse::<IpAddr>() {
                Ok(IpAddr::V6(_)) if ip.is_ipv4() => {
                    format!("carries the IPv4 address {ip}, which the sidecar uses instead")
                }
                Ok(_) => format!("is the IP address {ip} written in a long form"),
                Err(_) if raw.contains('[') => format!("is the IP address {ip} in brackets"),
                Err(_) => format!("is read by the sidecar as the IP address {ip}"),
            },
        }),
        // Not a number at all (`a.com:443`, `[zz]`) reads better as "not a
        // host name" than as a broken address.
        HostKind::BadNumeric if raw.contains([':', '[', ']', '%', '/']) => Err(Single::NotAName),
        HostKind::BadNumeric => Err(Single::Numeric),
        // `classify_host` drops one trailing dot; a manifest writes none.
        HostKind::Name(n) if n == raw && is_dns_name(raw) => Ok(Written::Name(n)),
        HostKind::Name(_) => Err(Single::NotAName),
    }
}

/// LDH labels (plus `_`), not starting or ending with `-`, 1-63 bytes each,
/// 253 in all: stricter than the sidecar's own check, never looser.
fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The sidecar's route parser (bottle-egress `HostPattern::parse`) in
    /// the terms it is built from: `*`, `*.` + a name, a name or an address
    /// by [`classify_host`]. Every accepted host must mean the same there.
    fn agrees_with_the_sidecar(raw: &str, host: &Host) -> Result<(), TestCaseError> {
        match host {
            Host::Any => prop_assert_eq!(raw, "*"),
            Host::Under(d) => {
                prop_assert_eq!(format!("*.{d}"), raw);
                prop_assert_eq!(classify_host(d), HostKind::Name(d.clone()));
            }
            Host::Name(n) => {
                prop_assert_eq!(n, raw);
                prop_assert_eq!(classify_host(raw), HostKind::Name(n.clone()));
            }
            Host::Ip(ip) => {
                prop_assert_eq!(ip.to_string(), raw);
                prop_assert_eq!(classify_host(raw), HostKind::Ip(*ip));
            }
        }
        Ok(())
    }

    /// Host-like text: digits, hex, dots, colons, brackets and a few
    /// letters, so look-alikes of every kind come up often.
    fn hostish() -> impl Strategy<Value = String> {
        prop_oneof![
            "(\\*\\.)?[0-9a-fx.]{0,20}",
            "(\\*\\.)?[0-9a-z.:\\[\\]%-]{0,24}",
            "(\\*\\.)?([a-z0-9-]{1,5}\\.){0,3}(0x)?[0-9a-f]{1,9}",
            any::<u32>().prop_map(|n| std::net::Ipv4Addr::from(n).to_string()),
            any::<u128>().prop_map(|n| std::net::Ipv6Addr::from(n).to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn every_accepted_host_means_the_same_to_the_sidecar(raw in hostish()) {
            if let Ok(host) = parse_host(&raw) {
                agrees_with_the_sidecar(&raw, &host)?;
            }
            if let Ok(name) = parse_name(&raw) {
                prop_assert_eq!(classify_host(&raw), HostKind::Name(name));
            }
        }

        /// Whatever the sidecar reads as a broken address, or as an address
        /// spelt otherwise, the manifest refuses.
        #[test]
        fn look_alikes_are_refused(raw in hostish()) {
            match classify_host(&raw) {
                HostKind::BadNumeric => prop_assert!(parse_host(&raw).is_err()),
                HostKind::Ip(ip) if ip.to_string() != raw => {
                    prop_assert!(parse_host(&raw).is_err());
                }
                _ => {}
            }
            prop_assert!(!matches!(classify_host(&raw), HostKind::Ip(_)) || parse_name(&raw).is_err());
        }

        #[test]
        fn every_dotted_quad_is_an_address(n in any::<u32>()) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(n));
            prop_assert_eq!(parse_host(&ip.to_string()), Ok(Host::Ip(ip)));
            let (decimal, hex) = (n.to_string(), format!("0x{n:x}"));
            prop_assert!(parse_host(&decimal).is_err());
            prop_assert!(parse_host(&hex).is_err());
        }
    }

    #[test]
    fn the_hint_names_the_canonical_form() {
        let e = parse_host("0x7f.1").unwrap_err();
        assert!(e.hint.starts_with("write `127.0.0.1`"), "{e:?}");
        let e = parse_host("[2001:db8::1]").unwrap_err();
        assert!(e.why.contains("brackets"), "{e:?}");
        assert!(e.hint.starts_with("write `2001:db8::1`"), "{e:?}");
        let e = parse_host("a.com:443").unwrap_err();
        assert_eq!(e.why, "`a.com:443` is not a host name");
    }
}
