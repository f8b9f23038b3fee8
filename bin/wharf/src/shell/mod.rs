//! The interactive shell: reedline with history, completion and the `user@host:/cwd> ` prompt.
//!
//! The shell loop runs on the main thread, outside the async runtime, and runs each command with
//! `block_on`. Errors print as one line and the shell goes on; a lost connection is made again.

mod completer;
mod prompt;

use std::sync::Arc;

use reedline::{
    ColumnarMenu, Emacs, FileBackedHistory, KeyCode, KeyModifiers, MenuBuilder as _, Reedline,
    ReedlineEvent, ReedlineMenu, Signal, default_emacs_keybindings,
};

use crate::commands::{Parsed, parse_line};
use crate::error::{ClientError, Result};
use crate::exec::{Flow, execute};
use crate::format::printable;
use crate::session::Session;
use completer::{ListingCache, WharfCompleter};
use prompt::WharfPrompt;

/// Most lines kept in the history file.
const HISTORY_LINES: usize = 10_000;

/// The history file: `$XDG_CONFIG_HOME/wharf/history` or `~/.config/wharf/history`.
pub fn history_path() -> std::path::PathBuf {
    crate::config_dir().join("history")
}

fn editor(
    session: Arc<Session>,
    runtime: tokio::runtime::Handle,
    cache: ListingCache,
) -> Result<Reedline> {
    let path = history_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|err| ClientError::local(format!("creating {}", dir.display()), err))?;
    }
    let history = FileBackedHistory::with_file(HISTORY_LINES, path.clone()).map_err(|err| {
        ClientError::local(
            format!("history {}", path.display()),
            std::io::Error::other(err.to_string()),
        )
    })?;
    let mut keybindings = default_emacs_keybindings();
    keybindings.add_binding(
        KeyModifiers::NONE,
        KeyCode::Tab,
        ReedlineEvent::UntilFound(vec![
            ReedlineEvent::Menu("completion_menu".to_owned()),
            ReedlineEvent::MenuNext,
        ]),
    );
    let menu = ColumnarMenu::default().with_name("completion_menu");
    Ok(Reedline::create()
        .with_history(Box::new(history))
        .with_completer(Box::new(WharfCompleter::new(session, runtime, cache.clone())))
        .with_menu(ReedlineMenu::EngineCompleter(Box::new(menu)))
        // Like bash: a lone match completes in place, and a shared prefix is filled in.
        .with_quick_completions(true)
        .with_partial_completions(true)
        .with_edit_mode(Box::new(Emacs::new(keybindings))))
}

/// Runs one command. A connection found dead (the server restarted, the network dropped) is made
/// again, logged in as before, and the command runs once more on it, as transfers already do.
async fn run_command(
    session: &Arc<Session>,
    command: crate::commands::ShellCommand,
) -> Result<Flow> {
    let mut stdout = std::io::stdout();
    let generation = session.generation();
    if session.lost(generation) {
        reconnect(session, generation, None).await?;
    }
    let generation = session.generation();
    match execute(session, command.clone(), &mut stdout).await {
        Err(err @ ClientError::ConnectionLost(_)) => {
            reconnect(session, generation, Some(&err)).await?;
            execute(session, command, &mut stdout).await
        }
        other => other,
    }
}

async fn reconnect(session: &Session, generation: u64, cause: Option<&ClientError>) -> Result<()> {
    match cause {
        Some(err) => eprintln!("wharf: {}; reconnecting", printable(&err.to_string())),
        None => eprintln!("wharf: the connection was lost; reconnecting"),
    }
    session.reconnect(generation).await?;
    eprintln!("wharf: reconnected");
    Ok(())
}

/// Whether the shell may leave now: with jobs running, the first `exit` (or Ctrl-D) only says so,
/// and the next one stops them (their partial files are kept) and leaves.
fn leaving_with_jobs(session: &Session, warned: &mut bool) -> bool {
    let running = session.jobs().running();
    if running == 0 || *warned {
        let _ = session.jobs().kill(&[]);
        return true;
    }
    *warned = true;
    let what = if running == 1 { "1 job is".to_owned() } else { format!("{running} jobs are") };
    eprintln!("{what} running (see `jobs`): `wait`, `kill`, or exit again to stop them");
    false
}

/// Runs the shell until `exit`, Ctrl-D, or a connection that cannot be made again.
pub fn run(session: Arc<Session>, runtime: &tokio::runtime::Runtime) -> Result<()> {
    let cache = ListingCache::default();
    let mut line_editor = editor(session.clone(), runtime.handle().clone(), cache.clone())?;
    let prompt = WharfPrompt::new(session.clone());
    let mut stdout = std::io::stdout();
    // Set by an `exit` refused for the jobs still running: the next one stops them and leaves.
    let mut warned = false;
    loop {
        // Jobs that ended since the last prompt say so before the next one, as a shell's do (a
        // failed one's report says how).
        let _ = crate::exec::show_ended_jobs(&session, &mut stdout);
        let signal = line_editor
            .read_line(&prompt)
            .map_err(|err| ClientError::local("reading the command line", err))?;
        let line = match signal {
            Signal::Success(line) => line,
            Signal::CtrlD if leaving_with_jobs(&session, &mut warned) => break,
            Signal::CtrlD => continue,
            // Ctrl-C clears the line; anything else reedline may add later is ignored too.
            _ => continue,
        };
        let outcome = match parse_line(&line) {
            Ok(Parsed::Empty) => continue,
            Ok(Parsed::Help(text)) => {
                crate::exec::emit(&mut stdout, &text).map(|()| Flow::Continue)
            }
            Ok(Parsed::Local(command)) => crate::exec::run_local(&command).map(|()| Flow::Continue),
            Ok(Parsed::Command(command)) => {
                let _typed_ahead = crate::terminal::ReturnKept::on_stdin();
                runtime.block_on(run_command(&session, command))
            }
            Err(err) => Err(err),
        };
        cache.lock().clear();
        match outcome {
            Ok(Flow::Exit) if leaving_with_jobs(&session, &mut warned) => break,
            Ok(Flow::Exit) => continue,
            Ok(Flow::Continue) => warned = false,
            Err(err) if err.is_fatal() => return Err(err),
            Err(err) => eprintln!("error: {}", printable(&err.to_string())),
        }
    }
    Ok(())
}
