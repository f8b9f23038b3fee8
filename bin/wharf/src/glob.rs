//! Shell-style wildcards in the last path component: `*`, `?`, `[abc]`, `[a-z]`, `[!abc]`.
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
pub fn matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    match_from(&pattern, &name)
}

fn match_from(pattern: &[char], name: &[char]) -> bool {
    // Iterative matching with one backtrack point for the last `*` (linear for typical patterns).
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('\\') if pattern.get(p + 1) == Some(&name[n]) => {
                p += 2;
                n += 1;
                continue;
            }
            Some('*') => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some('?') => {
                p += 1;
                n += 1;
                continue;
            }
            Some('[') => match class(&pattern[p..], name[n]) {
                Some((true, len)) => {
                    p += len;
                    n += 1;
                    continue;
                }
                Some((false, _)) => {}
                // Not a well-formed class: the `[` is an ordinary character.
                None if name[n] == '[' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                None => {}
            },
            Some(c) if *c == name[n] => {
                p += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((star_p, star_n)) => {
                p = star_p + 1;
                n = star_n + 1;
                star = Some((star_p, star_n + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Matches `c` against the class at the start of `pattern`; returns (matched, length of the class),
/// or `None` if the `[` does not start a well-formed class (it is then a literal).
fn class(pattern: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negated = matches!(pattern.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while let Some(&current) = pattern.get(i) {
        if current == ']' && !first {
            return Some((matched != negated, i + 1));
        }
        if pattern.get(i + 1) == Some(&'-') && pattern.get(i + 2).is_some_and(|end| *end != ']') {
            matched |= (current..=pattern[i + 2]).contains(&c);
            i += 3;
        } else {
            matched |= current == c;
            i += 1;
        }
        first = false;
    }
    None
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
