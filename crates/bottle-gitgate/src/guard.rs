//! The SSRF guard for the gate's upstreams (`manifest.md`: the gate connects
//! to upstreams itself, and "an upstream at a private address must be named
//! in `resolve`").
//!
//! Before each refresh and each push the gate resolves the upstream's name
//! itself, refuses it when any answer is a loopback, private, link-local,
//! CGNAT, multicast or metadata address (the egress proxy's ranges), and
//! pins git to the address it checked, so a second lookup by git cannot
//! rebind the name. The addresses of the machine the bottle runs on
//! (`gate.host_addresses`) are refused the same way. Exempt, because the user chose them: a name the bottle
//! pins in `resolve`, and an IP literal written in the repo's URL (as a
//! route naming an address is for the proxy).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use bottle_addr::{HostAddresses, HostKind, classify_host, is_forbidden};

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

/// A pending name lookup: the name's addresses.
pub type Lookup<'a> = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Where the guard looks names up. The gate always uses [`SystemResolver`];
/// this seam exists so a test can give the guard one answer and git (which
/// asks the system) another, the DNS-rebinding attack the pin must defeat
/// (`tests/https.rs`). See [`crate::Gate::with_resolver`].
pub trait Resolver: Send + Sync {
    /// The addresses of `name` (the port only shapes the system query).
    fn lookup<'a>(&'a self, name: &'a str, port: u16) -> Lookup<'a>;
}

/// The system's resolver (`getaddrinfo`, as git's own lookup).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup<'a>(&'a self, name: &'a str, port: u16) -> Lookup<'a> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((name, port))
                .await?
                .map(|sa| sa.ip())
                .collect())
        })
    }
}

/// The address git must use for `url`'s host: `None` when the bottle's
/// `resolve` table or the URL itself already fixes it. Names are looked up
/// with `resolver`.
pub async fn vet(
    url: &str,
    gate: &GateConfig,
    resolver: &dyn Resolver,
) -> Result<Option<IpAddr>, Refused> {
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
    let answers = match tokio::time::timeout(LOOKUP_TIMEOUT, resolver.lookup(&name, port)).await {
        Ok(Ok(a)) => a,
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
    decide(&name, &answers, &gate.host_addresses)
}

/// The guard's rule on a name's answers: one forbidden answer (a private
/// range, or an address of the host) refuses the lot (a name mixing public
/// and private answers is a rebinding attempt).
fn decide(name: &str, answers: &[IpAddr], host: &HostAddresses) -> Result<Option<IpAddr>, Refused> {
    if let Some(bad) = answers.iter().find(|ip| host.forbids(**ip)) {
        let what = if is_forbidden(*bad) {
            "a private or local address"
        } else {
            "an address of the machine the bottle runs on"
        };
        return Err(Refused::PrivateAddress(format!(
            "the upstream host `{name}` resolves to {bad}, {what}; \
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
        let none = HostAddresses::default();
        assert_eq!(
            decide("git.example", &[ip("203.0.113.7")], &none),
            Ok(Some(ip("203.0.113.7")))
        );
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "::1",
            "::ffff:192.168.0.1",
        ] {
            let r = decide("git.example", &[ip("203.0.113.7"), ip(bad)], &none);
            assert!(matches!(r, Err(Refused::PrivateAddress(_))), "{bad}: {r:?}");
        }
        assert!(matches!(
            decide("x", &[], &none),
            Err(Refused::Unresolved(_))
        ));
    }

    /// A resolver with fixed answers that counts how often it was asked.
    struct Fixed(Vec<IpAddr>, std::sync::atomic::AtomicUsize);

    impl Resolver for Fixed {
        fn lookup<'a>(&'a self, _: &'a str, _: u16) -> Lookup<'a> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let answers = self.0.clone();
            Box::pin(async move { Ok(answers) })
        }
    }

    #[tokio::test]
    async fn vet_takes_the_resolvers_answers_and_refuses_a_mixed_set() {
        let (gate, _) = crate::config::from_sidecar_json(
            r#"{"gate": {"repos": {"app": {"url": "https://git.example/app.git",
                "auth": "token", "token_ref": "T"}},
                "resolve": {"own.example": "10.0.0.9"}},
                "secrets": {"tokens": {"T": "t"}}}"#,
        )
        .unwrap();
        let url = "https://git.example/app.git";
        let mixed = Fixed(vec![ip("203.0.113.7"), ip("10.0.0.5")], Default::default());
        let r = vet(url, &gate, &mixed).await;
        assert!(
            matches!(&r, Err(Refused::PrivateAddress(m)) if m.contains("10.0.0.5")),
            "{r:?}"
        );
        let public = Fixed(vec![ip("203.0.113.7")], Default::default());
        assert_eq!(vet(url, &gate, &public).await, Ok(Some(ip("203.0.113.7"))));
        // A name pinned in `resolve` and an IP literal are never looked up.
        for exempt in ["https://own.example/o.git", "https://10.0.0.5/o.git"] {
            assert_eq!(vet(exempt, &gate, &mixed).await, Ok(None));
        }
        assert_eq!(mixed.1.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// Attack: an upstream name (a wildcard DNS name, or one the agent's
    /// repo URL points at) that resolves to the public address of the
    /// machine the bottle runs on, which the gate's connection reaches as
    /// local traffic. 198.51.100.7 stands for that address: public, so no
    /// fixed range refuses it; `gate.host_addresses` lists it.
    #[tokio::test]
    async fn an_address_of_the_host_is_refused_unless_pinned() {
        let (gate, _) = crate::config::from_sidecar_json(
            r#"{"gate": {"repos": {"app": {"url": "https://git.example/app.git",
                "auth": "token", "token_ref": "T"}},
                "resolve": {"own.example": "198.51.100.7"},
                "host_addresses": ["198.51.100.7", "2001:db8::7"]},
                "secrets": {"tokens": {"T": "t"}}}"#,
        )
        .unwrap();
        let url = "https://git.example/app.git";
        for answer in ["198.51.100.7", "::ffff:198.51.100.7", "2001:db8::7"] {
            let host = Fixed(vec![ip(answer)], Default::default());
            let r = vet(url, &gate, &host).await;
            assert!(
                matches!(&r, Err(Refused::PrivateAddress(m))
                    if m.contains("the machine the bottle runs on")),
                "{answer}: {r:?}"
            );
            assert_eq!(r.map_err(|e| e.reason()), Err("private-address"));
        }
        // Another public address passes; a pin in `resolve` exempts.
        let other = Fixed(vec![ip("198.51.100.8")], Default::default());
        assert_eq!(vet(url, &gate, &other).await, Ok(Some(ip("198.51.100.8"))));
        let host = Fixed(vec![ip("198.51.100.7")], Default::default());
        assert_eq!(
            vet("https://own.example/o.git", &gate, &host).await,
            Ok(None)
        );
    }

    #[test]
    fn a_bad_host_address_is_a_config_error_naming_the_key() {
        let e =
            crate::config::from_sidecar_json(r#"{"gate": {"host_addresses": ["host.example"]}}"#)
                .unwrap_err()
                .to_string();
        assert!(
            e.contains("host_addresses") && e.contains("host.example"),
            "{e}"
        );
    }
}
