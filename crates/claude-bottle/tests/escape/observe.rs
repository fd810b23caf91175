//! What the suite watches from outside the bottle: a listener on every
//! address of the host (TCP and UDP, one port), a capture of DNS on the
//! host's interfaces, and the host's own address list.

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Accepts on `[::]:port` (dual stack: every IPv4 and IPv6 address of the
/// host) and records what each connection or datagram carried.
pub struct HostListener {
    pub port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl HostListener {
    pub fn start() -> HostListener {
        let tcp = TcpListener::bind("[::]:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let udp = UdpSocket::bind(("::", port)).unwrap();
        tcp.set_nonblocking(true).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match tcp.accept() {
                        Ok((mut s, peer)) => {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                            let mut buf = [0u8; 4096];
                            let n = s.read(&mut buf).unwrap_or(0);
                            seen.lock().unwrap().push(format!(
                                "tcp from {peer}: {}",
                                String::from_utf8_lossy(&buf[..n])
                            ));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            });
        }
        {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, peer)) = udp.recv_from(&mut buf) {
                        seen.lock().unwrap().push(format!(
                            "udp from {peer}: {}",
                            String::from_utf8_lossy(&buf[..n])
                        ));
                    }
                }
            });
        }
        HostListener { port, seen, stop }
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for HostListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `tcpdump` of port 53 on every host interface, except between the two
/// addresses given (the agent talking to its own sidecar is expected).
pub struct DnsCapture {
    child: Child,
    file: tempfile::NamedTempFile,
}

impl DnsCapture {
    /// None when tcpdump is missing (the cases say so and skip).
    pub fn start(except_pair: &[String; 2]) -> Option<DnsCapture> {
        let file = tempfile::NamedTempFile::new().unwrap();
        let [a, b] = except_pair;
        let filter = format!("port 53 and not (host {a} and host {b})");
        let child = Command::new("tcpdump")
            .args(["-i", "any", "-n", "-U", "-s", "0", "-w"])
            .arg(file.path())
            .arg(&filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        let mut cap = DnsCapture { child, file };
        // tcpdump says "listening on" once the capture runs.
        let mut err = cap.child.stderr.take().unwrap();
        let mut buf = [0u8; 512];
        let mut said = String::new();
        while !said.contains("listening on") {
            match err.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => said.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        Some(cap)
    }

    /// The packets so far as text (`tcpdump -A`).
    pub fn text(&self) -> String {
        // -U flushes per packet; give the last ones a moment.
        std::thread::sleep(Duration::from_millis(300));
        let o = Command::new("tcpdump")
            .args(["-n", "-A", "-r"])
            .arg(self.file.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    }
}

impl Drop for DnsCapture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every address of the host but loopback and link-local (the agent tries
/// link-local itself, through its own interface).
pub fn host_addrs() -> Vec<String> {
    let o = Command::new("ip").args(["-o", "addr"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            while let Some(w) = it.next() {
                if w == "inet" || w == "inet6" {
                    return it.next().map(|a| a.split('/').next().unwrap().to_string());
                }
            }
            None
        })
        .filter(|a| a != "127.0.0.1" && a != "::1" && !a.starts_with("fe80"))
        .collect()
}

/// Run a throwaway container on the default bridge (the observers'
/// controls: what a container with a way out reaches).
pub fn from_bridge(script: &str) -> std::process::Output {
    Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "bridge",
            "--label",
            "io.claude-bottle.test-world=control",
            "claude-bottle-test/base:bookworm",
            "bash",
            "-c",
            script,
        ])
        .output()
        .unwrap()
}

/// A container's address on a network.
pub fn address(container: &str, network: &str) -> String {
    let o = Command::new("docker")
        .args([
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
            container,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}
