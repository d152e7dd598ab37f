//! Persistent volumes: the `[[volume]]` tables and each container's
//! `volumes = ["NAME:/path[:ro]"]`. Names are checked against the declared volumes once every
//! container is read ([`Validator::volume_names`]); each volume's owner is settled by
//! [`plan_volumes`] once the containers' users are resolved against their images.

use std::collections::BTreeMap;
use std::ops::Range;

use keel_plan::{Volume, VolumeMount, ID_RANGE};
use toml::Spanned;

use super::schema::RawVolume;
use super::{valid_name, ContainerConfig, Validator};

/// One `[[volume]]`.
#[derive(Debug, Clone)]
pub struct VolumeConfig {
    /// Unique name; the directory `volumes/NAME` on keel-data.
    pub name: String,
    /// `owner = "UID:GID"` (container ids); `None`: from the first container that mounts it.
    pub owner: Option<(u32, u32)>,
}

/// One entry of a container's `volumes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountConfig {
    /// The volume's name.
    pub volume: String,
    /// Absolute, normalised path inside the container.
    pub target: String,
    /// `:ro`.
    pub read_only: bool,
    /// Where the entry is written.
    pub span: Range<usize>,
}

impl MountConfig {
    /// The plan's form.
    pub fn plan(&self) -> VolumeMount {
        VolumeMount { volume: self.volume.clone(), target: self.target.clone(), read_only: self.read_only }
    }
}

/// A container or volume name: lower-case letters, digits, `-`, `_`, at most 63.
fn valid_volume_name(s: &str) -> bool {
    valid_name(s) && !s.contains('.')
}

/// `UID:GID`, both container ids.
fn parse_owner(s: &str) -> Option<(u32, u32)> {
    let (u, g) = s.split_once(':')?;
    let id = |x: &str| x.parse::<u32>().ok().filter(|n| *n < ID_RANGE && x.chars().all(|c| c.is_ascii_digit()));
    Some((id(u)?, id(g)?))
}

/// `/a//b/` as `/a/b`, or why it cannot be a volume's target.
fn target(raw: &str) -> Result<String, &'static str> {
    if !raw.starts_with('/') {
        return Err("must be an absolute path");
    }
    let parts: Vec<&str> = raw.split('/').filter(|c| !c.is_empty()).collect();
    if parts.iter().any(|p| *p == ".." || *p == ".") {
        return Err("must not contain `.` or `..`");
    }
    if parts.is_empty() {
        return Err("cannot be `/`");
    }
    let norm = format!("/{}", parts.join("/"));
    if super::isolation::RESERVED.iter().any(|r| within(&norm, r)) {
        return Err("is managed by keel (/proc, /sys and /dev cannot take a volume)");
    }
    Ok(norm)
}

/// Is `path` `dir` itself or below it (both normalised)?
fn within(path: &str, dir: &str) -> bool {
    path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

impl Validator<'_> {
    /// `[[volume]]`: names (valid, unique), owners, and `size`, which keel cannot enforce yet.
    pub(super) fn volumes(&mut self, raw: Vec<Spanned<RawVolume>>) -> Vec<VolumeConfig> {
        let mut out: Vec<VolumeConfig> = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (index, v) in raw.into_iter().enumerate() {
            let v = v.into_inner();
            let key = |f: &str| format!("volume[{index}].{f}");
            let name = v.name.get_ref().clone();
            if !valid_volume_name(&name) {
                self.err(
                    &v.name.span(),
                    key("name"),
                    format!("`{name}` is not a valid volume name (lower-case letters, digits, `-`, `_`; at most 63)"),
                );
            } else if let Some(first) = seen.get(&name) {
                self.err(
                    &v.name.span(),
                    key("name"),
                    format!("duplicate volume name `{name}` (first used by volume[{first}])"),
                );
            } else {
                seen.insert(name.clone(), index);
            }
            if let Some(size) = &v.size {
                self.err(
                    &size.span(),
                    key("size"),
                    "volume sizes are not supported yet: keel has no quotas, so a volume can fill keel-data; \
                     remove `size` (size keel-data with `[disk] data-size`)",
                );
            }
            let owner = v.owner.and_then(|o| {
                let parsed = parse_owner(o.get_ref());
                if parsed.is_none() {
                    self.err(
                        &o.span(),
                        key("owner"),
                        format!(
                            "`{}` is not an owner: expected \"UID:GID\", container ids 0-{}",
                            o.get_ref(),
                            ID_RANGE - 1
                        ),
                    );
                }
                parsed
            });
            out.push(VolumeConfig { name, owner });
        }
        out
    }

    /// A container's `volumes = ["NAME:/path[:ro|:rw]"]`: each target absolute, outside /proc,
    /// /sys and /dev, mounted once, and neither inside nor around another volume or a tmpfs
    /// (the runtime mounts tmpfs first, then volumes, each on a directory of the image).
    pub(super) fn container_volumes(
        &mut self,
        index: usize,
        raw: Option<Spanned<Vec<Spanned<String>>>>,
        tmpfs: &[String],
    ) -> Vec<MountConfig> {
        let mut out: Vec<MountConfig> = Vec::new();
        for (i, entry) in raw.map(Spanned::into_inner).unwrap_or_default().into_iter().enumerate() {
            let span = entry.span();
            let raw = entry.into_inner();
            let key = format!("container[{index}].volumes[{i}]");
            let mut parts = raw.splitn(3, ':');
            let (name, path, suffix) = (parts.next().unwrap_or(""), parts.next(), parts.next());
            let Some(path) = path else {
                self.err(
                    &span,
                    key,
                    format!("`{raw}` is not a volume mount: expected \"NAME:/path\" or \"NAME:/path:ro\""),
                );
                continue;
            };
            let read_only = match suffix {
                None | Some("rw") => false,
                Some("ro") => true,
                Some(other) => {
                    self.err(&span, key, format!("`{raw}`: unknown suffix `:{other}` (expected `:ro` or `:rw`)"));
                    continue;
                }
            };
            if !valid_volume_name(name) {
                self.err(&span, key, format!("`{raw}`: `{name}` is not a volume name"));
                continue;
            }
            let target = match target(path) {
                Ok(t) => t,
                Err(why) => {
                    self.err(&span, key, format!("`{raw}`: the target `{path}` {why}"));
                    continue;
                }
            };
            if let Some(m) = out.iter().find(|m| within(&target, &m.target) || within(&m.target, &target)) {
                let why = if m.target == target {
                    format!("`{target}` is mounted twice in this container")
                } else {
                    format!("`{target}` and `{}` (volume `{}`) are nested; mount them side by side", m.target, m.volume)
                };
                self.err(&span, key, why);
                continue;
            }
            if let Some(t) = tmpfs.iter().find(|t| within(&target, t) || within(t, &target)) {
                self.err(
                    &span,
                    key,
                    format!("`{target}` overlaps the tmpfs `{t}`; a path is either tmpfs or a volume"),
                );
                continue;
            }
            out.push(MountConfig { volume: name.to_string(), target, read_only, span });
        }
        out
    }

    /// Every mount names a declared volume.
    pub(super) fn volume_names(&mut self, volumes: &[VolumeConfig], containers: &[ContainerConfig]) {
        for c in containers {
            for (i, m) in c.volumes.iter().enumerate() {
                if !volumes.iter().any(|v| v.name == m.volume) {
                    let declared: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
                    let known = if declared.is_empty() {
                        "no [[volume]] is declared".to_string()
                    } else {
                        format!("declared: {}", declared.join(", "))
                    };
                    self.err(
                        &m.span,
                        c.key(&format!("volumes[{i}]")),
                        format!(
                            "unknown volume `{}` ({known}); add a [[volume]] with name = \"{}\"",
                            m.volume, m.volume
                        ),
                    );
                }
            }
        }
    }
}

/// The plan's volumes, in config order. A volume without `owner` belongs to the uid:gid of the
/// first container (config order) that mounts it read-write, else of the first that mounts it,
/// else to 0:0. `users` gives each container's name, mounts and resolved (uid, gid).
pub fn plan_volumes<'a>(
    volumes: &[VolumeConfig],
    users: impl Iterator<Item = (&'a [MountConfig], (u32, u32))> + Clone,
) -> Vec<Volume> {
    volumes
        .iter()
        .map(|v| {
            let mounting = users.clone().filter(|(mounts, _)| mounts.iter().any(|m| m.volume == v.name));
            let rw = mounting
                .clone()
                .find(|(mounts, _)| mounts.iter().any(|m| m.volume == v.name && !m.read_only))
                .map(|(_, ids)| ids);
            let (uid, gid) = v.owner.or(rw).or_else(|| mounting.clone().next().map(|(_, ids)| ids)).unwrap_or((0, 0));
            Volume { name: v.name.clone(), uid, gid }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners() {
        assert_eq!(parse_owner("1000:100"), Some((1000, 100)));
        assert_eq!(parse_owner("0:0"), Some((0, 0)));
        for bad in ["1000", "65536:0", "a:b", ":1", "1:", "-1:0", "+1:0", "1:2:3"] {
            assert_eq!(parse_owner(bad), None, "{bad}");
        }
    }

    #[test]
    fn targets() {
        assert_eq!(target("/var//lib/db/"), Ok("/var/lib/db".to_string()));
        assert!(target("data").is_err());
        assert!(target("/").is_err());
        assert!(target("/a/../etc").is_err());
        assert!(target("/a/./b").is_err());
        assert!(target("/proc/x").is_err());
        assert!(target("/dev").is_err());
        assert_eq!(target("/devices"), Ok("/devices".to_string()));
        assert!(within("/a/b", "/a") && within("/a", "/a") && !within("/ab", "/a"));
    }

    fn errors(volumes: &str, mounts: &str) -> Vec<super::super::Diagnostic> {
        let src = format!(
            "version = 1\nname = \"v\"\n[kernel]\npackage.x86_64 = {{ path = \"k\", sha256 = \"{}\" }}\n\
             {volumes}\n[[container]]\nname = \"c\"\nimage = \"dir:r\"\nvolumes = {mounts}\n",
            "0".repeat(64)
        );
        match super::super::Config::parse(std::path::Path::new("v.toml"), src) {
            Ok(_) => vec![],
            Err(e) => e.0,
        }
    }

    fn one_error(volumes: &str, mounts: &str) -> (String, String) {
        let e = errors(volumes, mounts);
        assert_eq!(e.len(), 1, "{e:#?}");
        (e[0].key.clone(), e[0].message.clone())
    }

    #[test]
    fn configs() {
        let vol = "[[volume]]\nname = \"db\"\n";
        assert!(errors(vol, r#"["db:/var/lib/db", "db:/srv:ro", "db:/x:rw"]"#).is_empty());
        let (key, msg) = one_error(vol, r#"["nope:/data"]"#);
        assert_eq!(key, "container[0].volumes[0]");
        assert!(msg.contains("unknown volume `nope`") && msg.contains("declared: db"), "{msg}");
        let (key, msg) = one_error(&format!("{vol}{vol}"), r#"["db:/data"]"#);
        assert_eq!(key, "volume[1].name");
        assert!(msg.contains("duplicate volume name"), "{msg}");
        let (key, msg) = one_error(&format!("{vol}size = \"1GiB\"\n"), r#"["db:/data"]"#);
        assert_eq!(key, "volume[0].size");
        assert!(msg.contains("not supported yet"), "{msg}");
        let (key, _) = one_error(&format!("{vol}owner = \"1000\"\n"), r#"["db:/data"]"#);
        assert_eq!(key, "volume[0].owner");
        let (key, _) = one_error("[[volume]]\nname = \"Db.x\"\n", "[]");
        assert_eq!(key, "volume[0].name");
        for (mounts, needle) in [
            (r#"["db:data"]"#, "absolute"),
            (r#"["db:/a/../etc"]"#, "`..`"),
            (r#"["db:/"]"#, "cannot be `/`"),
            (r#"["db:/proc/x"]"#, "managed by keel"),
            (r#"["db:/data:rx"]"#, "unknown suffix `:rx`"),
            (r#"["db"]"#, "expected \"NAME:/path\""),
            (r#"["db:/data", "db:/data/"]"#, "mounted twice"),
            (r#"["db:/data", "db:/data/sub:ro"]"#, "nested"),
            (r#"["db:/tmp/x"]"#, "overlaps the tmpfs `/tmp`"),
        ] {
            let (key, msg) = one_error(vol, mounts);
            assert!(key.starts_with("container[0].volumes["), "{mounts}: {key}");
            assert!(msg.contains(needle), "{mounts}: {msg}");
        }
    }

    fn mount(volume: &str, ro: bool) -> MountConfig {
        MountConfig { volume: volume.into(), target: "/d".into(), read_only: ro, span: 0..0 }
    }

    #[test]
    fn owner_defaults_to_the_first_read_write_user() {
        let volumes = vec![
            VolumeConfig { name: "a".into(), owner: None },
            VolumeConfig { name: "b".into(), owner: Some((7, 8)) },
            VolumeConfig { name: "c".into(), owner: None },
            VolumeConfig { name: "unused".into(), owner: None },
        ];
        let reader = vec![mount("a", true), mount("c", true)];
        let writer = vec![mount("a", false), mount("b", false)];
        let users = [(reader.as_slice(), (5, 5)), (writer.as_slice(), (1000, 100))];
        let got = plan_volumes(&volumes, users.iter().map(|(m, ids)| (*m, *ids)));
        let owners: Vec<(&str, u32, u32)> = got.iter().map(|v| (v.name.as_str(), v.uid, v.gid)).collect();
        assert_eq!(owners, [("a", 1000, 100), ("b", 7, 8), ("c", 5, 5), ("unused", 0, 0)]);
    }
}
