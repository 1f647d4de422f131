//! Text an orchestrator chose (an error body, a `grpc-message`), made fit to keep and log.
//!
//! Such text goes into the pool's health records, which `/orchestrators` serves every second
//! to the dashboard, into a log line per attempt and into clients' errors. An orchestrator
//! could send 64 KiB of it, and its newlines would start log lines of its own making (the
//! text log writes `%` fields as they are), so it is cut short and put on one line.

/// Characters of an orchestrator's text kept, at most.
pub const MAX_CHARS: usize = 300;

/// `text` on one line: every control character (newline, carriage return, tab, escape, …)
/// replaced by a space, so that it cannot add lines to a log or move a terminal's cursor.
pub fn one_line(text: &str) -> String {
    text.chars().map(printable).collect()
}

/// `text` trimmed, on one line ([`one_line`]) and cut to [`MAX_CHARS`] characters (on a
/// character boundary: whole characters are counted).
pub fn cut(text: &str) -> String {
    text.trim().chars().take(MAX_CHARS).map(printable).collect()
}

/// `c`, or a space in place of a control character.
fn printable(c: char) -> char {
    if c.is_control() { ' ' } else { c }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_to_whole_characters() {
        assert_eq!(cut("  short  "), "short");
        let long = "é".repeat(64 * 1024);
        let kept = cut(&long);
        assert_eq!(kept.chars().count(), MAX_CHARS);
        assert!(kept.chars().all(|c| c == 'é'));
    }

    #[test]
    fn control_characters_cannot_start_a_line() {
        let forged = "boom\nlevel=INFO msg=\"payment sent\"\r\n\tx\u{1b}[2J\u{0}\u{85}end";
        let kept = cut(forged);
        assert!(!kept.chars().any(char::is_control), "{kept:?}");
        assert_eq!(kept, "boom level=INFO msg=\"payment sent\"   x [2J  end");
        assert_eq!(one_line("a\nb\r\tc"), "a b  c");
        assert_eq!(one_line("plain text, ünïcode"), "plain text, ünïcode");
    }
}
