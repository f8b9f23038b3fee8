//! The terminal under the client: its echo while transfers draw bars.

use std::io::IsTerminal as _;

/// Turns the terminal's echo off while bars are drawn, and back on when dropped. A key typed during a
/// transfer, or the `^C` of an interrupt, would otherwise be echoed among the bars, shift them, and
/// leave a stale bar on the screen once they are cleared.
///
/// It also keeps the Return key a carriage return meanwhile (no `ICRNL`). Lines typed ahead wait
/// in the terminal for the next prompt; turned into line feeds, they reached the line editor as
/// Ctrl-J, which it takes for Enter but not for the end of a line, so it read them all as one
/// batch, ran the first and dropped the rest.
pub struct EchoOff(Option<rustix::termios::Termios>);

impl EchoOff {
    /// Turns echo off on standard input, if it is a terminal.
    pub fn on_stdin() -> EchoOff {
        use rustix::termios::{InputModes, LocalModes, OptionalActions, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return EchoOff(None);
        }
        let Ok(saved) = tcgetattr(&stdin) else { return EchoOff(None) };
        let mut quiet = saved.clone();
        quiet.local_modes -= LocalModes::ECHO | LocalModes::ECHOCTL;
        quiet.input_modes -= InputModes::ICRNL;
        match tcsetattr(&stdin, OptionalActions::Now, &quiet) {
            Ok(()) => EchoOff(Some(saved)),
            Err(_) => EchoOff(None),
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}
