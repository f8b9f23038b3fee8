//! The `wharf` shell in a pseudo-terminal, seen through a small terminal emulator.
//!
//! Output is fed to a `vt100` screen, and the test waits for text to appear *on the screen*, the way a
//! person reads it. The emulator answers the cursor-position query (`ESC [ 6 n`) that reedline sends,
//! as a real terminal would. Waiting blocks on the pty's output with a deadline; nothing polls.
//! Set `WHARF_PTY_LOG=FILE` to record the raw bytes the program wrote, for debugging a screen.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

const ROWS: u16 = 30;
const COLS: u16 = 120;
/// How long to wait for expected text before failing the test.
const EXPECT_TIMEOUT: Duration = Duration::from_secs(20);
const CURSOR_QUERY: &[u8] = b"\x1b[6n";

/// A running program on a pseudo-terminal.
pub struct PtyShell {
    parser: vt100::Parser,
    writer: Box<dyn std::io::Write + Send>,
    output: mpsc::Receiver<Vec<u8>>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    tail: Vec<u8>,
}

impl PtyShell {
    /// Starts `program args...` with exactly the environment `env` (plus `TERM`).
    pub fn spawn(program: &Path, args: &[&str], env: &[(&str, &str)]) -> PtyShell {
        let pair = native_pty_system()
            .openpty(PtySize { rows: ROWS, cols: COLS, pixel_width: 0, pixel_height: 0 })
            .expect("open pty");
        let mut command = CommandBuilder::new(program);
        command.args(args);
        command.env_clear();
        command.env("TERM", "xterm-256color");
        command.env("PATH", std::env::var("PATH").unwrap_or_default());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = pair.slave.spawn_command(command).expect("spawn in pty");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("pty reader");
        let writer = pair.master.take_writer().expect("pty writer");
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep the master alive as long as the reader runs.
            let _master = pair.master;
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        PtyShell {
            parser: vt100::Parser::new(ROWS, COLS, 0),
            writer,
            output,
            child,
            tail: Vec::new(),
        }
    }

    /// Types `text` (use `\r` for Enter, `\t` for Tab, `\x03` for Ctrl-C, `\x04` for Ctrl-D).
    pub fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).expect("write to pty");
        self.writer.flush().expect("flush pty");
    }

    /// What the screen shows now, one line per row. (vt100's `contents()` joins rows it once saw
    /// wrap, even after they were erased and rewritten, which progress bars padded to the full width
    /// do all the time; a person sees separate rows.)
    pub fn screen(&self) -> String {
        let rows: Vec<String> =
            self.parser.screen().rows(0, COLS).map(|row| row.trim_end().to_owned()).collect();
        let used = rows.iter().rposition(|row| !row.is_empty()).map_or(0, |last| last + 1);
        rows[..used].join("\n")
    }

    /// Waits until `needle` is on the screen and returns the screen; fails the test after a timeout.
    pub fn expect(&mut self, needle: &str) -> String {
        self.expect_where(needle, |screen| screen.contains(needle))
    }

    /// Waits until `check` accepts the screen; `what` describes it for the failure message.
    pub fn expect_where(&mut self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + EXPECT_TIMEOUT;
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.feed(&bytes),
                Err(_) => panic!("timed out waiting for {what:?}; the screen shows:\n{screen}"),
            }
        }
    }

    /// Reads what the program writes for `span`, then returns the screen: for what must *not*
    /// show up meanwhile.
    pub fn watch(&mut self, span: Duration) -> String {
        let until = Instant::now() + span;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.feed(&bytes),
                Err(_) => break,
            }
        }
        self.screen()
    }

    fn feed(&mut self, bytes: &[u8]) {
        if let Some(log) = std::env::var_os("WHARF_PTY_LOG") {
            use std::io::Write as _;
            let mut file =
                std::fs::OpenOptions::new().create(true).append(true).open(log).expect("pty log");
            let _ = file.write_all(bytes);
        }
        self.parser.process(bytes);
        // A query may be split across reads: look at the end of the last chunk too.
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(bytes);
        let queries = window.windows(CURSOR_QUERY.len()).filter(|w| *w == CURSOR_QUERY).count();
        for _ in 0..queries {
            let (row, col) = self.parser.screen().cursor_position();
            let answer = format!("\x1b[{};{}R", row + 1, col + 1);
            let _ = self.writer.write_all(answer.as_bytes());
            let _ = self.writer.flush();
        }
        let keep = window.len().saturating_sub(CURSOR_QUERY.len() - 1);
        self.tail = if queries > 0 { Vec::new() } else { window[keep..].to_vec() };
    }

    /// Waits for the program to exit and returns its exit code.
    pub fn wait(&mut self) -> u32 {
        let deadline = Instant::now() + EXPECT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.exit_code();
            }
            // Exiting closes the pty, which ends the output: wait on that rather than sleeping.
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(bytes) => self.feed(&bytes),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return self.child.wait().expect("wait").exit_code();
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                    panic!("program did not exit; the screen shows:\n{}", self.screen())
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

impl Drop for PtyShell {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
