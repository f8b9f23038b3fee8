//! Shell-style wildcards in the last path component: `*`, `?`, `[abc]`, `[a-z]`, `[!abc]`, matched
//! by the `glob` crate.
//! Used the same way for local (`put *.log`) and remote (`get 'logs/*.gz'`) names.
//!
//! As in sftp, a name that exists as written is taken literally even if it looks like a pattern
//! (`report[1].txt`), and a backslash makes the next character literal (`'report\[1].txt'`; the
//! shell's own quoting removes one level of backslashes, hence the quotes).

/// True if `text` contains a wildcard character that is not escaped.
pub fn has_wildcards(text: &str) -> bool {
    let mut escaped = false;
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// `text` with its escaping backslashes removed: the name a pattern stands for when taken literally.
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut escaped = false;
    for c in text.chars() {
        if c == '\\' && !escaped {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(c);
    }
    out
}

/// True if `name` matches `pattern` as a whole. A leading `.` must be matched literally, as in sh.
/// The matching is the `glob` crate's; this adds sftp's backslash escapes, and takes a pattern that
/// is not well formed (an unclosed `[`) literally.
pub fn matches(pattern: &str, name: &str) -> bool {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    match glob::Pattern::new(&without_backslashes(pattern)) {
        Ok(pattern) => pattern.matches_with(name, options),
        Err(_) => unescape(pattern) == name,
    }
}

/// `pattern` with each backslash-escaped character written as the `glob` crate escapes it.
fn without_backslashes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(next)) => {
                chars.next();
                out.push_str(&glob::Pattern::escape(&next.to_string()));
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(matches("*.log", "app.log"));
        assert!(!matches("*.log", "app.log.1"));
        assert!(matches("a?c", "abc"));
        assert!(matches("*a*b*", "xxaxxbxx"));
        assert!(matches("[abc]1", "b1"));
        assert!(matches("[a-c]*", "cat"));
        assert!(!matches("[!a-c]*", "cat"));
        assert!(matches("*", "file with spaces"));
        assert!(!matches("*", ".hidden"));
        assert!(matches(".*", ".hidden"));
        assert!(matches("ünï*", "ünïcode"));
        assert!(matches("[", "["), "an unclosed class is literal");
        assert!(has_wildcards("logs/*.gz") && !has_wildcards("plain.txt"));
    }

    #[test]
    fn escaped_wildcards_are_literal() {
        assert!(!has_wildcards("report\\[1].txt"));
        assert!(has_wildcards("report[1].txt"));
        assert_eq!(unescape("report\\[1].txt"), "report[1].txt");
        assert!(matches("report\\[1]*", "report[1].txt"));
        assert!(!matches("report\\[1]*", "report1.txt"));
        assert!(matches("a\\*", "a*") && !matches("a\\*", "ab"));
    }
}
