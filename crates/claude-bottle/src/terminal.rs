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
    write!(err, "{question}")?;
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
}
