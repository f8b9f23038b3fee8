//! Batch mode: `-c "CMD; CMD"`, `-b FILE`, or commands on a standard input that is not a terminal.
//! Commands run in order and the first failure stops the batch.

use crate::commands::{Parsed, parse_line};
use crate::error::{ClientError, Result};
use crate::exec::{Flow, emit, execute, run_local};
use crate::session::Session;

/// Splits a script into command lines at newlines and at `;` outside quotes.
pub fn split_script(script: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in script.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' && quote != Some('\'') {
            escaped = true;
        } else if let Some(q) = quote {
            if c == q {
                quote = None;
            }
        } else if c == '\'' || c == '"' {
            quote = Some(c);
        } else if c == ';' || c == '\n' {
            commands.push(std::mem::take(&mut current));
            continue;
        }
        current.push(c);
    }
    commands.push(current);
    commands.into_iter().map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect()
}

/// Runs every command of `script`, stopping at the first failure.
pub async fn run(session: &std::sync::Arc<Session>, script: &str) -> Result<()> {
    let mut stdout = std::io::stdout();
    for line in split_script(script) {
        let parsed = parse_line(&line)?;
        if !matches!(parsed, Parsed::Command(_)) {
            // Help text and a local shell wait for a login still waiting for its reply, as
            // `execute` makes commands that print without asking the server wait.
            session.login_answered().await;
        }
        let command = match parsed {
            Parsed::Empty => continue,
            // A script that asks for help did not say what to do: show it, and fail, so that a
            // mistyped flag (`ls -lh` once meant help) never passes for success.
            Parsed::Help(text) => {
                emit(&mut stdout, &text)?;
                return Err(ClientError::Usage(format!("{line}: help is not a command to run")));
            }
            Parsed::Local(command) => {
                run_local(&command)?;
                continue;
            }
            Parsed::Command(command) => command,
        };
        let flow =
            execute(session, command, &mut stdout).await.map_err(|err| annotate(err, &line))?;
        if flow == Flow::Exit {
            break;
        }
    }
    // A script ends when its background jobs do, and fails if one of them did.
    session.jobs().wait(&[]).await?;
    crate::exec::report_jobs(session, &mut stdout)
}

/// Prefixes a failing command's error with the command, so a long batch says which line failed.
fn annotate(err: ClientError, line: &str) -> ClientError {
    match err {
        ClientError::Remote { code, message } => {
            ClientError::Remote { code, message: format!("{line}: {message}") }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_unquoted_semicolons_and_newlines() {
        assert_eq!(split_script("ls; cd a ;pwd"), ["ls", "cd a", "pwd"]);
        assert_eq!(
            split_script("mkdir 'a;b'; ls \"c;d\"\n\n stat e\\;f"),
            ["mkdir 'a;b'", "ls \"c;d\"", "stat e\\;f"]
        );
        assert!(split_script(" ; \n").is_empty());
    }
}
