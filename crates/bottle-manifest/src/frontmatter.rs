//! Split a manifest file into its YAML front matter and Markdown body.
//!
//! Hand-written on purpose: the format is two lines that are exactly `---`,
//! and a general Markdown parser would accept far more than we mean to.

/// The largest manifest file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontMatter<'a> {
    pub yaml: &'a str,
    /// File line (1-based) of the first YAML line.
    pub yaml_line: u32,
    pub body: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitError {
    NoFrontMatter,
    Unclosed,
}

/// A line that is exactly `---`, tolerating a `\r` before the newline and
/// trailing blanks (editors add them, and they change nothing).
fn is_fence(line: &str) -> bool {
    line.trim_end_matches(['\r', ' ', '\t']) == "---"
}

pub fn split(text: &str) -> Result<FrontMatter<'_>, SplitError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (first, rest) = match text.find('\n') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    };
    if !is_fence(first) {
        return Err(SplitError::NoFrontMatter);
    }
    let mut offset = 0;
    loop {
        let line_end = rest[offset..].find('\n').map(|i| offset + i);
        let line = match line_end {
            Some(end) => &rest[offset..end],
            None => &rest[offset..],
        };
        if is_fence(line) {
            let body = match line_end {
                Some(end) => &rest[end + 1..],
                None => "",
            };
            return Ok(FrontMatter {
                yaml: &rest[..offset],
                yaml_line: 2,
                body,
            });
        }
        match line_end {
            Some(end) => offset = end + 1,
            None => return Err(SplitError::Unclosed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_yaml_and_body() {
        let fm = split("---\na: 1\n---\nhello\n").unwrap();
        assert_eq!(fm.yaml, "a: 1\n");
        assert_eq!(fm.yaml_line, 2);
        assert_eq!(fm.body, "hello\n");
    }

    #[test]
    fn crlf_bom_and_empty() {
        let fm = split("\u{feff}---\r\na: 1\r\n---\r\nbody").unwrap();
        assert_eq!(fm.yaml, "a: 1\r\n");
        assert_eq!(fm.body, "body");
        let fm = split("---\n---").unwrap();
        assert_eq!(fm.yaml, "");
        assert_eq!(fm.body, "");
    }

    #[test]
    fn dashes_inside_values_do_not_close() {
        let fm = split("---\na: \"---\"\nb: ----\n---\nx").unwrap();
        assert_eq!(fm.yaml, "a: \"---\"\nb: ----\n");
    }

    #[test]
    fn refusals() {
        assert_eq!(split("a: 1\n---\n"), Err(SplitError::NoFrontMatter));
        assert_eq!(split(""), Err(SplitError::NoFrontMatter));
        assert_eq!(split("---\na: 1\n"), Err(SplitError::Unclosed));
        assert_eq!(split("---"), Err(SplitError::Unclosed));
        assert_eq!(split(" ---\n---\n"), Err(SplitError::NoFrontMatter));
    }
}
