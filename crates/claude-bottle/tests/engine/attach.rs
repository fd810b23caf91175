//! Interactive sessions on the real engine, driven through a pseudo-terminal
//! the way a person would: `start` without `--prompt`, `attach` to a kept
//! bottle (window size forwarded at start and on SIGWINCH), and the `?` env
//! questions answered hidden.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::termios::{LocalModes, Winsize, tcgetattr, tcsetwinsize};

use super::bottle::{Home, agent_processes, leftovers};

/// Long enough for a launch that rebuilds the sidecar image on a busy
/// two-core machine.
const LAUNCH: Duration = Duration::from_secs(300);
const SHORT: Duration = Duration::from_secs(30);

/// The CLI for a session under a pseudo-terminal: a terminal that draws
/// nothing fancy, so the tests can read what it prints.
fn cli(h: &Home, args: &[&str]) -> Command {
    let mut c = h.cli(args);
    c.env("TERM", "dumb");
    c
}

/// A pseudo-terminal pair (controller, terminal) of `rows` x `cols`.
fn pty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    let (controller, terminal) = bottle_testkit::pty();
    tcsetwinsize(&terminal, winsize(rows, cols)).unwrap();
    (controller, terminal)
}

fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// The CLI with stdin, stdout and stderr on a pseudo-terminal; what it
/// writes is collected by a thread.
struct Tty {
    child: Child,
    controller: std::fs::File,
    seen: Arc<Mutex<Vec<u8>>>,
    /// Where the next `expect` starts looking.
    from: usize,
    /// The terminal side, kept open to read its settings (then the output
    /// reader never sees the end, which `finish` does not need).
    terminal: Option<OwnedFd>,
}

impl Tty {
    fn spawn(cmd: Command) -> Tty {
        Tty::spawn_with(cmd, false)
    }

    fn spawn_with(mut cmd: Command, keep_terminal: bool) -> Tty {
        let (controller, terminal) = pty(33, 111);
        let kept = keep_terminal.then(|| terminal.try_clone().unwrap());
        cmd.stdin(Stdio::from(terminal.try_clone().unwrap()))
            .stdout(Stdio::from(terminal.try_clone().unwrap()))
            .stderr(Stdio::from(terminal));
        let child = cmd.spawn().unwrap();
        // The command holds the terminal's fds: without dropping it, the
        // controller never sees the end of output.
        drop(cmd);
        let controller = std::fs::File::from(controller);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = controller.try_clone().unwrap();
        let sink = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once every holder of the terminal has closed it.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Tty {
            child,
            controller,
            seen,
            from: 0,
            terminal: kept,
        }
    }

    /// The terminal's local modes now (needs `spawn_with(_, true)`).
    fn local_modes(&self) -> LocalModes {
        tcgetattr(self.terminal.as_ref().unwrap())
            .unwrap()
            .local_modes
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Wait until `needle` appears after what earlier calls matched.
    fn expect(&mut self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let found = {
                let seen = self.seen.lock().unwrap();
                let tail = String::from_utf8_lossy(&seen[self.from.min(seen.len())..]).into_owned();
                tail.find(needle).map(|i| self.from + i + needle.len())
            };
            if let Some(end) = found {
                self.from = end;
                return;
            }
            if Instant::now() > deadline || matches!(self.child.try_wait(), Ok(Some(_))) {
                // One last look: the output may have come with the exit.
                std::thread::sleep(Duration::from_millis(200));
                let text = self.text();
                if text[self.from.min(text.len())..].contains(needle) {
                    self.from = text.len();
                    return;
                }
                let _ = self.child.kill();
                panic!("`{needle}` did not appear; the terminal showed:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn type_keys(&mut self, keys: &str) {
        self.controller.write_all(keys.as_bytes()).unwrap();
        self.controller.flush().unwrap();
    }

    fn resize(&self, rows: u16, cols: u16) {
        tcsetwinsize(&self.controller, winsize(rows, cols)).unwrap();
    }

    /// Exit code and everything the terminal showed.
    fn finish(mut self, within: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the CLI did not exit; the terminal showed:\n{}",
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        std::thread::sleep(Duration::from_millis(200));
        (status.code(), self.text())
    }
}

#[test]
fn interactive_start_runs_a_session_and_tears_down() {
    if !super::images_ready("interactive_start_runs_a_session_and_tears_down") {
        return;
    }
    let _images = super::image_lock();
    let h = Home::new("tty-start");
    let run = h.run.clone();
    let mut tty = Tty::spawn(cli(&h, &["start", &h.agent, "--yes"]));
    // The stand-in's bash prompt (`TERM=dumb` hides the progress lines).
    tty.expect("/workspace$ ", LAUNCH);
    // The agent leaves hidden text on as it exits.
    tty.type_keys("printf '\\033[8m'; echo hi-$((6*7)) $(stty size); exit 5\r");
    tty.expect("hi-42 33 111", SHORT);
    let (code, text) = tty.finish(LAUNCH);
    assert_eq!(code, Some(5), "the agent's exit code:\n{text}");
    assert!(text.contains("the agent exited with code 5"), "{text}");
    // The session ended with the terminal reset, before the CLI's own
    // lines, so they do not print hidden.
    let hidden = text.find("\x1b[8m").expect("the agent's sequence");
    let reset = text.rfind("\x18\x1b\\\x1b[0m").expect("the reset");
    let said = text.find("the agent exited with code 5").unwrap_or(0);
    assert!(hidden < reset && reset < said, "{text:?}");
    assert_eq!(leftovers(&run), Vec::<String>::new());
}

/// SIGTERM while the terminal is raw: the terminal is put back, and the
/// bottle torn down.
#[test]
fn sigterm_in_a_session_restores_the_terminal() {
    if !super::images_ready("sigterm_in_a_session_restores_the_terminal") {
        return;
    }
    let _images = super::image_lock();
    let h = Home::new("tty-term");
    let run = h.run.clone();
    let mut tty = Tty::spawn_with(cli(&h, &["start", &h.agent, "--yes"]), true);
    let cooked = tty.local_modes();
    assert!(cooked.contains(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG));
    tty.expect("/workspace$ ", LAUNCH);
    assert!(
        !tty.local_modes()
            .intersects(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG),
        "raw during the session"
    );
    let term = Command::new("kill")
        .args(["-TERM", &tty.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    tty.expect("terminated: tearing down", SHORT);
    let modes = tty.local_modes();
    let (code, text) = tty.finish(LAUNCH);
    assert_eq!(code, Some(143), "{text}");
    assert_eq!(modes, cooked, "the terminal is restored:\n{text}");
    // A session cut short still resets the terminal.
    assert!(text.contains("\x18\x1b\\\x1b[0m"), "{text:?}");
    assert_eq!(leftovers(&run), Vec::<String>::new());
}

#[test]
fn attach_to_a_kept_bottle() {
    if !super::images_ready("attach_to_a_kept_bottle") {
        return;
    }
    let _images = super::image_lock();
    let h = Home::with_env("tty-attach", "env:\n  GREETING: hello-from-env\n");
    let run = h.run.clone();
    let started = cli(
        &h,
        &["start", &h.agent, "--yes", "--keep", "--prompt", "true"],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&started.stderr);
    assert!(started.status.success(), "{err}");
    assert!(err.contains("keeps running"), "{err}");
    let slug = h.agent.clone();

    let mut tty = Tty::spawn(cli(&h, &["attach", &slug]));
    tty.expect("/workspace$ ", SHORT);
    // The agent user, the workspace, the bottle's env (read back from the
    // env file) and the window size given at the start.
    tty.type_keys("echo who-$(id -u) at-$(pwd) g-$GREETING size-$(stty size)\r");
    tty.expect("who-1000 at-/workspace g-hello-from-env size-33 111", SHORT);
    // A new size reaches the session on SIGWINCH.
    tty.expect("/workspace$ ", SHORT);
    tty.resize(20, 70);
    let winch = Command::new("kill")
        .args(["-WINCH", &tty.child.id().to_string()])
        .status()
        .unwrap();
    assert!(winch.success());
    std::thread::sleep(Duration::from_millis(500));
    tty.type_keys("echo now-$(stty size); exit 0\r");
    tty.expect("now-20 70", SHORT);
    let (code, text) = tty.finish(SHORT);
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains("the agent exited with code"), "{text}");
    assert!(
        !leftovers(&run).is_empty(),
        "attach leaves the bottle running"
    );

    // An attach cut short by a signal ends its session (the shell and what
    // it runs), and leaves the bottle.
    let mut tty = Tty::spawn(cli(&h, &["attach", &slug]));
    tty.expect("/workspace$ ", SHORT);
    tty.type_keys("sleep 3004\r");
    std::thread::sleep(Duration::from_millis(500));
    assert!(agent_processes(&run).contains("sleep 3004"));
    let term = Command::new("kill")
        .args(["-TERM", &tty.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    tty.expect("terminated: ending the session", SHORT);
    let (code, text) = tty.finish(SHORT);
    assert_eq!(code, Some(143), "{text}");
    let top = agent_processes(&run);
    assert!(
        !top.contains("sleep 3004"),
        "the session still runs:\n{top}"
    );

    // An unknown slug says what runs and where to look.
    let mut tty = Tty::spawn(cli(&h, &["attach", "no-such-bottle"]));
    tty.expect("no running bottle `no-such-bottle`", SHORT);
    let (code, text) = tty.finish(SHORT);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains(&slug), "lists what runs: {text}");
    assert!(text.contains("claude-bottle list running"), "{text}");

    let cleaned = cli(&h, &["cleanup", "-y", "--all"]).output().unwrap();
    assert!(
        cleaned.status.success(),
        "{}",
        String::from_utf8_lossy(&cleaned.stderr)
    );
    assert_eq!(leftovers(&run), Vec::<String>::new());
}

#[test]
fn prompted_env_is_asked_hidden_and_reaches_the_agent() {
    if !super::images_ready("prompted_env_is_asked_hidden_and_reaches_the_agent") {
        return;
    }
    let _images = super::image_lock();
    let h = Home::with_env(
        "tty-ask",
        "env:\n  DB_PASSWORD: \"?Database password\"\n  PLAIN: \"?\"\n",
    );
    let run = h.run.clone();
    let value = "s3cret-typed-on-the-pty";

    // Without a terminal: refused before anything exists, by name.
    let out = cli(&h, &["start", &h.agent, "--yes", "--prompt", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("DB_PASSWORD"), "{err}");
    assert!(err.contains("${VAR}"), "{err}");
    assert_eq!(leftovers(&run), Vec::<String>::new());

    let script = "echo pw-$DB_PASSWORD plain-$PLAIN; \
                  grep -c DB_PASSWORD /run/claude-bottle/env";
    let mut tty = Tty::spawn(cli(&h, &["start", &h.agent, "--yes", "--prompt", script]));
    tty.expect("Database password (DB_PASSWORD, hidden): ", SHORT);
    tty.type_keys(&format!("{value}\r"));
    tty.expect("PLAIN (hidden): ", SHORT);
    // Backspace edits the hidden answer.
    tty.type_keys("pX\x7flain\r");
    let (code, text) = tty.finish(LAUNCH);
    eprintln!("--- the terminal showed:\n{text}\n---");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("pw-{value} plain-plain")),
        "the answers reach the agent:\n{text}"
    );
    assert_eq!(
        text.matches(value).count(),
        1,
        "only the agent's echo shows the value, the question does not:\n{text}"
    );
    assert_eq!(leftovers(&run), Vec::<String>::new());
}
