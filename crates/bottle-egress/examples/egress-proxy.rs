//! The standalone proxy without the main binary, for benchmarks:
//! `egress-proxy CONFIG [LISTEN]`. Unset, `EGRESS_THREADS` gives
//! `run_standalone` (one current-thread runtime per CPU, `serve_sharded`);
//! `EGRESS_THREADS=N` instead serves on one multi-threaded runtime of N
//! workers (1 = current-thread), the way the proxy ran before.

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(config) = args.next().map(PathBuf::from) else {
        eprintln!("usage: egress-proxy CONFIG [LISTEN]");
        std::process::exit(2);
    };
    let listen = args.next().and_then(|a| a.parse().ok());
    let threads: Option<usize> = std::env::var("EGRESS_THREADS")
        .ok()
        .and_then(|v| v.parse().ok());
    let result = match threads {
        None => bottle_egress::run_standalone(&config, listen),
        Some(n) => run_with(&config, listen, n),
    };
    if let Err(e) = result {
        eprintln!("egress-proxy: {e}");
        std::process::exit(1);
    }
}

fn run_with(
    config: &std::path::Path,
    listen: Option<std::net::SocketAddr>,
    threads: usize,
) -> Result<(), bottle_egress::Error> {
    let mut cfg = bottle_egress::ProxyConfig::load(config)?;
    if let Some(l) = listen {
        cfg.listen = l;
    }
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    rt.block_on(async move {
        let proxy = bottle_egress::Proxy::new(cfg.clone())?;
        let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
        eprintln!("listening on {}", listener.local_addr()?);
        bottle_egress::serve(
            proxy,
            listener,
            bottle_egress::standalone::shutdown_signal(),
        )
        .await
    })
}
