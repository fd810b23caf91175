//! `claude-bottle proxy --config FILE [--listen ADDR]`: the proxy on its own
//! threads, stopping cleanly on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::Path;

use tokio::net::TcpListener;

use crate::config::ProxyConfig;
use crate::error::Error;
use crate::limits::proxy_threads;
use crate::server::{Proxy, serve_sharded};

/// Loads FILE, binds, prints `listening on ADDR` on stderr, and serves until
/// SIGTERM/SIGINT.
pub fn run_standalone(config_path: &Path, listen: Option<SocketAddr>) -> Result<(), Error> {
    run_until(config_path, listen, shutdown_signal(), |addr| {
        eprintln!("listening on {addr}");
    })
}

/// [`run_standalone`] with the stop condition and the ready hook given.
pub fn run_until<F>(
    config_path: &Path,
    listen: Option<SocketAddr>,
    shutdown: F,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), Error>
where
    F: std::future::Future<Output = ()> + Send,
{
    let mut cfg = ProxyConfig::load(config_path)?;
    if let Some(l) = listen {
        cfg.listen = l;
    }
    // Signals, the audit log's flushes: the proxy's own threads do the
    // rest (`serve_sharded`).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| Error::Listen {
                addr: cfg.listen.to_string(),
                source,
            })?;
        // The bound address (port 0 resolved): a concrete listen address on
        // its port is one of the proxy's own (`ProxyConfig::is_own`).
        cfg.listen = listener.local_addr()?;
        let proxy = Proxy::new(cfg.clone())?;
        let audit = proxy.audit();
        ready(cfg.listen);
        let served = serve_sharded(proxy, listener, proxy_threads(), shutdown).await;
        audit.flush();
        served
    })
}

/// Completes on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut t), Ok(mut i)) => {
                tokio::select! {
                    _ = t.recv() => {}
                    _ = i.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
