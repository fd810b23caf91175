//! Test support for the crates' own tests (never a dependency of the
//! product): a CA made at run time, standing in for the public roots of
//! "the internet" in front of fake upstreams, and pseudo-terminals.

// Test support: a failure here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A CA made at run time; `pem` is its certificate.
pub struct TestCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(common_name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A rustls server config for `names` (host names or IP addresses),
    /// signed by this CA, speaking HTTP/1.1.
    pub fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let mut cfg = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], der)
            .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    /// The certificate as `dir/upstream-ca.pem`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let p = dir.join("upstream-ca.pem");
        std::fs::write(&p, &self.pem).unwrap();
        p
    }
}

/// A pseudo-terminal pair (controller, terminal). Neither becomes the
/// test's controlling terminal; the controller is not inherited by children,
/// so closing it is enough to hang the terminal up.
pub fn pty() -> (OwnedFd, OwnedFd) {
    use rustix::fs::{Mode, OFlags};
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let controller = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&controller).unwrap();
    unlockpt(&controller).unwrap();
    rustix::io::fcntl_setfd(&controller, rustix::io::FdFlags::CLOEXEC).unwrap();
    let name = ptsname(&controller, Vec::new()).unwrap();
    let terminal = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY,
        Mode::empty(),
    )
    .unwrap();
    (controller, terminal)
}

/// A xorshift32 generator: the same test input on every run, without a
/// dependency.
pub struct XorShift(u32);

impl XorShift {
    /// A generator from `seed` (made odd: zero would stay zero).
    pub fn new(seed: u32) -> Self {
        XorShift(seed | 1)
    }

    pub fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}

/// Deterministic bytes of every value, NULs included.
pub fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut r = XorShift::new(seed);
    (0..len).map(|_| (r.next_u32() >> 8) as u8).collect()
}
