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
        // A span at a header (`[api]` missing a key) belongs to the table that header opens.
        let rest = self.source.get(offset..).unwrap_or("");
        let upto = if rest.trim_start_matches([' ', '\t']).starts_with('[') {
            offset + rest.find('\n').unwrap_or(rest.len())
        } else {
            offset
        };
        let before = self.source.get(..upto).unwrap_or("");
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

/// A key the schema does not know, found while deserialising.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// Dotted path of the table holding it, e.g. `container[0]` (empty at the top level).
    pub table: String,
    /// The key as written.
    pub key: String,
    /// Span of the key (empty at the start of the file if the parser kept none).
    pub span: Range<usize>,
    /// The keys that table does know.
    pub known: &'static [&'static str],
}

impl UnknownKey {
    /// The full dotted key, e.g. `container[0].imagee`.
    pub fn path(&self) -> String {
        if self.table.is_empty() {
            self.key.clone()
        } else {
            format!("{}.{}", self.table, self.key)
        }
    }

    /// The right key, when the key looks like a misspelling or another tool's name for one.
    pub fn suggestion(&self) -> Option<&'static str> {
        suggest(&self.key, self.known).map(|(k, _)| k)
    }

    /// One line: what is wrong and, when it can tell, what was meant.
    pub fn message(&self) -> String {
        let at_top = self.table.is_empty();
        let spell = |k: &str| match k {
            "container" | "volume" | "network" | "link" if at_top => format!("[[{k}]]"),
            "kernel" | "host" | "disk" if at_top => format!("[{k}]"),
            _ => k.to_string(),
        };
        match suggest(&self.key, self.known) {
            Some((k, Hint::Typo)) => format!("unknown field `{}`; did you mean `{}`?", self.key, spell(k)),
            Some((k, Hint::Case)) => {
                format!("unknown field `{}`; did you mean `{}`? (keys are kebab-case)", self.key, spell(k))
            }
            Some((k, Hint::Compose(note))) => {
                format!("unknown field `{}`; did you mean `{}`? ({note})", self.key, spell(k))
            }
            None => {
                const SHOWN: usize = 8;
                let mut list: Vec<String> = self.known.iter().take(SHOWN).map(|k| format!("`{}`", spell(k))).collect();
                if self.known.len() > SHOWN {
                    list.push(format!("and {} more (docs/config.md)", self.known.len() - SHOWN));
                }
                format!("unknown field `{}` (expected {})", self.key, list.join(", "))
            }
        }
    }
}

/// Why a key is suggested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hint {
    /// Within a small edit distance.
    Typo,
    /// The same key in snake_case or another case.
    Case,
    /// docker-compose's name for it.
    Compose(&'static str),
}

/// docker-compose keys and what keel calls them, with a note on the difference.
const COMPOSE: &[(&str, &str, &str)] = &[
    ("environment", "env", "docker-compose's `environment` is `env = { NAME = \"value\" }` in keel"),
    ("env_file", "env", "keel has no env files: list the variables in `env = { … }`"),
    ("healthcheck", "health", "docker-compose's `healthcheck` is `health = { cmd = [...] }` or `{ tcp = PORT }`"),
    ("restart_policy", "restart", "docker-compose's `restart_policy` is `restart = \"on-failure\"` in keel"),
    ("container_name", "name", "the container's name is its `name`"),
    ("mem_limit", "memory", "docker-compose's `mem_limit` is `memory` in keel"),
    ("memory_limit", "memory", "the memory limit is `memory` in keel"),
    ("cap_add", "capabilities", "keel lists the capabilities a container keeps; it starts with none"),
    ("cap_drop", "capabilities", "keel lists the capabilities a container keeps; it starts with none"),
    ("working_dir", "workdir", "docker-compose's `working_dir` is `workdir` in keel"),
    ("entrypoint", "command", "`command` replaces the image's entrypoint and cmd"),
    ("pids_limit", "pids", "docker-compose's `pids_limit` is `pids` in keel"),
    ("security_opt", "seccomp", "keel's seccomp profile is chosen with `seccomp`"),
    ("ulimits", "nofile", "keel sets the open-files limit with `nofile`"),
    ("expose", "ports", "`ports` publishes container ports on the uplink"),
    ("links", "link", "links between containers are top-level `[[link]]` tables (from, to, ports)"),
    ("services", "container", "each service is a `[[container]]` table"),
];

/// The known key `key` most likely stands for.
fn suggest(key: &str, known: &[&'static str]) -> Option<(&'static str, Hint)> {
    let lower = key.to_ascii_lowercase();
    if let Some((_, to, note)) = COMPOSE.iter().find(|(from, _, _)| *from == lower) {
        if let Some(k) = known.iter().find(|k| *k == to) {
            return Some((k, Hint::Compose(note)));
        }
        // `[[link]]` is a top-level table: name it even where the key is not known.
        if *to == "link" {
            return Some(("[[link]]", Hint::Compose(note)));
        }
    }
    let norm = lower.replace('_', "-");
    if let Some(k) = known.iter().find(|k| **k == norm) {
        return Some((k, Hint::Case));
    }
    let max = if norm.chars().count() <= 4 { 1 } else { 2 };
    known
        .iter()
        .map(|k| (levenshtein(&norm, k), *k))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| (k, Hint::Typo))
}

/// Edit distance (insertions, deletions, substitutions) between two strings.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Deserialise `source` into `T`, skipping (and collecting) every key a struct of the schema does
/// not know instead of stopping at the first: `deny_unknown_fields` never sees them. Other errors
/// (syntax, types, missing fields) still stop at the first.
pub fn deserialize_collecting<T: serde::de::DeserializeOwned>(
    source: &str,
) -> (Result<T, toml::de::Error>, Vec<UnknownKey>) {
    let state = std::rc::Rc::new(std::cell::RefCell::new(collect::State::default()));
    let de = collect::De { inner: toml::Deserializer::new(source), st: state.clone() };
    let result = T::deserialize(de);
    let unknown = std::mem::take(&mut state.borrow_mut().unknown);
    (result, unknown)
}

/// A serde deserializer wrapper that drops unknown struct fields, noting where they were.
mod collect {
    use std::cell::RefCell;
    use std::fmt;
    use std::ops::Range;
    use std::rc::Rc;

    use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};

    use super::UnknownKey;

    // serde_spanned's protocol for `toml::Spanned` (a struct with these three fields).
    const SPANNED: &str = "$__serde_spanned_private_Spanned";
    const START: &str = "$__serde_spanned_private_start";
    const END: &str = "$__serde_spanned_private_end";
    const VALUE: &str = "$__serde_spanned_private_value";
    const SPANNED_FIELDS: &[&str] = &[START, END, VALUE];

    #[derive(Default)]
    pub struct State {
        /// Path segments of the value being read: `name` or `[index]`.
        path: Vec<String>,
        pub unknown: Vec<UnknownKey>,
    }

    impl State {
        fn table(&self) -> String {
            let mut s = String::new();
            for seg in &self.path {
                if !s.is_empty() && !seg.starts_with('[') {
                    s.push('.');
                }
                s.push_str(seg);
            }
            s
        }
    }

    type Shared = Rc<RefCell<State>>;

    /// How a map is read.
    #[derive(Clone, Copy)]
    enum Mode {
        /// A struct with these fields: unknown keys are dropped.
        Struct(&'static [&'static str]),
        /// A map (every key kept) or toml's span wrapper (not a level of the path).
        Map { path: bool },
    }

    pub struct De<D> {
        pub inner: D,
        pub st: Shared,
    }

    struct Vis<V> {
        inner: V,
        st: Shared,
        mode: Mode,
    }

    struct Map<M> {
        inner: M,
        st: Shared,
        mode: Mode,
        /// Whether the last key pushed a path segment.
        pushed: bool,
    }

    struct Seq<S> {
        inner: S,
        st: Shared,
        index: usize,
    }

    struct Seed<S> {
        inner: S,
        st: Shared,
    }

    /// A key with its span, when the parser kept one.
    struct Key {
        name: String,
        span: Option<Range<usize>>,
    }

    impl<'de> de::Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
            struct KeyVisitor;
            impl<'de> Visitor<'de> for KeyVisitor {
                type Value = Key;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a key")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                    Ok(Key { name: v.to_string(), span: None })
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
                    let (mut start, mut end, mut name) = (None, None, None);
                    while let Some(k) = map.next_key::<String>()? {
                        match k.as_str() {
                            START => start = Some(map.next_value::<usize>()?),
                            END => end = Some(map.next_value::<usize>()?),
                            _ => name = Some(map.next_value::<String>()?),
                        }
                    }
                    let name = name.ok_or_else(|| de::Error::custom("a key without a name"))?;
                    let span = start.zip(end).map(|(s, e)| s..e);
                    Ok(Key { name, span })
                }
            }
            d.deserialize_struct(SPANNED, SPANNED_FIELDS, KeyVisitor)
        }
    }

    impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
        type Value = S::Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
            self.inner.deserialize(De { inner: d, st: self.st })
        }
    }

    impl<'de, M: MapAccess<'de>> MapAccess<'de> for Map<M> {
        type Error = M::Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, M::Error> {
            self.pushed = false;
            let fields = match self.mode {
                Mode::Map { path: false } => return self.inner.next_key_seed(seed),
                Mode::Map { path: true } => None,
                Mode::Struct(fields) => Some(fields),
            };
            loop {
                let Some(key) = self.inner.next_key::<Key>()? else { return Ok(None) };
                match fields {
                    Some(known) if !known.contains(&key.name.as_str()) => {
                        let mut st = self.st.borrow_mut();
                        let table = st.table();
                        st.unknown.push(UnknownKey { table, key: key.name, span: key.span.unwrap_or(0..0), known });
                        drop(st);
                        self.inner.next_value::<de::IgnoredAny>()?;
                    }
                    _ => {
                        self.st.borrow_mut().path.push(key.name.clone());
                        self.pushed = true;
                        return seed.deserialize(key.name.into_deserializer()).map(Some);
                    }
                }
            }
        }

        fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, M::Error> {
            let v = self.inner.next_value_seed(Seed { inner: seed, st: self.st.clone() });
            if std::mem::take(&mut self.pushed) {
                self.st.borrow_mut().path.pop();
            }
            v
        }

        fn size_hint(&self) -> Option<usize> {
            self.inner.size_hint()
        }
    }

    impl<'de, S: SeqAccess<'de>> SeqAccess<'de> for Seq<S> {
        type Error = S::Error;

        fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, S::Error> {
            self.st.borrow_mut().path.push(format!("[{}]", self.index));
            self.index += 1;
            let v = self.inner.next_element_seed(Seed { inner: seed, st: self.st.clone() });
            self.st.borrow_mut().path.pop();
            v
        }

        fn size_hint(&self) -> Option<usize> {
            self.inner.size_hint()
        }
    }

    macro_rules! forward_visits {
        ($($method:ident($ty:ty)),* $(,)?) => {
            $(fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.inner.$method(v)
            })*
        };
    }

    impl<'de, V: Visitor<'de>> Visitor<'de> for Vis<V> {
        type Value = V::Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.inner.expecting(f)
        }

        forward_visits!(
            visit_bool(bool),
            visit_i8(i8),
            visit_i16(i16),
            visit_i32(i32),
            visit_i64(i64),
            visit_u8(u8),
            visit_u16(u16),
            visit_u32(u32),
            visit_u64(u64),
            visit_f32(f32),
            visit_f64(f64),
            visit_char(char),
            visit_str(&str),
            visit_borrowed_str(&'de str),
            visit_string(String),
            visit_bytes(&[u8]),
            visit_borrowed_bytes(&'de [u8]),
            visit_byte_buf(Vec<u8>),
        );

        fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
            self.inner.visit_none()
        }

        fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
            self.inner.visit_unit()
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
            self.inner.visit_some(De { inner: d, st: self.st })
        }

        fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
            self.inner.visit_newtype_struct(De { inner: d, st: self.st })
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
            self.inner.visit_seq(Seq { inner: seq, st: self.st, index: 0 })
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
            self.inner.visit_map(Map { inner: map, st: self.st, mode: self.mode, pushed: false })
        }

        fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
            self.inner.visit_enum(data)
        }
    }

    macro_rules! forward_deserialize {
        ($($method:ident),* $(,)?) => {
            $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                let vis = Vis { inner: visitor, st: self.st, mode: Mode::Map { path: true } };
                self.inner.$method(vis)
            })*
        };
    }

    impl<'de, D: Deserializer<'de>> Deserializer<'de> for De<D> {
        type Error = D::Error;

        forward_deserialize!(
            deserialize_any,
            deserialize_bool,
            deserialize_i8,
            deserialize_i16,
            deserialize_i32,
            deserialize_i64,
            deserialize_i128,
            deserialize_u8,
            deserialize_u16,
            deserialize_u32,
            deserialize_u64,
            deserialize_u128,
            deserialize_f32,
            deserialize_f64,
            deserialize_char,
            deserialize_str,
            deserialize_string,
            deserialize_bytes,
            deserialize_byte_buf,
            deserialize_option,
            deserialize_unit,
            deserialize_seq,
            deserialize_map,
            deserialize_identifier,
            deserialize_ignored_any,
        );

        fn deserialize_unit_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            let vis = Vis { inner: visitor, st: self.st, mode: Mode::Map { path: true } };
            self.inner.deserialize_unit_struct(name, vis)
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            let vis = Vis { inner: visitor, st: self.st, mode: Mode::Map { path: true } };
            self.inner.deserialize_newtype_struct(name, vis)
        }

        fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
            let vis = Vis { inner: visitor, st: self.st, mode: Mode::Map { path: true } };
            self.inner.deserialize_tuple(len, vis)
        }

        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            len: usize,
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            let vis = Vis { inner: visitor, st: self.st, mode: Mode::Map { path: true } };
            self.inner.deserialize_tuple_struct(name, len, vis)
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            let mode = if name == SPANNED && fields == SPANNED_FIELDS {
                Mode::Map { path: false }
            } else {
                Mode::Struct(fields)
            };
            self.inner.deserialize_struct(name, fields, Vis { inner: visitor, st: self.st, mode })
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            name: &'static str,
            variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.inner.deserialize_enum(name, variants, visitor)
        }

        fn is_human_readable(&self) -> bool {
            self.inner.is_human_readable()
        }
    }
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

#[cfg(test)]
mod unknown_key_tests {
    use std::path::Path;

    use super::super::{Config, ConfigErrors};
    use super::*;

    const GOOD: &str = r#"version = 1
name = "hello"

[kernel]
package.x86_64 = { path = "k.deb", sha256 = "0000000000000000000000000000000000000000000000000000000000000000" }

[host]
on-exit = "poweroff"

[[container]]
name = "hello"
image = "oci:img:hello"
"#;

    fn errors(src: &str) -> Vec<Diagnostic> {
        match Config::parse(Path::new("t.toml"), src.to_string()) {
            Ok(_) => panic!("accepted:\n{src}"),
            Err(ConfigErrors(e)) => e,
        }
    }

    #[test]
    fn independent_mistakes_are_all_reported() {
        let src = GOOD
            .replace("on-exit = \"poweroff\"", "on-exit = \"poweroff\"\ncolour = \"red\"\ndisk-timeout = \"soon\"")
            .replace("image = \"oci:img:hello\"", "image = \"oci:img:hello\"\nflavour = 1\nrestart = \"sometimes\"");
        let e = errors(&src);
        let got: Vec<(usize, &str)> = e.iter().map(|d| (d.line, d.key.as_str())).collect();
        assert_eq!(
            got,
            [(9, "host.colour"), (15, "container[0].flavour"), (10, "host.disk-timeout"), (16, "container[0].restart")],
            "{e:#?}"
        );
    }

    #[test]
    fn unknown_keys_get_hints() {
        for (line, key, want) in [
            ("environment = { A = \"1\" }", "container[0].environment", "did you mean `env`?"),
            ("depends_on = [\"x\"]", "container[0].depends_on", "did you mean `depends-on`?"),
            ("healthcheck = { tcp = 80 }", "container[0].healthcheck", "did you mean `health`?"),
            ("imagee = \"oci:x:y\"", "container[0].imagee", "did you mean `image`?"),
            ("mem_limit = \"1GiB\"", "container[0].mem_limit", "did you mean `memory`?"),
            ("cap_add = [\"NET_ADMIN\"]", "container[0].cap_add", "did you mean `capabilities`?"),
            ("read_only = true", "container[0].read_only", "did you mean `read-only`?"),
            ("restart_policy = \"always\"", "container[0].restart_policy", "did you mean `restart`?"),
            ("container_name = \"x\"", "container[0].container_name", "did you mean `name`?"),
            ("links = [\"db\"]", "container[0].links", "`[[link]]`"),
        ] {
            let e = errors(&format!("{GOOD}{line}\n"));
            assert_eq!(e.len(), 1, "{line}: {e:#?}");
            assert_eq!((e[0].line, e[0].column, e[0].key.as_str()), (13, 1, key), "{line}: {}", e[0]);
            assert!(e[0].message.contains(want), "{line}: {}", e[0]);
            assert!(!e[0].message.contains("expected"), "{line}: a hint and a list: {}", e[0]);
        }
    }

    #[test]
    fn a_misspelt_required_key_is_one_error() {
        let e = errors(&GOOD.replace("image = ", "imagee = "));
        assert_eq!(e.len(), 1, "{e:#?}");
        assert_eq!(e[0].key, "container[0].imagee");
        assert!(e[0].message.contains("did you mean `image`?"), "{}", e[0]);
    }

    #[test]
    fn plural_table_names_the_table() {
        let e = errors(&GOOD.replace("[[container]]", "[[containers]]"));
        assert_eq!(e[0].key, "containers", "{e:#?}");
        assert_eq!((e[0].line, e[0].column), (10, 3), "{e:#?}");
        assert!(e[0].message.contains("did you mean `[[container]]`?"), "{}", e[0]);
    }

    #[test]
    fn no_hint_lists_a_few_keys() {
        let e = errors(&GOOD.replace("[host]\n", "[host]\nzzz = 1\n"));
        assert_eq!(e[0].key, "host.zzz");
        assert!(e[0].message.starts_with("unknown field `zzz` (expected `hostname`, "), "{}", e[0]);
    }

    #[test]
    fn nested_and_inline_unknown_keys() {
        let src = GOOD
            .replace("sha256 = \"0000", "sha = 1, sha256 = \"0000")
            .replace("image = \"oci:img:hello\"", "image = \"oci:img:hello\"\nhealth = { tcp = 80, every = \"1s\" }");
        let keys: Vec<String> = errors(&src).into_iter().map(|d| d.key).collect();
        assert_eq!(keys, ["kernel.package.x86_64.sha", "container[0].health.every"]);
    }

    #[test]
    fn many_errors_are_capped() {
        let extra: String = (0..25).map(|i| format!("zz{i} = 1\n")).collect();
        let e = ConfigErrors(errors(&GOOD.replace("[host]\n", &format!("[host]\n{extra}"))));
        assert_eq!(e.0.len(), 25);
        let text = e.to_string();
        assert_eq!(text.lines().count(), 21, "{text}");
        assert!(text.ends_with("... and 5 more"), "{text}");
    }

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("imagee", "image"), 1);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
    }
}
