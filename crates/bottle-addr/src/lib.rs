//! IP literals in every spelling, and the SSRF address classifier (used by
//! the egress proxy and the git gate).
//!
//! Browsers and libc accept `2130706433`, `0177.0.0.1`, `0x7f.1` and `127.1`
//! as 127.0.0.1, so a guard that only knows dotted quads is bypassed. Every
//! host string the proxy sees goes through [`classify_host`] first; anything
//! that looks numeric but is not a valid address is refused outright rather
//! than handed to a resolver that might interpret it.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a host string denotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKind {
    /// A DNS name (lower-cased, no trailing dot).
    Name(String),
    /// An IP address, in canonical form (IPv4-mapped IPv6 folded to IPv4).
    Ip(IpAddr),
    /// Looks like a number-based address but is none: refused.
    BadNumeric,
}

/// Classifies a host as taken from a URL or CONNECT authority (brackets allowed
/// around IPv6). Names are lower-cased and one trailing dot is removed.
pub fn classify_host(host: &str) -> HostKind {
    let h = host.strip_suffix('.').unwrap_or(host);
    if let Some(inner) = h.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return match parse_ipv6(inner) {
            Some(ip) => HostKind::Ip(canonical(IpAddr::V6(ip))),
            None => HostKind::BadNumeric,
        };
    }
    if h.contains(':') {
        return match parse_ipv6(h) {
            Some(ip) => HostKind::Ip(canonical(IpAddr::V6(ip))),
            None => HostKind::BadNumeric,
        };
    }
    if let Some(v4) = parse_ipv4_loose(h) {
        return HostKind::Ip(IpAddr::V4(v4));
    }
    // The last label decides: a name whose final label is numeric (or hex) is
    // an address attempt to inet_aton-style parsers, never a real DNS name.
    let last = h.rsplit('.').next().unwrap_or("");
    if looks_numeric(last) {
        return HostKind::BadNumeric;
    }
    HostKind::Name(h.to_ascii_lowercase())
}

fn parse_ipv6(s: &str) -> Option<Ipv6Addr> {
    // Zone ids (`%eth0`) are meaningless to a proxy and a parsing hazard.
    if s.contains('%') {
        return None;
    }
    s.parse().ok()
}

/// IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) IPv6
/// addresses are folded to the IPv4 address they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match embedded_v4(&v6) {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn embedded_v4(v6: &Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let v4 = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if s[..5] == [0; 5] && s[5] == 0xffff {
        return Some(v4); // ::ffff:0:0/96 mapped
    }
    if s[..6] == [0; 6] && u32::from(v4) > 1 {
        return Some(v4); // ::/96 compatible (deprecated), but not :: or ::1
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return Some(v4); // 64:ff9b::/96 NAT64 well-known prefix
    }
    None
}

/// inet_aton rules: one to four parts, each decimal, octal (leading `0`) or
/// hex (`0x`); the last part fills all remaining bytes.
pub fn parse_ipv4_loose(s: &str) -> Option<Ipv4Addr> {
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(parts.len());
    for p in &parts {
        nums.push(parse_number(p)?);
    }
    let (last, init) = nums.split_last()?;
    let mut value: u64 = 0;
    for (i, n) in init.iter().enumerate() {
        if *n > 0xff {
            return None;
        }
        value |= n << (8 * (3 - i));
    }
    let rest_bits = 8 * (4 - init.len());
    if rest_bits < 64 && *last >= (1u64 << rest_bits) {
        return None;
    }
    value |= last;
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

fn looks_numeric(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(h) => h.chars().all(|c| c.is_ascii_hexdigit()),
        None => !label.is_empty() && label.chars().all(|c| c.is_ascii_digit()),
    }
}

fn parse_number(p: &str) -> Option<u64> {
    if p.is_empty() || p.len() > 34 {
        return None;
    }
    let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (h, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if digits.is_empty() {
        // "0x" alone is 0 to inet_aton.
        return if radix == 16 { Some(0) } else { None };
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // Overlong numbers are still numbers (so BadNumeric), but never addresses.
    Some(u64::from_str_radix(digits, radix).unwrap_or(u64::MAX))
}

/// True when the SSRF guard must refuse a connection to this address unless
/// the user named it (a route or the `resolve` table).
pub fn is_forbidden(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

/// Most addresses a [`HostAddresses`] holds: the guard looks each answer up
/// in it, and the list travels in the sidecar's configuration.
pub const MAX_HOST_ADDRESSES: usize = 256;

/// The addresses of the machine the bottle runs on, refused by the guard
/// like the fixed ranges of [`is_forbidden`] (and exempt the same way).
///
/// No fixed range can name them: a container on an ordinary bridge reaches
/// every address of its host as local traffic, a public one included, and
/// with it every host service listening on all addresses and every port the
/// engine publishes for other containers. Held in canonical form, so an
/// IPv4-mapped answer matches its IPv4 address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostAddresses(BTreeSet<IpAddr>);

impl HostAddresses {
    /// Reads a list of plain addresses (`192.0.2.1`, `2001:db8::1`; no
    /// brackets, ports or loose spellings: the list is written by a
    /// program). The error says which entry, or how many there were.
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Self, String> {
        let mut set = BTreeSet::new();
        for s in list {
            let s = s.as_ref();
            let ip: IpAddr = s
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not an IP address"))?;
            set.insert(canonical(ip));
        }
        if set.len() > MAX_HOST_ADDRESSES {
            return Err(format!(
                "{} addresses, at most {MAX_HOST_ADDRESSES}",
                set.len()
            ));
        }
        Ok(HostAddresses(set))
    }

    /// Whether `ip`, in any form [`canonical`] folds, is one of them.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical(ip))
    }

    /// The guard's whole rule: a fixed refused range ([`is_forbidden`]) or
    /// one of these addresses.
    pub fn forbids(&self, ip: IpAddr) -> bool {
        is_forbidden(ip) || self.contains(ip)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.0.iter().copied()
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    const NETS: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),
        ([10, 0, 0, 0], 8),
        ([100, 64, 0, 0], 10),
        ([127, 0, 0, 0], 8),
        ([169, 254, 0, 0], 16),
        ([172, 16, 0, 0], 12),
        ([192, 0, 0, 0], 24),
        ([192, 168, 0, 0], 16),
        ([198, 18, 0, 0], 15),
        ([224, 0, 0, 0], 4),
        ([240, 0, 0, 0], 4),
    ];
    NETS.iter().any(|(n, b)| in_v4(ip, *n, *b))
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_unspecified()
        || ip.is_loopback()
        || (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 old site local
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x2002 && forbidden_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8,
        ))) // 6to4 wrapping a forbidden IPv4
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> HostKind {
        HostKind::Ip(s.parse().unwrap())
    }

    #[test]
    fn every_spelling_of_loopback_is_an_ip() {
        for s in [
            "127.0.0.1",
            "2130706433",
            "0177.0.0.1",
            "0x7f000001",
            "0x7F.0.0.1",
            "127.1",
            "127.0.1",
            "0177.1",
            "017700000001",
            "127.0.0.1.",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "[0:0:0:0:0:ffff:127.0.0.1]",
            "::ffff:127.0.0.1",
            "[64:ff9b::127.0.0.1]",
        ] {
            assert_eq!(classify_host(s), ip("127.0.0.1"), "{s}");
        }
    }

    #[test]
    fn names_stay_names() {
        assert_eq!(
            classify_host("Example.COM."),
            HostKind::Name("example.com".into())
        );
        assert_eq!(
            classify_host("1.example.com"),
            HostKind::Name("1.example.com".into())
        );
        assert_eq!(
            classify_host("0xdead.beef"),
            HostKind::Name("0xdead.beef".into())
        );
    }

    #[test]
    fn broken_numbers_are_refused_not_resolved() {
        for s in [
            "256.0.0.1",
            "1.2.3.4.5",
            "0x1ffffffff",
            "99999999999",
            "08.0.0.1",
            "[::1%lo]",
            "[zz::]",
            "1.2.3.09",
        ] {
            assert_eq!(classify_host(s), HostKind::BadNumeric, "{s}");
        }
    }

    #[test]
    fn ipv6_literals() {
        assert_eq!(classify_host("[::1]"), ip("::1"));
        assert_eq!(classify_host("[2001:db8::1]"), ip("2001:db8::1"));
    }

    #[test]
    fn forbidden_ranges() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "239.1.1.1",
            "240.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "febf::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "ff02::1",
        ] {
            assert!(is_forbidden(s.parse().unwrap()), "{s}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "203.0.113.5",
            "223.255.255.255",
            "2001:db8::1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_forbidden(s.parse().unwrap()), "{s}");
        }
    }

    #[test]
    fn host_addresses_are_refused_in_every_form_and_bounded() {
        let h = HostAddresses::parse(&["198.51.100.7", " 2001:db8::7 ", "198.51.100.7"]).unwrap();
        assert_eq!(h.len(), 2, "duplicates count once");
        for s in ["198.51.100.7", "::ffff:198.51.100.7", "2001:db8::7"] {
            let ip: IpAddr = s.parse().unwrap();
            assert!(h.contains(ip) && h.forbids(ip), "{s}");
        }
        for s in ["198.51.100.8", "2001:db8::8"] {
            assert!(!h.forbids(s.parse().unwrap()), "{s}");
        }
        // The fixed ranges still apply, listed or not.
        assert!(h.forbids("10.0.0.1".parse().unwrap()));
        assert!(HostAddresses::default().forbids("127.0.0.1".parse().unwrap()));

        for bad in ["host.example", "[::1]", "198.51.100.7:80", "0x7f.1", ""] {
            let e = HostAddresses::parse(&[bad]).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        let many: Vec<String> = (0..=MAX_HOST_ADDRESSES as u32)
            .map(|n| Ipv4Addr::from(0xc633_6400 + n).to_string())
            .collect();
        let e = HostAddresses::parse(&many).unwrap_err();
        assert!(e.contains("257 addresses, at most 256"), "{e}");
        assert!(HostAddresses::parse(&many[1..]).is_ok());
    }

    proptest! {
        #[test]
        fn decimal_and_hex_spellings_agree(n in any::<u32>()) {
            let want = HostKind::Ip(IpAddr::V4(Ipv4Addr::from(n)));
            prop_assert_eq!(classify_host(&n.to_string()), want.clone());
            prop_assert_eq!(classify_host(&format!("0x{n:x}")), want.clone());
            prop_assert_eq!(classify_host(&format!("0{n:o}")), want.clone());
            let o = Ipv4Addr::from(n).octets();
            prop_assert_eq!(classify_host(&format!("{}.{}", o[0], n & 0xff_ffff)), want.clone());
            let mapped = format!("[::ffff:{}]", Ipv4Addr::from(n));
            prop_assert_eq!(classify_host(&mapped), want);
        }

        #[test]
        fn mapped_forms_classify_like_v4(n in any::<u32>()) {
            let v4 = Ipv4Addr::from(n);
            prop_assert_eq!(is_forbidden(IpAddr::V4(v4)), is_forbidden(IpAddr::V6(v4.to_ipv6_mapped())));
        }

        #[test]
        fn classify_never_panics(s in "\\PC{0,40}") {
            let _ = classify_host(&s);
        }
    }
}
