//! The terminal under the client while a command runs: its echo while transfers draw bars, and
//! the Return key of lines typed ahead.

use std::io::IsTerminal as _;

use rustix::termios::{InputModes, LocalModes, OptionalActions, Termios, tcgetattr, tcsetattr};

/// Turns the terminal's echo off while bars are drawn, and back on when dropped. A key typed during a
/// transfer, or the `^C` of an interrupt, would otherwise be echoed among the bars, shift them, and
/// leave a stale bar on the screen once they are cleared.
pub struct EchoOff(Option<Termios>);

impl EchoOff {
    /// Turns echo off on standard input, if it is a terminal.
    pub fn on_stdin() -> EchoOff {
        EchoOff(adjust_stdin(|modes| modes.local_modes -= LocalModes::ECHO | LocalModes::ECHOCTL))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        restore_stdin(self.0.as_ref());
    }
}

/// Keeps the Return key a carriage return while a shell command runs (no `ICRNL`), and restores the
/// terminal when dropped. Lines typed ahead wait in the terminal for the next prompt; turned into
/// line feeds, they reached the line editor as Ctrl-J, which it takes for Enter but not for the
/// end of a line, so it read them all as one batch, ran the first and dropped the rest. (Nothing
/// reads the terminal while a command runs: the prompts for passwords and host keys come before
/// the shell starts, and a reconnection logs in with what the first login used.)
pub struct ReturnKept(Option<Termios>);

impl ReturnKept {
    /// Keeps Return a carriage return on standard input, if it is a terminal.
    pub fn on_stdin() -> ReturnKept {
        ReturnKept(adjust_stdin(|modes| modes.input_modes -= InputModes::ICRNL))
    }
}

impl Drop for ReturnKept {
    fn drop(&mut self) {
        restore_stdin(self.0.as_ref());
    }
}

/// Applies `change` to standard input's terminal modes; returns the modes before, to restore, if
/// standard input is a terminal and the change took.
fn adjust_stdin(change: impl FnOnce(&mut Termios)) -> Option<Termios> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return None;
    }
    let saved = tcgetattr(&stdin).ok()?;
    let mut changed = saved.clone();
    change(&mut changed);
    tcsetattr(&stdin, OptionalActions::Now, &changed).ok().map(|()| saved)
}

fn restore_stdin(saved: Option<&Termios>) {
    if let Some(saved) = saved {
        let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, saved);
    }
}
