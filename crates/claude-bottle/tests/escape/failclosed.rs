//! Row 9: kill the sidecar while the agent runs; the agent must then have
//! no egress at all (no proxy, no DNS, no gate, no direct route).

use std::process::Command;
use std::time::{Duration, Instant};

use super::attacker::{Ctx, judge, prompt, results, spawn_up};
use super::observe::{self, DnsCapture};
use super::report::Report;
use crate::bottle::leftovers;

/// The cases `failclosed()` in attacks.py reports.
const EXPECTED: [&str; 7] = [
    "c9-sidecar-gone",
    "r9-curl-allowed",
    "r9-proxy-by-address",
    "r9-world-direct",
    "r9-host-addresses",
    "r9-dns",
    "r9-git-gate",
];

pub fn run(report: &mut Report, ctx: &Ctx) {
    ctx.publish(&[]);
    let h = ctx.home("esc-failclosed");
    let cmd = ctx.cli(
        &h,
        &[
            "start",
            &h.agent,
            "--yes",
            "--prompt",
            &prompt("failclosed"),
        ],
    );
    let running = match spawn_up(cmd) {
        Ok(r) => r,
        Err(e) => {
            report.fail("r9-bottle", 9, &e);
            return;
        }
    };
    let sidecar = format!("claude-bottle-{}-sidecar", running.slug);
    // With the sidecar gone, a resolver that fell back to the host's own
    // (or anything else) would send the queries out: the capture sees
    // port 53 everywhere but between the agent and its sidecar.
    let internal = format!("claude-bottle-{}-internal", running.slug);
    let pair = [
        observe::address(&format!("claude-bottle-{}", running.slug), &internal),
        observe::address(&sidecar, &internal),
    ];
    let capture = DnsCapture::start(&pair);
    if capture.is_none() {
        report.skip(
            "r9-dns-capture",
            9,
            "tcpdump is missing: r9-dns judged by the world's resolver only",
        );
    }
    // The attacker says it is armed (a request through the proxy), then
    // the sidecar is killed under it.
    let armed = {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if ctx
                .world
                .requests()
                .iter()
                .any(|r| r["path"] == "/esc-armed")
            {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let killed = Command::new("docker")
        .args(["kill", &sidecar])
        .output()
        .unwrap();
    report.check(
        "c9-sidecar-killed",
        9,
        armed && killed.status.success(),
        &format!(
            "the attacker armed and its sidecar killed: {}",
            String::from_utf8_lossy(&killed.stderr)
        ),
    );
    let (stdout, _ok, stderr) = running.finish(Duration::from_secs(300));
    let results = results(&stdout);
    // Every attempt, by name: one that went missing must not pass unseen.
    let missing: Vec<&str> = EXPECTED
        .iter()
        .filter(|c| !results.iter().any(|r| r["case"] == **c))
        .copied()
        .collect();
    if !missing.is_empty() {
        report.fail(
            "r9-results",
            9,
            &format!("the attacker did not report {missing:?} after the kill:\n{stdout}\n{stderr}"),
        );
    }
    judge(report, ctx, capture.as_ref(), &results);
    report.check(
        "r9-teardown-after-sidecar-death",
        11,
        leftovers(&h.run).is_empty(),
        &format!(
            "nothing left after the bottle whose sidecar died: {:?}",
            leftovers(&h.run)
        ),
    );
}
