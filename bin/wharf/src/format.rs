//! How entries, times and quotas are shown.

use std::borrow::Cow;
use std::fmt::Write as _;

use wharf_common::proto::{Entry, EntryKind, PartialUpload, QuotaInfo};
pub use wharf_common::units::format_bytes as human_bytes;

/// A name as it may be shown on a terminal. Names come from the server (or from files it sent), so
/// their control characters could move the cursor, rewrite the line or retitle the window, and a
/// bidirectional override could make a name read as another: these are shown escaped (`\n`,
/// `\x1b`, `\u{202e}`), as OpenSSH's sftp shows them; anything else as it is.
pub fn shown(name: &str) -> Cow<'_, str> {
    escaped(name, |_| true)
}

/// A message or a listing as it may be shown: as [`shown`], but keeping line breaks and tabs. What
/// the commands print passes through this, the names in it through [`shown`] first.
pub fn printable(text: &str) -> Cow<'_, str> {
    escaped(text, |c| !matches!(c, '\n' | '\t'))
}

fn escaped(text: &str, escape_control: impl Fn(char) -> bool) -> Cow<'_, str> {
    let hazard = |c: char| {
        (c.is_control() && escape_control(c))
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(hazard) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !hazard(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

/// `relative`, a path below a tree's top (`""` for the top itself), under the top as the user named
/// it: `docs` and `a/b` make `docs/a/b`, `/` and `a` make `/a`.
pub fn below(top: &str, relative: &str) -> String {
    if relative.is_empty() {
        return top.to_owned();
    }
    format!("{}/{relative}", top.trim_end_matches('/'))
}

/// `drwxr-xr-x`-style type and permission string.
pub fn mode_string(kind: EntryKind, mode: u32) -> String {
    let kind_char = match kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::File => '-',
        EntryKind::Other => '?',
    };
    let mut text = String::with_capacity(10);
    text.push(kind_char);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 0o7;
        text.push(if bits & 4 != 0 { 'r' } else { '-' });
        text.push(if bits & 2 != 0 { 'w' } else { '-' });
        text.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    text
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM` in UTC.
pub fn format_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}", rem / 3600, rem % 3600 / 60)
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The name as listed: directories get a trailing `/`, symlinks an `@`.
pub fn display_name(entry: &Entry) -> String {
    let name = shown(&entry.name);
    match entry.kind {
        EntryKind::Dir => format!("{name}/"),
        EntryKind::Symlink => format!("{name}@"),
        _ => name.into_owned(),
    }
}

/// One `ls -l` line; with `human`, sizes as `1.5 MiB`.
pub fn long_line(entry: &Entry, human: bool) -> String {
    let size = if human { human_bytes(entry.size) } else { entry.size.to_string() };
    format!(
        "{} {size:>12} {} {}",
        mode_string(entry.kind, entry.mode),
        format_time(entry.mtime),
        display_name(entry)
    )
}

/// Names laid out in columns, filled down then across, to fit `width` characters.
pub fn columns(names: &[String], width: usize) -> String {
    if names.is_empty() {
        return String::new();
    }
    let cell = names.iter().map(|n| n.chars().count()).max().unwrap_or(0) + 2;
    let per_row = (width / cell).max(1);
    let rows = names.len().div_ceil(per_row);
    let mut text = String::new();
    for row in 0..rows {
        let mut line = String::new();
        for col in 0..per_row {
            if let Some(name) = names.get(col * rows + row) {
                line.push_str(&format!("{name:<cell$}"));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `stat` output.
pub fn stat_text(path: &str, entry: &Entry) -> String {
    let kind = match entry.kind {
        EntryKind::File => "file",
        EntryKind::Dir => "directory",
        EntryKind::Symlink => "symbolic link",
        EntryKind::Other => "other",
    };
    format!(
        "    Path: {}\n    Type: {kind}\n    Size: {} ({})\n    Mode: {:04o} ({})\nModified: {} UTC\n",
        shown(path),
        entry.size,
        human_bytes(entry.size),
        entry.mode,
        mode_string(entry.kind, entry.mode),
        format_time(entry.mtime),
    )
}

/// `quota` output, with what partial uploads hold.
pub fn quota_text(quota: &QuotaInfo, partials: &[PartialUpload]) -> String {
    let limit = match quota.limit {
        Some(limit) => {
            let percent = if limit == 0 { 100.0 } else { quota.used as f64 * 100.0 / limit as f64 };
            format!("{} ({percent:.1}% used)", human_bytes(limit))
        }
        None => "unlimited".to_owned(),
    };
    let held: u64 = partials.iter().map(|p| p.held).sum();
    let partial = match partials.len() {
        0 => String::new(),
        n => format!(
            "partial:  {} in {n} interrupted upload{} (counted in used; `partials` lists them)\n",
            human_bytes(held),
            if n == 1 { "" } else { "s" }
        ),
    };
    format!(
        "used:     {} ({} bytes)\n{partial}reserved: {}\nlimit:    {limit}\n",
        human_bytes(quota.used),
        quota.used,
        human_bytes(quota.reserved)
    )
}

/// `df` output: the quota as a filesystem, in 1024-byte blocks or (`human`) in units.
pub fn df_text(quota: &QuotaInfo, human: bool) -> String {
    let used = quota.used + quota.reserved;
    let size = quota.limit;
    let avail = size.map(|size| size.saturating_sub(used));
    let show = |bytes: Option<u64>| match bytes {
        None => "-".to_owned(),
        Some(bytes) if human => human_bytes(bytes),
        Some(bytes) => bytes.div_ceil(1024).to_string(),
    };
    let percent = match size {
        Some(0) => "100%".to_owned(),
        Some(size) => format!("{}%", (used as u128 * 100).div_ceil(size as u128)),
        None => "-".to_owned(),
    };
    let heading = if human { "Size" } else { "1K-blocks" };
    format!(
        "{heading:>12} {:>12} {:>12} {:>5}\n{:>12} {:>12} {:>12} {percent:>5}\n",
        "Used",
        "Avail",
        "Use%",
        show(size),
        show(Some(used)),
        show(avail)
    )
}

/// `partials` output: one line per interrupted upload.
pub fn partials_text(partials: &[PartialUpload]) -> String {
    if partials.is_empty() {
        return "no partial uploads\n".to_owned();
    }
    let mut text = String::new();
    for partial in partials {
        let of = partial.size.map_or_else(String::new, |size| format!(" of {}", human_bytes(size)));
        let path = partial.path.as_deref().map_or("(a small file, not resumable)".into(), shown);
        text.push_str(&format!(
            "{:>10}{of:<14} {}  {path}\n",
            human_bytes(partial.held),
            format_time(partial.modified)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reach_the_terminal_without_their_control_characters() {
        assert!(matches!(shown("plain name ünï.txt"), Cow::Borrowed(_)));
        let title = "\u{1b}]0;owned\u{7}";
        assert_eq!(shown(&format!("a{title}\nb\tc\rd")), "a\\x1b]0;owned\\x07\\nb\\tc\\rd");
        assert_eq!(shown("csi\u{9b}2J del\u{7f}"), "csi\\x9b2J del\\x7f");
        assert_eq!(shown("invoice\u{202e}fdp.exe"), "invoice\\u{202e}fdp.exe");
        // A message keeps its lines and tabs, never its escapes.
        assert_eq!(printable("one\n\ttwo\u{1b}[2J"), "one\n\ttwo\\x1b[2J");
        let entry = Entry {
            name: "x\u{1b}[31m".into(),
            kind: EntryKind::Dir,
            size: 0,
            mode: 0o755,
            mtime: 0,
        };
        assert_eq!(display_name(&entry), "x\\x1b[31m/");
    }

    #[test]
    fn modes_and_times() {
        assert_eq!(mode_string(EntryKind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(EntryKind::File, 0o640), "-rw-r-----");
        assert_eq!(format_time(0), "1970-01-01 00:00");
        assert_eq!(format_time(1_795_000_000), "2026-11-18 11:06");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00");
    }

    #[test]
    fn df_shows_the_quota_as_a_filesystem() {
        let quota = QuotaInfo { used: 3 << 20, reserved: 1 << 20, limit: Some(16 << 20) };
        let text = df_text(&quota, true);
        assert!(text.contains("16.0 MiB") && text.contains("4.0 MiB") && text.contains("12.0 MiB"));
        assert!(text.trim_end().ends_with("25%"), "{text}");
        assert!(df_text(&quota, false).contains("16384"));
    }

    #[test]
    fn columns_fill_down_then_across() {
        let names: Vec<String> = ["a", "b", "c", "d", "e"].iter().map(|s| s.to_string()).collect();
        assert_eq!(columns(&names, 9), "a  c  e\nb  d\n");
        assert_eq!(columns(&[], 80), "");
    }
}
