//! `docker.md`: any agent image works as long as it has a user with uid
//! 1000, a home directory and a shell; the CLI brings what it needs. The
//! image here has exactly that (dash, its libc, `/etc/passwd`, a home) plus
//! the stand-in `claude`, which is a shell script: no `sleep` to keep the
//! container up, no `head`, `tar`, `cat`, `mv` or `grep` for provisioning,
//! no `/workspace` (the engine makes it, root's), and its system roots
//! where Fedora keeps them.

use std::io::Write;
use std::process::{Command, Stdio};

use super::bottle::{AGENT_BASE, Home, leftovers, start_prompt};

/// The image, removed when the test ends.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

fn build_shell_only(tag: &str) -> Image {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000::/home/agent:/bin/sh\n",
    )
    .unwrap();
    std::fs::create_dir(ctx.path().join("home")).unwrap();
    std::fs::write(ctx.path().join("home/.profile"), "").unwrap();
    // System roots where Fedora keeps them (two stand-in certificates),
    // in a store root without capabilities cannot change.
    let certs = ctx.path().join("pki/tls/certs");
    std::fs::create_dir_all(&certs).unwrap();
    let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    std::fs::write(certs.join("ca-bundle.crt"), cert.repeat(2)).unwrap();
    let mode = |p: &std::path::Path, m: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    mode(&certs.join("ca-bundle.crt"), 0o444);
    mode(&certs, 0o555);
    // Real paths, not the links of merged /usr, so COPY gets files.
    let dockerfile = format!(
        "FROM {AGENT_BASE} AS full\n\
         FROM scratch\n\
         COPY --from=full /usr/bin/dash /bin/sh\n\
         COPY --from=full /usr/lib/x86_64-linux-gnu/libc.so.6 /lib/x86_64-linux-gnu/libc.so.6\n\
         COPY --from=full /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 /lib64/ld-linux-x86-64.so.2\n\
         COPY --from=full /usr/local/bin/claude /usr/local/bin/claude\n\
         COPY passwd /etc/passwd\n\
         COPY --chown=1000:1000 home/ /home/agent/\n\
         COPY pki/ /etc/pki/\n\
         LABEL io.claude-bottle.test=shell-only\n"
    );
    let mut child = Command::new("docker")
        .args(["build", "-q", "-t", tag, "-f", "-"])
        .arg(ctx.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dockerfile.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    // The context's read-only folder, writable again for its removal.
    let mode = |p: &std::path::Path, m: u32| {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    };
    mode(&ctx.path().join("pki/tls/certs"), 0o755);
    assert!(
        out.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Image(tag.to_string())
}

#[test]
fn an_image_with_only_a_shell_and_a_user_runs_a_bottle() {
    if !super::images_ready("an_image_with_only_a_shell_and_a_user_runs_a_bottle") {
        return;
    }
    let _images = super::image_lock();
    let tag = format!("claude-bottle-test/shell-only:{}", std::process::id());
    let image = build_shell_only(&tag);
    let h = Home::with_env("shell-only", &format!("image: {}\n", image.0));
    // Shell built-ins only: the image has nothing else.
    let script = "for c in sleep head tar cat mv grep cut; do command -v $c >/dev/null && echo has $c; done; \
                  read -r l < /run/claude-bottle/prompt.md; echo \"prompt: $l\"; \
                  [ -f /run/claude-bottle/env ] && echo env file; \
                  n=0; while IFS= read -r l; do case \"$l\" in *BEGIN*) n=$((n+1));; esac; done < /run/claude-bottle/ca-bundle.pem; echo \"bundle certs $n\"; \
                  read -r c < /home/agent/.claude.json; case \"$c\" in *'\"hasCompletedOnboarding\":true'*) echo claude config;; esac; \
                  [ -x /opt/claude-bottle/helper ] && echo helper brought; \
                  ( : > /opt/claude-bottle/helper ) 2>/dev/null && echo helper WRITABLE || echo helper not writable; \
                  ( : > /opt/claude-bottle/planted ) 2>/dev/null && echo folder WRITABLE || echo folder not writable; \
                  ( : > /workspace/x ) 2>/dev/null && echo workspace writable || echo workspace NOT writable; \
                  exit 4";
    let (stdout, stderr) = start_prompt(&h, script, 4);
    assert_eq!(
        stdout,
        "prompt: You probe.\nenv file\nbundle certs 3\nclaude config\nhelper brought\n\
         helper not writable\nfolder not writable\nworkspace writable\n",
        "{stderr}"
    );
    // No system trust store in this image: said, not skipped silently.
    assert!(
        stderr.contains("warning: the agent image has no writable system trust store"),
        "{stderr}"
    );
    assert_eq!(leftovers(&h.run), Vec::<String>::new());
}
