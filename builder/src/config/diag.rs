//! Config error reporting: every problem names `file:line:column` and the key.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A problem in a config file, located at a byte span of its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// Dotted key path, e.g. `container[1].image` (may be empty for syntax errors).
    pub key: String,
    /// What is wrong, one line.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "key `{}`: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Turns byte spans of one source text into located diagnostics.
pub struct Locator<'a> {
    file: &'a Path,
    source: &'a str,
}

impl<'a> Locator<'a> {
    /// A locator for `source`, the text of `file`.
    pub fn new(file: &'a Path, source: &'a str) -> Self {
        Locator { file, source }
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let before = self.source.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before.get(line_start..).map(|s| s.chars().count()).unwrap_or(0) + 1;
        (line, column)
    }

    /// A diagnostic at `span` for `key`.
    pub fn at(&self, span: &Range<usize>, key: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        let (line, column) = self.line_col(span.start);
        Diagnostic { file: self.file.to_path_buf(), line, column, key: key.into(), message: message.into() }
    }

    /// A diagnostic for an error from the TOML parser / deserialiser. The key is recovered from
    /// the source at the span: the bare key itself, or the key left of `=` on that line.
    pub fn from_toml(&self, err: &toml::de::Error) -> Diagnostic {
        let span = err.span().unwrap_or(0..0);
        let message = err.message().lines().next().unwrap_or("invalid config").trim().to_string();
        let mut key = self.key_at(&span);
        if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
            key = if key.is_empty() { field.to_string() } else { format!("{key}.{field}") };
        }
        self.at(&span, key, message)
    }

    /// Best-effort name of the key a span points into: the bare key at the span, or the key
    /// left of `=` on its line, prefixed by the enclosing table (`container[1].`, `host.`).
    fn key_at(&self, span: &Range<usize>) -> String {
        let key = self.bare_key_at(span);
        let table = self.table_at(span.start);
        match (table.is_empty(), key.is_empty()) {
            (true, _) => key,
            (false, true) => table,
            (false, false) => format!("{table}.{key}"),
        }
    }

    fn bare_key_at(&self, span: &Range<usize>) -> String {
        let line_start = self.source.get(..span.start).and_then(|s| s.rfind('\n')).map(|i| i + 1).unwrap_or(0);
        let line = self.source.get(line_start..).unwrap_or("").lines().next().unwrap_or("");
        let rel = span.start.saturating_sub(line_start);
        let before = line.get(..rel.min(line.len())).unwrap_or(line);
        // Inside an inline table (`health = { every = 1 }`): its key first.
        let within = |k: &str| match inline_tables(before) {
            outer if outer.is_empty() => k.to_string(),
            outer => format!("{outer}.{k}"),
        };
        let text = self.source.get(span.clone()).unwrap_or("").trim();
        if is_key(text) && !text.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return within(text);
        }
        // The nearest `key =` left of the span on its line.
        if let Some(eq) = before.rfind('=') {
            let lhs = &before[..eq];
            let start = lhs.rfind(['{', ',']).map(|i| i + 1).unwrap_or(0);
            let k = lhs[start..].trim();
            if is_key(k) {
                return within(k);
            }
        }
        String::new()
    }

    /// The table whose body holds `offset`: `host`, `container[1]`, or empty at top level.
    fn table_at(&self, offset: usize) -> String {
        let before = self.source.get(..offset).unwrap_or("");
        let headers: Vec<&str> = before.lines().map(str::trim).filter(|l| l.starts_with('[')).collect();
        let Some(last) = headers.last() else { return String::new() };
        // A span on the header line itself belongs to the table it opens.
        let name = |h: &str| h.trim_matches(|c| c == '[' || c == ']' || c == ' ').to_string();
        if last.starts_with("[[") {
            let n = name(last);
            let index = headers.iter().filter(|h| h.starts_with("[[") && name(h) == n).count() - 1;
            format!("{n}[{index}]")
        } else {
            name(last)
        }
    }
}

/// The keys of the inline tables still open at the end of `line` (`a = { b = { c` → `a.b`).
fn inline_tables(line: &str) -> String {
    let mut open: Vec<String> = Vec::new();
    let mut in_string = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '{' if !in_string => {
                let lhs = line[..i].trim_end().strip_suffix('=').unwrap_or("");
                let start = lhs.rfind(['{', ',']).map(|j| j + 1).unwrap_or(0);
                open.push(lhs[start..].trim().to_string());
            }
            '}' if !in_string => {
                open.pop();
            }
            _ => {}
        }
    }
    open.retain(|k| is_key(k));
    open.join(".")
}

fn is_key(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let src = "a = 1\nbb = 2\n";
        let l = Locator::new(Path::new("x.toml"), src);
        assert_eq!(l.line_col(0), (1, 1));
        assert_eq!(l.line_col(6), (2, 1));
        assert_eq!(l.line_col(11), (2, 6));
    }

    #[test]
    fn key_from_value_span() {
        let src = "name = \"x\"\nversion = \"one\"\n";
        let l = Locator::new(Path::new("x.toml"), src);
        let start = src.find("\"one\"").unwrap();
        assert_eq!(l.key_at(&(start..start + 5)), "version");
    }

    #[test]
    fn key_from_inline_table() {
        let src = "p = { path = \"a\", sha256 = 5 }\n";
        let l = Locator::new(Path::new("x.toml"), src);
        let start = src.rfind('5').unwrap();
        assert_eq!(l.key_at(&(start..start + 1)), "p.sha256");
    }
}
