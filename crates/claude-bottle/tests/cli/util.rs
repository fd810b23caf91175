//! A temporary HOME and project folder, and the binary run inside them.

use std::path::PathBuf;
use std::process::Output;

use assert_cmd::Command;
use tempfile::TempDir;

pub struct TestEnv {
    _dir: TempDir,
    pub root: PathBuf,
    pub home: PathBuf,
    pub project: PathBuf,
}

/// Values the manifests below reference; none may ever be printed.
pub const OAUTH: &str = "sk-ant-oat01-NEVERPRINTEDOAUTHVALUE";
pub const GH: &str = "ghp_NEVERPRINTEDGITHUB00000000000000000";
pub const NPM: &str = "npm_NEVERPRINTEDNPMVALUE";
pub const LITERAL: &str = "NEVERPRINTED-LITERAL";

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let home = root.join("home");
        let project = root.join("project");
        std::fs::create_dir_all(home.join(".claude-bottle/bottles")).unwrap();
        std::fs::create_dir_all(home.join(".claude-bottle/agents")).unwrap();
        std::fs::create_dir_all(&project).unwrap();
        TestEnv {
            _dir: dir,
            root,
            home,
            project,
        }
    }

    pub fn write(&self, rel: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn bottle(&self, name: &str, text: &str) -> PathBuf {
        self.write(&format!("home/.claude-bottle/bottles/{name}.md"), text)
    }

    pub fn agent(&self, name: &str, text: &str) -> PathBuf {
        self.write(&format!("home/.claude-bottle/agents/{name}.md"), text)
    }

    pub fn project_agent(&self, name: &str, text: &str) -> PathBuf {
        self.write(&format!("project/.claude-bottle/agents/{name}.md"), text)
    }

    /// The binary in the project folder, with a clean environment. The engine
    /// is unreachable unless a test asks for it with [`TestEnv::with_engine`].
    pub fn cmd(&self, args: &[&str]) -> Command {
        Command::from_std(self.std_cmd(args))
    }

    /// [`TestEnv::cmd`] as a std command, for a test that sets up its own
    /// stdio (a pseudo-terminal).
    pub fn std_cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("claude-bottle"));
        self.clean_env(&mut c);
        c.args(args);
        c
    }

    fn clean_env(&self, c: &mut std::process::Command) {
        c.env_clear()
            .env("HOME", &self.home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "DOCKER_HOST",
                format!("unix://{}/no-engine.sock", self.root.display()),
            )
            .env("NO_COLOR", "1")
            .env("CLAUDE_BOTTLE_OAUTH_TOKEN", OAUTH)
            .env("GITHUB_TOKEN", GH)
            .env("NPM_TOKEN", NPM)
            .current_dir(&self.project);
    }

    /// The binary under a CPU-time limit (`ulimit -t`): a bound that holds
    /// however loaded the machine is, unlike wall-clock time. Over it, the
    /// kernel kills the process and the exit code says so.
    pub fn cmd_cpu_limited(&self, seconds: u32, args: &[&str]) -> Command {
        let mut c = std::process::Command::new("sh");
        self.clean_env(&mut c);
        c.arg("-c")
            .arg(format!("ulimit -t {seconds} && exec \"$0\" \"$@\""))
            .arg(assert_cmd::cargo::cargo_bin("claude-bottle"))
            .args(args);
        Command::from_std(c)
    }

    pub fn with_engine(&self, args: &[&str]) -> Command {
        let mut c = self.cmd(args);
        c.env_remove("DOCKER_HOST");
        if let Some(h) = std::env::var_os("DOCKER_HOST") {
            c.env("DOCKER_HOST", h);
        }
        c
    }

    /// Exit code, stdout and stderr as one text, with temp paths replaced.
    pub fn run(&self, mut c: Command) -> (i32, String, String) {
        let out: Output = c.output().unwrap();
        let clean = |b: &[u8]| {
            String::from_utf8_lossy(b).replace(&self.root.display().to_string(), "[TMP]")
        };
        let (so, se) = (clean(&out.stdout), clean(&out.stderr));
        for secret in [OAUTH, GH, NPM, LITERAL] {
            assert!(
                !so.contains(secret) && !se.contains(secret),
                "a secret was printed:\n{so}\n{se}"
            );
        }
        (out.status.code().unwrap_or(-1), so, se)
    }
}

/// Engine tests call this first: true when Docker answers. Without an engine
/// they skip with a visible message, or fail under
/// `CLAUDE_BOTTLE_REQUIRE_DOCKER=1`.
pub fn docker_available(test: &str) -> bool {
    let ok = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CLAUDE_BOTTLE_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!(
                "{test}: the Docker engine is required (CLAUDE_BOTTLE_REQUIRE_DOCKER=1) but not reachable"
            );
        }
        skipped!(
            "SKIPPED {test}: no Docker engine (set CLAUDE_BOTTLE_REQUIRE_DOCKER=1 to fail instead)"
        );
    }
    ok
}

pub const BASE: &str =
    "---\nenv:\n  EDITOR: vim\negress:\n  allow:\n    - host: registry.npmjs.org\n---\n";

pub const DEV: &str = r#"---
extends: base
env:
  SECRET_LITERAL: NEVERPRINTED-LITERAL
  NPM_TOKEN: ${NPM_TOKEN}
  DB_PASSWORD: "?Database password"
tokens:
  - kind: anthropic
    token_ref: CLAUDE_BOTTLE_OAUTH_TOKEN
  - kind: http
    host: api.github.com
    scheme: Bearer
    token_ref: GITHUB_TOKEN
egress:
  allow:
    - host: api.github.com
      methods: [GET, HEAD]
      paths: ["/repos/acme/", "re:^/user$"]
git:
  user: {name: Bot, email: bot@example.com}
  repos:
    web:
      url: https://github.com/acme/web.git
      token_ref: GITHUB_TOKEN
      push: ["agent/*"]
---
The dev bottle.
"#;

pub const REVIEWER: &str = "---\nbottle: dev\nname: reviewer\ndescription: Reviews pull requests\ntools: Read, Grep\nmodel: sonnet\n---\nYou are a careful reviewer.\n";

impl TestEnv {
    /// HOME with `base`, `dev` and the `reviewer` agent.
    pub fn standard() -> TestEnv {
        let t = TestEnv::new();
        t.bottle("base", BASE);
        t.bottle("dev", DEV);
        t.agent("reviewer", REVIEWER);
        t
    }
}

/// Removes a container when dropped.
pub struct ContainerGuard(String);

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}

/// A created (never started) container: an image imported from an empty
/// tarball is enough, so no registry or base image is needed.
pub fn created_container(name: &str) -> ContainerGuard {
    let image = "claude-bottle-test/empty:1";
    let have = std::process::Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .unwrap();
    if !have.status.success() {
        let st = std::process::Command::new("sh")
            .args(["-c", &format!("tar cf - -T /dev/null | docker import -c 'LABEL io.claude-bottle.test=cli' - {image}")])
            .status()
            .unwrap();
        assert!(st.success(), "cannot import an empty image");
    }
    let out = std::process::Command::new("docker")
        .args([
            "create",
            "--label",
            "io.claude-bottle.test=cli",
            "--name",
            name,
            image,
            "/none",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ContainerGuard(name.to_string())
}
