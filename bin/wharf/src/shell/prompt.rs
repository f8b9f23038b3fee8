//! The prompt: `user@host:/cwd> `, read from the session each time it is drawn.

use std::borrow::Cow;
use std::sync::Arc;

use reedline::{Prompt, PromptEditMode, PromptHistorySearch, PromptHistorySearchStatus};

use crate::session::Session;

pub struct WharfPrompt {
    session: Arc<Session>,
}

impl WharfPrompt {
    pub fn new(session: Arc<Session>) -> WharfPrompt {
        WharfPrompt { session }
    }
}

impl Prompt for WharfPrompt {
    fn render_prompt_left(&self) -> Cow<'_, str> {
        Cow::Owned(format!(
            "{}@{}:{}",
            self.session.user(),
            self.session.host(),
            crate::format::shown(self.session.cwd().as_str())
        ))
    }

    fn render_prompt_right(&self) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn render_prompt_indicator(&self, _mode: PromptEditMode) -> Cow<'_, str> {
        Cow::Borrowed("> ")
    }

    fn render_prompt_multiline_indicator(&self) -> Cow<'_, str> {
        Cow::Borrowed("::: ")
    }

    fn render_prompt_history_search_indicator(&self, search: PromptHistorySearch) -> Cow<'_, str> {
        let status = match search.status {
            PromptHistorySearchStatus::Passing => "",
            PromptHistorySearchStatus::Failing => "failing ",
        };
        Cow::Owned(format!("({status}reverse-search: {}) ", search.term))
    }
}
