//! A kernel module's `.modinfo` section: `key=value` strings, NUL-separated.

use object::{Object, ObjectSection};

/// What keel needs from `.modinfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// `name=`.
    pub name: Option<String>,
    /// `depends=`: modules that must be loaded first.
    pub depends: Vec<String>,
    /// `softdep=pre:` names (may be aliases rather than module names).
    pub softdep_pre: Vec<String>,
}

/// Parse the `.modinfo` of a `.ko` ELF file.
pub fn read(ko: &[u8]) -> Result<ModInfo, String> {
    let file = object::File::parse(ko).map_err(|e| format!("not an ELF object: {e}"))?;
    let section = file.section_by_name(".modinfo").ok_or("no .modinfo section")?;
    let data = section.data().map_err(|e| format!(".modinfo: {e}"))?;
    Ok(parse(data))
}

/// Parse the raw `.modinfo` bytes.
pub fn parse(data: &[u8]) -> ModInfo {
    let mut info = ModInfo::default();
    for field in data.split(|&b| b == 0) {
        let field = String::from_utf8_lossy(field);
        let Some((key, value)) = field.split_once('=') else { continue };
        match key {
            "name" => info.name = Some(value.to_string()),
            "depends" => info.depends = list(value.split(',')),
            "softdep" => {
                // "pre: a b post: c"
                let mut pre = false;
                for word in value.split_whitespace() {
                    match word {
                        "pre:" => pre = true,
                        "post:" => pre = false,
                        w if pre => info.softdep_pre.push(normalise(w)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    info
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    items.map(str::trim).filter(|s| !s.is_empty()).map(normalise).collect()
}

/// Module names treat `-` and `_` alike; keel uses `_`.
pub fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields() {
        let raw = b"license=GPL\0depends=mbcache,jbd2,crc16\0softdep=pre: crc32c post: foo-bar\0name=ext4\0";
        let m = parse(raw);
        assert_eq!(m.name.as_deref(), Some("ext4"));
        assert_eq!(m.depends, ["mbcache", "jbd2", "crc16"]);
        assert_eq!(m.softdep_pre, ["crc32c"]);
    }

    #[test]
    fn empty_depends() {
        assert!(parse(b"depends=\0").depends.is_empty());
    }
}
