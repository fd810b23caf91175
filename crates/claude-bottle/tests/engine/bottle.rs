//! A test's own bottle set-up: a temporary HOME holding bottle `probe`
//! (which allows `allowed.test`) and an agent bound to it, the real CLI
//! run against that HOME with the test's run label, what the run left on
//! the engine, and a sweep of it when a test fails before cleaning up.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The test agent image (Debian packages plus the stand-in `claude`).
pub const AGENT_BASE: &str = "claude-bottle-test/agent-base:bookworm";
const EGRESS: &str = "egress:\n  allow:\n    - host: allowed.test\n";

pub struct Home {
    pub dir: tempfile::TempDir,
    /// `<tag>-<pid>`: the agent's name, and so the bottle's slug.
    pub agent: String,
    /// The run label every object of this test carries.
    pub run: String,
}

impl Home {
    pub fn new(tag: &str) -> Home {
        Home::with_env(tag, "")
    }

    /// `front` (YAML lines, e.g. an `env:` block) goes into the bottle
    /// before its egress rules.
    pub fn with_env(tag: &str, front: &str) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let agent = format!("{tag}-{}", std::process::id());
        let h = dir.path().join(".claude-bottle");
        std::fs::create_dir_all(h.join("bottles")).unwrap();
        std::fs::create_dir_all(h.join("agents")).unwrap();
        std::fs::write(
            h.join("bottles/probe.md"),
            format!("---\n{front}{EGRESS}---\n"),
        )
        .unwrap();
        std::fs::write(
            h.join(format!("agents/{agent}.md")),
            "---\nbottle: probe\n---\nYou probe.\n",
        )
        .unwrap();
        let run = format!("run-{agent}");
        Home { dir, agent, run }
    }

    /// `$CLAUDE_BOTTLE_HOME` of this test.
    pub fn bottle_home(&self) -> PathBuf {
        self.dir.path().join(".claude-bottle")
    }

    /// The CLI with this HOME, the test images and the run label; stdin
    /// closed, in the HOME folder.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_claude-bottle"));
        c.args(args)
            .env("HOME", self.dir.path())
            .env_remove("CLAUDE_BOTTLE_HOME")
            .env("CLAUDE_BOTTLE_BASE_IMAGE", AGENT_BASE)
            .env("CLAUDE_BOTTLE_TEST_LABEL", &self.run)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }
}

/// `start AGENT --yes --prompt SCRIPT` run to its end, its exit code
/// checked against `code`: (stdout, stderr).
pub fn start_prompt(h: &Home, script: &str, code: i32) -> (String, String) {
    let out = h
        .cli(&["start", &h.agent, "--yes", "--prompt", script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(code),
        "the agent's exit code:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

/// Removes what a failed test left on the engine (after its assertions
/// said so).
impl Drop for Home {
    fn drop(&mut self) {
        let filter = format!("label=io.claude-bottle.test={}", self.run);
        for (list, rm) in [
            (&["ps", "-aq"][..], ["rm", "-f"]),
            (&["network", "ls", "-q"][..], ["network", "rm"]),
        ] {
            let Ok(o) = Command::new("docker")
                .args(list)
                .args(["--filter", &filter])
                .output()
            else {
                return;
            };
            let ids = String::from_utf8_lossy(&o.stdout).to_string();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = Command::new("docker").args(rm).args(&ids).output();
            }
        }
    }
}

/// Containers and networks of run `run` still on the engine.
/// The slug of the bottle the CLI said is up (`bottle `SLUG` is up` on
/// stderr).
pub fn slug_of(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.contains("` is up"))
        .unwrap_or_else(|| panic!("no bottle came up:\n{stderr}"));
    line.split('`').nth(1).unwrap().to_string()
}

/// The processes of the run's (one) agent container, as `docker top`
/// lists them from the host: what still runs in a kept bottle.
pub fn agent_processes(run: &str) -> String {
    let o = Command::new("docker")
        .args(["ps", "-q", "--filter"])
        .arg(format!("label=io.claude-bottle.test={run}"))
        .args(["--filter", "label=io.claude-bottle.role=agent"])
        .output()
        .unwrap();
    let ids = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(ids.lines().count(), 1, "one agent container: {ids:?}");
    let top = Command::new("docker").args(["top", &ids]).output().unwrap();
    assert!(
        top.status.success(),
        "{}",
        String::from_utf8_lossy(&top.stderr)
    );
    String::from_utf8_lossy(&top.stdout).into_owned()
}

pub fn leftovers(run: &str) -> Vec<String> {
    let filter = format!("label=io.claude-bottle.test={run}");
    let mut out = Vec::new();
    for (args, format) in [
        (["ps", "-a"], "{{.Names}}"),
        (["network", "ls"], "{{.Name}}"),
    ] {
        let o = Command::new("docker")
            .args(args)
            .args(["--filter", &filter, "--format", format])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out.extend(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string),
        );
    }
    out
}
