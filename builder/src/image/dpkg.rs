//! Debian package records for the SBOM: an image's `/var/lib/dpkg/status`, and the control file
//! of a `.deb` (the same format: stanzas of `Field: value` lines, continuation lines start with a
//! space or tab, stanzas end at a blank line).
//!
//! The bytes come from images and packages keel did not make, so the parser is bounded: the
//! input, the number of stanzas and the length of a kept value are capped, and bad input is an
//! error naming the line, never a panic. Only the fields the SBOM needs are kept.

/// Largest status file read (a full Debian desktop's is about 4 MiB).
pub const MAX_STATUS_BYTES: usize = 32 << 20;
/// Most stanzas (packages) read.
pub const MAX_STANZAS: usize = 100_000;
/// Longest value kept for a field the SBOM uses (names, versions, Built-Using).
pub const MAX_VALUE: usize = 4096;

/// Why a status or control file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpkgError {
    /// Over [`MAX_STATUS_BYTES`].
    #[error("{0} bytes, more than the {MAX_STATUS_BYTES} read")]
    TooBig(usize),
    /// Over [`MAX_STANZAS`].
    #[error("more than {MAX_STANZAS} packages")]
    TooMany,
    /// A line that is neither a field, a continuation nor blank.
    #[error("line {0}: not a `Field: value` line")]
    BadLine(usize),
    /// A continuation line with no field before it.
    #[error("line {0}: a continuation line with no field before it")]
    Orphan(usize),
    /// A kept value over [`MAX_VALUE`].
    #[error("line {0}: the value of `{1}` is longer than {MAX_VALUE} bytes")]
    LongValue(usize, String),
    /// A stanza without `Package` or `Version`.
    #[error("the stanza ending at line {0} has no {1} field")]
    Missing(usize, &'static str),
}

/// One binary package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    /// `Package:`.
    pub name: String,
    /// `Version:`.
    pub version: String,
    /// `Architecture:` (empty if absent).
    pub arch: String,
    /// The source package: `Source:`'s name, else the package's own name.
    pub source: String,
    /// The source version: the one in `Source: NAME (VERSION)`, else the package's version.
    pub source_version: String,
    /// `Built-Using:` verbatim, if present.
    pub built_using: Option<String>,
    /// Whether `Status:` says it is installed (true when there is no `Status:`, as in a
    /// package's control file).
    pub installed: bool,
}

/// The fields kept from one stanza.
#[derive(Default)]
struct Stanza {
    name: Option<String>,
    version: Option<String>,
    arch: Option<String>,
    source: Option<String>,
    built_using: Option<String>,
    status: Option<String>,
}

impl Stanza {
    fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.version.is_none()
            && self.arch.is_none()
            && self.source.is_none()
            && self.built_using.is_none()
            && self.status.is_none()
    }

    fn slot(&mut self, field: &str) -> Option<&mut Option<String>> {
        // Field names are case-insensitive (deb-control(5)).
        match field.to_ascii_lowercase().as_str() {
            "package" => Some(&mut self.name),
            "version" => Some(&mut self.version),
            "architecture" => Some(&mut self.arch),
            "source" => Some(&mut self.source),
            "built-using" => Some(&mut self.built_using),
            "status" => Some(&mut self.status),
            _ => None,
        }
    }

    fn finish(self, line: usize) -> Result<Package, DpkgError> {
        let name = self.name.ok_or(DpkgError::Missing(line, "Package"))?;
        let version = self.version.ok_or(DpkgError::Missing(line, "Version"))?;
        let (source, source_version) = match self.source.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => match s.split_once('(') {
                Some((n, v)) => (n.trim().to_string(), v.trim_end_matches(')').trim().to_string()),
                None => (s.to_string(), version.clone()),
            },
            _ => (name.clone(), version.clone()),
        };
        // `want flag state`: installed only in state `installed`.
        let installed = self.status.as_deref().is_none_or(|s| s.split_whitespace().nth(2) == Some("installed"));
        Ok(Package {
            name,
            version,
            arch: self.arch.unwrap_or_default(),
            source,
            source_version,
            built_using: self.built_using,
            installed,
        })
    }
}

/// Every stanza of a status or control file, in file order.
pub fn parse(bytes: &[u8]) -> Result<Vec<Package>, DpkgError> {
    if bytes.len() > MAX_STATUS_BYTES {
        return Err(DpkgError::TooBig(bytes.len()));
    }
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    let mut cur = Stanza::default();
    // The kept field the last line added to, if any; `Some(None)` is a field not kept.
    let mut last: Option<Option<&'static str>> = None;
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        n = i + 1;
        if line.trim().is_empty() {
            if !cur.is_empty() {
                if out.len() == MAX_STANZAS {
                    return Err(DpkgError::TooMany);
                }
                out.push(std::mem::take(&mut cur).finish(n)?);
            }
            last = None;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match last {
                None => return Err(DpkgError::Orphan(n)),
                // Built-Using may be folded; the other kept fields are one line.
                Some(Some(field)) => {
                    if let Some(Some(v)) = cur.slot(field) {
                        v.push(' ');
                        v.push_str(line.trim());
                        if v.len() > MAX_VALUE {
                            return Err(DpkgError::LongValue(n, field.to_string()));
                        }
                    }
                }
                Some(None) => {}
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (field, value) = line.split_once(':').ok_or(DpkgError::BadLine(n))?;
        if field.is_empty() || field.contains(char::is_whitespace) {
            return Err(DpkgError::BadLine(n));
        }
        let value = value.trim();
        last = Some(None);
        if let Some(slot) = cur.slot(field) {
            if value.len() > MAX_VALUE {
                return Err(DpkgError::LongValue(n, field.to_string()));
            }
            *slot = Some(value.to_string());
            last = Some(Some(kept_name(field)));
        }
    }
    if !cur.is_empty() {
        if out.len() == MAX_STANZAS {
            return Err(DpkgError::TooMany);
        }
        out.push(cur.finish(n)?);
    }
    Ok(out)
}

/// The canonical name of a kept field.
fn kept_name(field: &str) -> &'static str {
    match field.to_ascii_lowercase().as_str() {
        "package" => "package",
        "version" => "version",
        "architecture" => "architecture",
        "source" => "source",
        "built-using" => "built-using",
        _ => "status",
    }
}

/// The installed packages of a status file, sorted by name and arch.
pub fn installed(bytes: &[u8]) -> Result<Vec<Package>, DpkgError> {
    let mut all: Vec<Package> = parse(bytes)?.into_iter().filter(|p| p.installed).collect();
    all.sort();
    all.dedup();
    Ok(all)
}

/// The one stanza of a package's control file.
pub fn control(bytes: &[u8]) -> Result<Package, DpkgError> {
    parse(bytes)?.into_iter().next().ok_or(DpkgError::Missing(0, "Package"))
}

/// `Built-Using:`'s packages as `(name, version)`: `linux (= 6.1.192-2), gcc-12 (= 12.2.0-14)`.
pub fn built_using(field: &str) -> Vec<(String, String)> {
    field
        .split(',')
        .filter_map(|part| {
            let (name, rest) = part.trim().split_once('(')?;
            let version = rest.trim_end_matches(')').trim().trim_start_matches('=').trim();
            let name = name.trim();
            (!name.is_empty() && !version.is_empty()).then(|| (name.to_string(), version.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: libc6\nStatus: install ok installed\nPriority: optional\n\
Architecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u4\nDescription: GNU C Library\n \
Contains the standard libraries.\n .\n More.\n\nPackage: dash\nStatus: install ok installed\n\
Version: 0.5.12-2\nArchitecture: amd64\n\nPackage: gone\nStatus: deinstall ok config-files\n\
Version: 1\n";

    #[test]
    fn reads_installed_packages() {
        let p = installed(STATUS.as_bytes()).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].name.as_str(), p[0].source.as_str(), p[0].source_version.as_str()),
            ("dash", "dash", "0.5.12-2")
        );
        assert_eq!((p[1].name.as_str(), p[1].source.as_str(), p[1].arch.as_str()), ("libc6", "glibc", "amd64"));
    }

    #[test]
    fn reads_a_kernel_control_file() {
        let c = "Package: linux-image-6.1.0-56-amd64\nSource: linux-signed-amd64 (6.1.192+2)\nVersion: 6.1.192-2\n\
Architecture: amd64\nBuilt-Using: linux (= 6.1.192-2),\n gcc-12 (= 12.2.0-14)\n";
        let p = control(c.as_bytes()).unwrap();
        assert_eq!((p.source.as_str(), p.source_version.as_str()), ("linux-signed-amd64", "6.1.192+2"));
        assert!(p.installed);
        let b = built_using(p.built_using.as_deref().unwrap());
        assert_eq!(b, [("linux".to_string(), "6.1.192-2".to_string()), ("gcc-12".into(), "12.2.0-14".into())]);
    }

    #[test]
    fn refuses_bad_input_by_line() {
        assert_eq!(parse(b" orphan\n"), Err(DpkgError::Orphan(1)));
        assert_eq!(parse(b"Package: a\nno colon here\n"), Err(DpkgError::BadLine(2)));
        assert_eq!(parse(b"Package: a\n\n"), Err(DpkgError::Missing(2, "Version")));
        let long = format!("Package: {}\nVersion: 1\n", "a".repeat(MAX_VALUE + 1));
        assert!(matches!(parse(long.as_bytes()), Err(DpkgError::LongValue(1, _))));
        assert_eq!(parse(&vec![b'\n'; MAX_STATUS_BYTES + 1]), Err(DpkgError::TooBig(MAX_STATUS_BYTES + 1)));
    }

    #[test]
    fn caps_the_number_of_packages() {
        let many = "Package: a\nVersion: 1\n\n".repeat(MAX_STANZAS + 1);
        assert_eq!(parse(many.as_bytes()), Err(DpkgError::TooMany));
    }

    #[test]
    fn survives_odd_bytes() {
        assert_eq!(parse(b"").unwrap(), []);
        assert!(parse(b"Package: \xff\xfe\nVersion: \x00\n").is_ok());
        assert!(parse(b"\r\n\r\n").unwrap().is_empty());
        assert_eq!(built_using("((, =), x (= )"), []);
    }
}
