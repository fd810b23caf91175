//! Entry points for the fuzz targets (`fuzz/fuzz_targets/proxy_*.rs`) and
//! the tests that replay their corpus. Not part of the supported API.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{AuditTarget, MapSecrets, ProxyConfig, parse_text};
use crate::server::{Options, Proxy};
use crate::upstream::{BoxFuture, Net};

/// Resolves nothing and connects nowhere: fuzz input can never cause traffic.
struct NoNet;

impl Net for NoNet {
    fn resolve<'a>(&'a self, _: &'a str, _: u16) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async { Err(io::Error::other("no network while fuzzing")) })
    }
    fn connect(&self, _: SocketAddr) -> BoxFuture<'static, io::Result<tokio::net::TcpStream>> {
        Box::pin(async { Err(io::Error::other("no network while fuzzing")) })
    }
}

struct Harness {
    rt: tokio::runtime::Runtime,
    proxy: Proxy,
}

fn harness() -> Option<&'static Harness> {
    static H: OnceLock<Option<Harness>> = OnceLock::new();
    H.get_or_init(|| {
        let raw = parse_text(
            "dlp: block\nallow: [{host: '*'}, {host: api.test, methods: [GET], paths: ['/v1/']}]\n\
             known_secret_env: [S]\ntokens: [{kind: anthropic, token_ref: S}]",
        )
        .ok()?;
        let secrets = MapSecrets(
            [(
                "S".to_string(),
                bottle_secret::Secret::new("sk-ant-oat01-fuzzsecret"),
            )]
            .into(),
        );
        let mut cfg = ProxyConfig::from_raw(raw, Path::new("."), &secrets).ok()?;
        cfg.audit = AuditTarget::Memory;
        cfg.limits.header_read = Duration::from_millis(50);
        cfg.limits.connect = Duration::from_millis(50);
        let mut b = tokio::runtime::Builder::new_current_thread();
        b.enable_all();
        #[cfg(feature = "fuzzing")]
        b.start_paused(true);
        let rt = b.build().ok()?;
        let opts = Options {
            engine: None,
            net: Some(Arc::new(NoNet)),
        };
        let proxy = rt.block_on(async { Proxy::with_options(cfg, opts) }).ok()?;
        Some(Harness { rt, proxy })
    })
    .as_ref()
}

/// Feeds `data` to the proxy as one client connection's bytes and reads the
/// answer. Panics only if the proxy does.
pub fn request_head(data: &[u8]) -> Vec<u8> {
    let Some(h) = harness() else {
        return Vec::new();
    };
    let data = data.to_vec();
    h.rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let proxy = h.proxy.clone();
        let task = tokio::spawn(async move { proxy.serve_connection(server).await });
        // No half-close: the proxy would drop the connection on read EOF.
        // Its short header timeout ends the connection instead.
        let _ = client.write_all(&data).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), client.read_to_end(&mut out)).await;
        drop(client);
        let _ = task.await;
        out
    })
}

/// The pure parsers on arbitrary text: host classification, path
/// normalisation, reverse routing.
pub fn parsers(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let _ = crate::addr::classify_host(&s);
    let _ = crate::route::normalize_path(&s);
    let _ = crate::reverse::route(&s);
    let _ = crate::route::HostPattern::parse(&s);
}
