//! The local terminal during a session: raw mode behind a guard that puts
//! the settings back on every exit path, the window size, a stdin reader
//! that can be stopped, and hidden answers to the `?` env questions.
//!
//! Termios comes from `rustix` (features `termios`, and `event` for poll)
//! rather than `libc`: rustix is already in the dependency tree (through
//! `tempfile` and `xattr`), so it adds no crate, and its calls are safe
//! functions, which the workspace's `forbid(unsafe_code)` requires; every
//! `libc` termios call would need an `unsafe` block.
//!
//! Restoring: the settings to put back live in one process-wide slot.
//! [`RawMode`]'s `Drop` (normal return, `?`, a dropped future), the panic
//! hook installed by [`RawMode::enter`] (before the panic message is
//! printed), and the signal path ([`restore`], called by `Interrupts`) all
//! take them from there, so whichever runs first restores and the others
//! find nothing to do. SIGKILL cannot be caught; `reset` fixes the
//! terminal then.

use std::collections::VecDeque;
use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::Duration;

use bottle_secret::Secret;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::termios::{self, OptionalActions, Termios};
use tokio::sync::mpsc;

/// How often the stdin reader looks at its stop flag.
const STDIN_POLL: Duration = Duration::from_millis(100);
/// Chunks of typed bytes queued between the reader thread and the session.
const KEYS_QUEUE: usize = 64;

/// The terminal and its settings before raw mode, while raw mode is on.
static SAVED: Mutex<Option<(OwnedFd, Termios)>> = Mutex::new(None);
static PANIC_HOOK: Once = Once::new();

/// Stdin is a terminal.
pub fn stdin_is_terminal() -> bool {
    io::stdin().is_terminal()
}

/// Put the terminal back as it was before [`RawMode::enter`]. Idempotent;
/// safe to call from any exit path.
pub fn restore() {
    let saved = SAVED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    if let Some((fd, settings)) = saved {
        let _ = termios::tcsetattr(&fd, OptionalActions::Now, &settings);
    }
}

/// Raw mode on a terminal while this lives: input byte by byte, no echo,
/// no signals from keys (Ctrl-C is a byte for the agent), no output
/// processing.
#[must_use = "raw mode ends when the guard is dropped"]
pub struct RawMode {
    _private: (),
}

impl RawMode {
    /// Raw mode on `fd` (a terminal), until the guard is dropped.
    pub fn enter(fd: BorrowedFd<'_>) -> io::Result<RawMode> {
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        let original = termios::tcgetattr(fd)?;
        let mut raw = original.clone();
        raw.make_raw();
        {
            let mut slot = SAVED.lock().unwrap_or_else(|p| p.into_inner());
            // Already raw (a second guard): keep the first, true original.
            if slot.is_none() {
                *slot = Some((fd.try_clone_to_owned()?, original));
            }
        }
        // `Now`, not `Flush`: keys typed ahead go to the agent, not away.
        if let Err(e) = termios::tcsetattr(fd, OptionalActions::Now, &raw) {
            restore();
            return Err(e.into());
        }
        Ok(RawMode { _private: () })
    }

    /// Raw mode on stdin.
    pub fn stdin() -> io::Result<RawMode> {
        let stdin = io::stdin();
        RawMode::enter(stdin.as_fd())
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// What an agent's session may leave switched on in the user's terminal,
/// switched off, for what the CLI prints next (the summary, teardown
/// warnings) and for the user's shell after it: CAN and ST end a control
/// string left open (one would swallow the summary), then attributes and
/// reverse video (hidden text), the default colours, palette and cursor
/// colour (black on black), the character set (line drawing), the normal
/// screen, a visible cursor, mouse, focus and paste reporting, local echo
/// (it would show a later password), insert mode, autowrap, cursor and
/// keypad modes, modifyOtherKeys, and the scroll region (between a cursor
/// save and restore, since resetting it moves the cursor).
pub const SESSION_RESET: &[u8] = b"\x18\x1b\\\x1b[0m\x1b[?5l\
\x1b]104\x1b\\\x1b]110\x1b\\\x1b]111\x1b\\\x1b]112\x1b\\\x1b(B\x1b[?1047l\x1b[?25h\
\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?1004l\x1b[?2004l\
\x1b[12h\x1b[4l\x1b[?7h\x1b[?1l\x1b>\x1b[>4m\x1b7\x1b[r\x1b8";

/// A cursor position report, asked for after the reset: the terminal
/// answers queries in order, so once its answer is read, the answers to
/// every query the agent sent before are in the input queue too.
const CURSOR_QUERY: &[u8] = b"\x1b[6n";

/// How long input must stay quiet after a cursor report before the drain
/// ends. The agent may have asked for reports itself, so the first one
/// read need not be ours; ours is the last answer, and nothing follows it.
const QUIET_AFTER_REPORT: Duration = Duration::from_millis(75);

/// Ends an interactive session on the terminal `input`, still in raw mode
/// and with no reader left on it: writes [`SESSION_RESET`] to `out`, then
/// drops what the terminal answered to the agent's queries. An agent can
/// send a query (colours, the window title) as it exits; the answer would
/// otherwise be read by the user's shell as typed input, which on some
/// terminals runs a command. Waits at most `wait` for the terminal.
pub fn reset_after_session(out: &mut impl Write, input: BorrowedFd<'_>, wait: Duration) {
    let _ = out.write_all(SESSION_RESET);
    let _ = out.write_all(CURSOR_QUERY);
    let _ = out.flush();
    let deadline = std::time::Instant::now() + wait;
    let mut tail: Vec<u8> = Vec::new();
    let mut reported = false;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        let step = if reported {
            left.min(QUIET_AFTER_REPORT)
        } else {
            left
        };
        let timeout = Timespec {
            tv_sec: i64::try_from(step.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(step.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&input, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            // Quiet after a report, or the wait is over.
            Ok(0) => break,
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => break,
        }
        match rustix::io::read(input, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if has_cursor_report(&tail) {
                    reported = true;
                    tail.clear();
                }
                // Only the end can hold a report still being completed.
                if tail.len() > 64 {
                    tail.drain(..tail.len() - 64);
                }
            }
            Err(Errno::INTR | Errno::AGAIN) => {}
            Err(_) => break,
        }
    }
    let _ = termios::tcflush(input, termios::QueueSelector::IFlush);
}

/// `ESC [ digits ; digits R` somewhere in `bytes`.
fn has_cursor_report(bytes: &[u8]) -> bool {
    bytes.windows(2).enumerate().any(|(i, w)| {
        if w != b"\x1b[" {
            return false;
        }
        let rest = &bytes[i + 2..];
        let row = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let Some(rest) = rest[row..].strip_prefix(b";") else {
            return false;
        };
        let col = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        row > 0 && col > 0 && rest.get(col) == Some(&b'R')
    })
}

/// The terminal's size as (rows, columns), when stdin is a terminal that
/// knows it.
pub fn size() -> Option<(u16, u16)> {
    let w = termios::tcgetwinsize(io::stdin()).ok()?;
    (w.ws_row > 0 && w.ws_col > 0).then_some((w.ws_row, w.ws_col))
}

/// Bytes typed on stdin, read on a thread that polls, so it can be stopped
/// (a blocked `read` cannot be, and would eat the next key typed after the
/// session). Dropping stops and joins the thread.
pub struct Keys {
    rx: mpsc::Receiver<Vec<u8>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Keys {
    pub fn start() -> io::Result<Keys> {
        let (tx, rx) = mpsc::channel(KEYS_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || pump(&flag, &tx))?;
        Ok(Keys {
            rx,
            stop,
            thread: Some(thread),
        })
    }

    /// The next chunk typed; `None` once stdin has ended.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().await
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // A full queue would block the thread's send forever otherwise.
        self.rx.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The reader thread: poll stdin, read what is there, queue it.
fn pump(stop: &AtomicBool, tx: &mpsc::Sender<Vec<u8>>) {
    let stdin = io::stdin();
    let fd = stdin.as_fd();
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: i64::from(STDIN_POLL.subsec_nanos()),
    };
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(Errno::INTR) => continue,
            Ok(_) => {}
            Err(_) => break,
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let chunk = buf[..n].to_vec();
                // What was typed may be a password.
                buf[..n].fill(0);
                if tx.blocking_send(chunk).is_err() {
                    break;
                }
            }
            Err(Errno::INTR | Errno::AGAIN) => continue,
            Err(_) => break,
        }
    }
}

/// What a key did to a hidden answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    More,
    /// Enter.
    Done,
    /// Ctrl-C, or Ctrl-D on an empty answer.
    Cancel,
}

/// A hidden answer being typed in raw mode: Enter ends it, Backspace
/// removes a character, Ctrl-U clears, Ctrl-C cancels, escape sequences
/// (arrow keys) and other control keys are ignored. The bytes are zeroed
/// when dropped.
#[derive(Default)]
pub struct HiddenLine {
    buf: Vec<u8>,
    /// 0: plain; 1: after ESC; 2: inside `ESC [` … final byte.
    escape: u8,
}

impl HiddenLine {
    pub fn feed(&mut self, byte: u8) -> Edit {
        match self.escape {
            1 => {
                self.escape = if byte == b'[' { 2 } else { 0 };
                return Edit::More;
            }
            2 => {
                if (0x40..=0x7e).contains(&byte) {
                    self.escape = 0;
                }
                return Edit::More;
            }
            _ => {}
        }
        match byte {
            b'\r' | b'\n' => return Edit::Done,
            0x03 => return Edit::Cancel,
            0x04 if self.buf.is_empty() => return Edit::Cancel,
            0x1b => self.escape = 1,
            0x7f | 0x08 => {
                // Remove one whole UTF-8 character.
                while let Some(b) = self.buf.pop() {
                    if b & 0xc0 != 0x80 {
                        break;
                    }
                }
            }
            0x15 => {
                self.buf.fill(0);
                self.buf.clear();
            }
            b if b < 0x20 => {}
            b => self.buf.push(b),
        }
        Edit::More
    }

    /// The answer; `None` when it is not UTF-8.
    pub fn finish(mut self) -> Option<Secret> {
        let bytes = std::mem::take(&mut self.buf);
        match String::from_utf8(bytes) {
            Ok(s) => Some(Secret::new(s)),
            Err(e) => {
                e.into_bytes().fill(0);
                None
            }
        }
    }
}

impl Drop for HiddenLine {
    fn drop(&mut self) {
        self.buf.fill(0);
    }
}

/// Ask `question` on stderr and read a hidden answer from `keys`, in raw
/// mode; `pending` holds bytes typed past an earlier answer (a paste of
/// several lines). `Ok(None)` when the user cancelled.
pub async fn ask_hidden(
    question: &str,
    keys: &mut Keys,
    pending: &mut VecDeque<u8>,
) -> io::Result<Option<Secret>> {
    let _raw = RawMode::stdin()?;
    let mut err = io::stderr();
    // The question is the bottle's text (`?Text`): its escape sequences
    // must not reach the terminal.
    write!(err, "{}", crate::output::printable_field(question))?;
    err.flush()?;
    let mut line = HiddenLine::default();
    loop {
        while let Some(byte) = pending.pop_front() {
            match line.feed(byte) {
                Edit::More => {}
                Edit::Done => {
                    // A pasted CRLF ends one answer, not two.
                    if byte == b'\r' && pending.front() == Some(&b'\n') {
                        pending.pop_front();
                    }
                    write!(err, "\r\n")?;
                    return match line.finish() {
                        Some(s) => Ok(Some(s)),
                        None => Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "the answer is not UTF-8 text",
                        )),
                    };
                }
                Edit::Cancel => {
                    write!(err, "\r\n")?;
                    pending.iter_mut().for_each(|b| *b = 0);
                    pending.clear();
                    return Ok(None);
                }
            }
        }
        match keys.next().await {
            Some(mut chunk) => {
                pending.extend(chunk.iter().copied());
                chunk.fill(0);
            }
            None => {
                write!(err, "\r\n")?;
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(keys: &[u8]) -> (Edit, HiddenLine) {
        let mut line = HiddenLine::default();
        for &k in keys {
            let e = line.feed(k);
            if e != Edit::More {
                return (e, line);
            }
        }
        (Edit::More, line)
    }

    #[test]
    fn hidden_line_edits() {
        let (e, l) = typed(b"hunter2\r");
        assert_eq!(e, Edit::Done);
        assert_eq!(l.finish().unwrap().expose(), "hunter2");
        // Backspace removes a whole character, also a multi-byte one.
        let (_, l) = typed("pä\x7fa\x08b\n".as_bytes());
        assert_eq!(l.finish().unwrap().expose(), "pb");
        // Ctrl-U clears; arrow keys and other control keys are ignored.
        let (_, l) = typed(b"wrong\x15ri\x1b[Dght\x01\x1b[1;5C!\r");
        assert_eq!(l.finish().unwrap().expose(), "right!");
        // Ctrl-C cancels; Ctrl-D only on an empty answer.
        assert_eq!(typed(b"abc\x03").0, Edit::Cancel);
        assert_eq!(typed(b"\x04").0, Edit::Cancel);
        let (e, l) = typed(b"a\x04b\r");
        assert_eq!(e, Edit::Done);
        assert_eq!(l.finish().unwrap().expose(), "ab");
        // Empty is an answer.
        let (e, l) = typed(b"\r");
        assert_eq!(e, Edit::Done);
        assert_eq!(l.finish().unwrap().expose(), "");
        let (_, l) = typed(b"\xff\r");
        assert!(l.finish().is_none());
    }

    fn lflags(fd: &OwnedFd) -> termios::LocalModes {
        termios::tcgetattr(fd).unwrap().local_modes
    }

    /// One test (the saved slot is process-wide): raw mode is entered and
    /// put back on drop, on a panic, and by `restore` (the signal path).
    #[test]
    fn raw_mode_is_restored_on_every_path() {
        use termios::LocalModes;
        let (_controller, term) = bottle_testkit::pty();
        let cooked = lflags(&term);
        assert!(cooked.contains(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG));

        let guard = RawMode::enter(term.as_fd()).unwrap();
        let raw = lflags(&term);
        assert!(!raw.intersects(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG));
        drop(guard);
        assert_eq!(lflags(&term), cooked, "dropped guard");

        let fd = term.as_fd();
        let panicked = std::panic::catch_unwind(|| {
            let _guard = RawMode::enter(fd).unwrap();
            panic!("boom");
        });
        assert!(panicked.is_err());
        assert_eq!(lflags(&term), cooked, "panic");

        let guard = RawMode::enter(term.as_fd()).unwrap();
        restore();
        assert_eq!(lflags(&term), cooked, "restore() from a signal path");
        // The guard's own drop afterwards finds nothing left to do.
        drop(guard);
        assert_eq!(lflags(&term), cooked);
    }

    /// The terminal answered queries the agent sent as it exited, one of
    /// them a cursor report of its own; after `reset_after_session`
    /// nothing of them is left for the shell to read, the reset came out
    /// first, and the wait ended soon after the last report.
    #[test]
    fn a_session_ends_with_the_terminal_reset_and_no_answers_left() {
        use std::io::Read;
        let (controller, term) = bottle_testkit::pty();
        let mut raw = termios::tcgetattr(&term).unwrap();
        raw.make_raw();
        termios::tcsetattr(&term, OptionalActions::Now, &raw).unwrap();
        let mut terminal = std::fs::File::from(controller);
        // The agent asked for a cursor report, then for its colours: the
        // report's answer waits as typed input already.
        terminal.write_all(b"\x1b[1;1R").unwrap();
        // A terminal that answers the cursor query.
        let mut answering = terminal.try_clone().unwrap();
        let seen = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 256];
            while !seen.ends_with(CURSOR_QUERY) {
                let n = answering.read(&mut buf).unwrap();
                seen.extend_from_slice(&buf[..n]);
            }
            // The colour answer comes after a slow redraw, then ours.
            std::thread::sleep(Duration::from_millis(30));
            answering
                .write_all(b"\x1b]11;rgb:0000/0000/0000\x07")
                .unwrap();
            answering.write_all(b"\x1b[24;1R").unwrap();
            seen
        });
        let mut out = std::fs::File::from(term.try_clone().unwrap());
        let started = std::time::Instant::now();
        reset_after_session(&mut out, term.as_fd(), Duration::from_secs(10));
        assert!(started.elapsed() < Duration::from_secs(5), "waited out");
        let seen = seen.join().unwrap();
        assert!(seen.starts_with(SESSION_RESET), "{seen:?}");
        let mut fds = [PollFd::new(&term, PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        };
        assert_eq!(
            rustix::event::poll(&mut fds, Some(&zero)).unwrap(),
            0,
            "input left for the shell"
        );
    }

    #[test]
    fn cursor_reports_are_told_apart() {
        assert!(has_cursor_report(b"\x1b]11;rgb:0/0/0\x07\x1b[24;80R"));
        assert!(!has_cursor_report(b"\x1b[24;R"));
        assert!(!has_cursor_report(b"\x1b[;1R"));
        assert!(!has_cursor_report(b"\x1b[24;1"));
        assert!(!has_cursor_report(b"R\x1b["));
    }
}
