//! The SSRF guard for the gate's upstreams (`manifest.md`: the gate connects
//! to upstreams itself, and "an upstream at a private address must be named
//! in `resolve`").
//!
//! Before each refresh and each push the gate resolves the upstream's name
//! itself, refuses it when any answer is a loopback, private, link-local,
//! CGNAT, multicast or metadata address (the egress proxy's ranges), and
//! pins git to the address it checked, so a second lookup by git cannot
//! rebind the name. Exempt, because the user chose them: a name the bottle
//! pins in `resolve`, and an IP literal written in the repo's URL (as a
//! route naming an address is for the proxy).

use std::net::IpAddr;
use std::time::Duration;

use bottle_addr::{HostKind, classify_host, is_forbidden};

use crate::config::GateConfig;
use crate::credentials::url_host;

/// How long a name may take to resolve.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an upstream may not be reached; the text goes to the client and the
/// audit log (it names the host and address, never a credential).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The name resolves to an address the guard refuses.
    PrivateAddress(String),
    /// The name does not resolve, or the URL has no host the gate can read.
    Unresolved(String),
}

impl Refused {
    /// The audit event's `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::PrivateAddress(_) => "private-address",
            Refused::Unresolved(_) => "upstream-error",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Refused::PrivateAddress(m) | Refused::Unresolved(m) => m,
        }
    }
}

/// The address git must use for `url`'s host: `None` when the bottle's
/// `resolve` table or the URL itself already fixes it.
pub async fn vet(url: &str, gate: &GateConfig) -> Result<Option<IpAddr>, Refused> {
    let Some((host, port)) = url_host(url) else {
        return Err(Refused::Unresolved(
            "the upstream URL has no host the gate can read".into(),
        ));
    };
    // Through `upstream_proxy` the proxy resolves the name, as the egress
    // proxy does for unpinned names (docs/egress.md).
    if gate.resolve.contains_key(&host.to_ascii_lowercase()) || gate.upstream_proxy.is_some() {
        return Ok(None);
    }
    let name = match classify_host(&host) {
        HostKind::Ip(_) => return Ok(None),
        HostKind::BadNumeric => {
            return Err(Refused::PrivateAddress(format!(
                "the upstream host `{host}` looks like an address but is none; \
                 write the address plainly, or pin the name in `egress.resolve`"
            )));
        }
        HostKind::Name(n) => n,
    };
    let answers = match tokio::time::timeout(
        LOOKUP_TIMEOUT,
        tokio::net::lookup_host((name.as_str(), port)),
    )
    .await
    {
        Ok(Ok(a)) => a.map(|sa| sa.ip()).collect::<Vec<_>>(),
        Ok(Err(e)) => {
            return Err(Refused::Unresolved(format!(
                "cannot resolve the upstream host `{name}`: {e}"
            )));
        }
        Err(_) => {
            return Err(Refused::Unresolved(format!(
                "resolving the upstream host `{name}` took over {}s",
                LOOKUP_TIMEOUT.as_secs()
            )));
        }
    };
    decide(&name, &answers)
}

/// The guard's rule on a name's answers: one forbidden answer refuses the
/// lot (a name mixing public and private answers is a rebinding attempt).
fn decide(name: &str, answers: &[IpAddr]) -> Result<Option<IpAddr>, Refused> {
    if let Some(bad) = answers.iter().find(|ip| is_forbidden(**ip)) {
        return Err(Refused::PrivateAddress(format!(
            "the upstream host `{name}` resolves to {bad}, a private or local address; \
             the gate reaches such an address only when the bottle pins the name in \
             `egress.resolve`"
        )));
    }
    match answers.first() {
        Some(ip) => Ok(Some(*ip)),
        None => Err(Refused::Unresolved(format!(
            "the upstream host `{name}` has no address"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_private_answer_refuses_the_name() {
        assert_eq!(
            decide("git.example", &[ip("203.0.113.7")]),
            Ok(Some(ip("203.0.113.7")))
        );
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "::1",
            "::ffff:192.168.0.1",
        ] {
            let r = decide("git.example", &[ip("203.0.113.7"), ip(bad)]);
            assert!(matches!(r, Err(Refused::PrivateAddress(_))), "{bad}: {r:?}");
        }
        assert!(matches!(decide("x", &[]), Err(Refused::Unresolved(_))));
    }
}
