//! The bottle's interception CA and the leaf certificates it mints.
//!
//! A fresh CA is generated in memory when none is configured, so no key is
//! ever reused between bottles. Leaves share one key pair (generated with the
//! CA, never leaving memory) so minting a leaf is one signature; minted
//! leaves are cached, bounded by [`LEAF_CACHE_ENTRIES`].
//!
//! Each cached leaf comes with the one TLS server config that serves it, so
//! a client reconnecting to the same intercepted host can resume its TLS
//! session. The config's session state (its own ticket key and session-ID
//! cache) belongs to that host alone: a session made for one host is
//! unknown to every other host's config, and cannot be resumed there.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::config::CaSource;
use crate::error::Error;
use crate::limits::{LEAF_CACHE_ENTRIES, SESSION_IDS_PER_HOST};

pub struct Ca {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    leaf_key: KeyPair,
    leaf_signer: Arc<dyn rustls::sign::SigningKey>,
    provider: Arc<CryptoProvider>,
    cache: Mutex<HashMap<String, HostTls>>,
}

/// What one intercepted host is served with, minted and cached together.
#[derive(Clone)]
struct HostTls {
    leaf: Arc<CertifiedKey>,
    server: Arc<ServerConfig>,
}

#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    // The leaf is always the CONNECT host's, whatever SNI says: a different
    // SNI is refused per request (host-mismatch), with a readable answer.
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca(..)")
    }
}

fn ca_err(e: impl std::fmt::Display) -> Error {
    Error::Ca(e.to_string())
}

impl Ca {
    /// A new CA, valid from yesterday for two years, kept only in memory.
    pub fn generate() -> Result<Self, Error> {
        let key = KeyPair::generate().map_err(ca_err)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "claude-bottle egress CA");
        dn.push(DnType::OrganizationName, "claude-bottle");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(730);
        let cert = params.self_signed(&key).map_err(ca_err)?;
        let cert_pem = cert.pem();
        let cert_der = cert.der().clone();
        Self::assemble(cert_der, cert_pem, Issuer::new(params, key))
    }

    /// Loads a CA from PEM text.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, Error> {
        let key = KeyPair::from_pem(key_pem).map_err(ca_err)?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(ca_err)?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(ca_err)?;
        Self::assemble(cert_der, cert_pem.to_string(), issuer)
    }

    pub fn load(source: &CaSource) -> Result<Self, Error> {
        match source {
            CaSource::Files { cert, key } => {
                let c = std::fs::read_to_string(cert).map_err(|source| Error::Read {
                    path: cert.clone(),
                    source,
                })?;
                let k = std::fs::read_to_string(key).map_err(|source| Error::Read {
                    path: key.clone(),
                    source,
                })?;
                Self::from_pem(&c, &k)
            }
            CaSource::Pem { cert, key } => Self::from_pem(cert, key.expose()),
        }
    }

    fn assemble(
        cert_der: CertificateDer<'static>,
        cert_pem: String,
        issuer: Issuer<'static, KeyPair>,
    ) -> Result<Self, Error> {
        let leaf_key = KeyPair::generate().map_err(ca_err)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let leaf_signer =
            rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).map_err(ca_err)?;
        Ok(Self {
            cert_der,
            cert_pem,
            issuer,
            leaf_key,
            leaf_signer,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate (never the key), as served at `/ca.pem`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The crypto provider of the interception side (and of the proxy's
    /// upstream TLS).
    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    /// A leaf for `host` (a DNS name or an IP literal), from the cache or minted.
    pub fn leaf(&self, host: &str) -> Result<Arc<CertifiedKey>, Error> {
        Ok(self.host(host)?.leaf)
    }

    /// The TLS server config for intercepting `host`: built once with its
    /// leaf and kept with it, so its sessions can be resumed by later
    /// CONNECTs to the same host (and by no other host).
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, Error> {
        Ok(self.host(host)?.server)
    }

    fn host(&self, host: &str) -> Result<HostTls, Error> {
        if let Ok(cache) = self.cache.lock()
            && let Some(h) = cache.get(host)
        {
            return Ok(h.clone());
        }
        let leaf = self.mint(host)?;
        let minted = HostTls {
            server: self.build_server_config(leaf.clone())?,
            leaf,
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= LEAF_CACHE_ENTRIES && !cache.contains_key(host) {
                // Simple bound: start over. Minting is cheap; memory is not
                // unbounded. Sessions of dropped hosts are not resumed.
                cache.clear();
            }
            // A concurrent CONNECT may have minted the same host first: keep
            // its entry, so both tunnels share one session store.
            return Ok(cache.entry(host.to_string()).or_insert(minted).clone());
        }
        Ok(minted)
    }

    fn build_server_config(&self, leaf: Arc<CertifiedKey>) -> Result<Arc<ServerConfig>, Error> {
        let mut cfg = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(ca_err)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(FixedCert(leaf)));
        // HTTP/1.1 only inside: the proxy's checks are per HTTP/1.1 request.
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Session state of this host only. TLS 1.3 (and TLS 1.2 clients that
        // ask) get stateless tickets sealed with this config's own key,
        // generated here and rotated by rustls: no memory per session, and
        // a ticket from another host's config does not decrypt. TLS 1.2
        // session IDs go to a small per-host cache.
        cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(ca_err)?;
        cfg.session_storage = ServerSessionMemoryCache::new(SESSION_IDS_PER_HOST);
        Ok(Arc::new(cfg))
    }

    fn mint(&self, host: &str) -> Result<Arc<CertifiedKey>, Error> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into().map_err(ca_err)?),
        }];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(90);
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(ca_err)?;
        Ok(Arc::new(CertifiedKey::new(
            vec![cert.der().clone(), self.cert_der.clone()],
            self.leaf_signer.clone(),
        )))
    }

    pub fn cached_leaves(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }
}

/// Extra roots from a PEM file (`upstream_ca`).
pub fn load_roots_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(e.to_string()))?;
    if certs.is_empty() {
        return Err(Error::Tls("upstream_ca: no certificate in file".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_are_cached_and_bounded() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ca = Ca::generate().unwrap();
        let a = ca.leaf("a.test").unwrap();
        let b = ca.leaf("a.test").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.cert.len(), 2);
        for i in 0..LEAF_CACHE_ENTRIES + 5 {
            ca.leaf(&format!("h{i}.test")).unwrap();
        }
        assert!(ca.cached_leaves() <= LEAF_CACHE_ENTRIES);
        ca.leaf("127.0.0.1").unwrap();
    }

    #[test]
    fn server_configs_are_cached_per_host_with_their_own_session_state() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ca = Ca::generate().unwrap();
        let a = ca.server_config("a.test").unwrap();
        assert!(Arc::ptr_eq(&a, &ca.server_config("a.test").unwrap()));
        let b = ca.server_config("b.test").unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a.session_storage, &b.session_storage));
        assert!(!Arc::ptr_eq(&a.ticketer, &b.ticketer));
        assert!(a.ticketer.enabled());
        assert_eq!(a.alpn_protocols, vec![b"http/1.1".to_vec()]);
        // Leaf and config are one cache entry.
        assert_eq!(ca.cached_leaves(), 2);
        for i in 0..LEAF_CACHE_ENTRIES + 5 {
            ca.server_config(&format!("h{i}.test")).unwrap();
        }
        assert!(ca.cached_leaves() <= LEAF_CACHE_ENTRIES);
    }

    #[test]
    fn a_loaded_ca_signs_leaves_that_chain_to_it() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ca = Ca::generate().unwrap();
        // Round-trip through PEM like a configured `ca: {cert, key}`.
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let loaded = Ca::from_pem(&cert.pem(), &key.serialize_pem()).unwrap();
        assert!(loaded.cert_pem().contains("BEGIN CERTIFICATE"));
        let leaf = loaded.leaf("x.test").unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(loaded.cert_der().clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        let name = rustls_pki_types::ServerName::try_from("x.test").unwrap();
        verifier
            .verify_server_cert(
                &leaf.cert[0],
                &[],
                &name,
                &[],
                rustls_pki_types::UnixTime::now(),
            )
            .unwrap();
        assert!(Ca::from_pem("nope", "nope").is_err());
        drop(ca);
    }
}
