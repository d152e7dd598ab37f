//! From a validated config to what the image will run: each container's image found and
//! checked, and its process (argv, env, cwd, user) decided. Shared by `keel check` and
//! `keel build`, so a config that checks clean builds.

use std::path::Path;

use keel_plan::Arch;

use crate::config::isolation::Seccomp;
use crate::config::{Config, ConfigErrors, ContainerConfig, Diagnostic};
use crate::image::{self, tree::Tree, Image, ImageRef};

/// The PATH a container gets when neither its image nor its config sets one.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A container ready to plan.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The config entry.
    pub config: ContainerConfig,
    /// Its image.
    pub image: Image,
    /// argv.
    pub args: Vec<String>,
    /// Environment, `K=V`, image first then config overrides, in a stable order.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// The user as asked (config, else image), resolved against the tree at build time.
    pub user: Option<String>,
}

/// Resolve every container for `arch`, reporting every problem with its location.
pub fn containers(config: &Config, arch: Arch) -> Result<Vec<Resolved>, ConfigErrors> {
    let loc = config.locator();
    let base = config.path.parent().unwrap_or(Path::new("."));
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for c in &config.containers {
        let image = ImageRef::parse(&c.image, base).and_then(|r| image::inspect(&r, arch));
        let image = match image {
            Ok(i) => i,
            Err(e) => {
                errors.push(loc.at(&c.image_span, c.key("image"), e.to_string()));
                continue;
            }
        };
        let d = &image.defaults;
        let args = match &c.command {
            Some(cmd) => cmd.clone(),
            None => d.entrypoint.iter().chain(d.cmd.iter()).cloned().collect(),
        };
        if args.is_empty() {
            errors.push(loc.at(
                &c.span,
                c.key("command"),
                format!("no `command` and the image `{}` has no entrypoint or cmd", c.image),
            ));
            continue;
        }
        let env = merge_env(&d.env, c);
        let cwd = c.workdir.clone().or_else(|| d.workdir.clone()).unwrap_or_else(|| "/".into());
        if let Some(why) = keel_plan::workdir_problem(&cwd).filter(|_| c.workdir.is_none()) {
            errors.push(loc.at(
                &c.span,
                c.key("image"),
                format!("the image `{}` has the working directory `{cwd}`: {why} (set `workdir`)", c.image),
            ));
            continue;
        }
        let user = c.user.as_ref().map(|(u, _)| u.clone()).or_else(|| d.user.clone());
        if let Some((u, span)) = &c.user {
            if let Err(e) = parse_user(u) {
                errors.push(loc.at(span, c.key("user"), e));
                continue;
            }
        }
        out.push(Resolved { config: c.clone(), image, args, env, cwd, user });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(errors))
    }
}

fn merge_env(image_env: &[String], c: &ContainerConfig) -> Vec<String> {
    fn set(env: &mut Vec<(String, String)>, k: &str, v: &str) {
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(e) => e.1 = v.to_string(),
            None => env.push((k.to_string(), v.to_string())),
        }
    }
    let mut env: Vec<(String, String)> = Vec::new();
    for kv in image_env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(&mut env, k, v);
    }
    for (k, v) in &c.env {
        set(&mut env, k, v);
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        let (k, v) = DEFAULT_PATH.split_once('=').unwrap_or(("PATH", "/bin"));
        set(&mut env, k, v);
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Split a `user` value into user and optional group (each a number or a name).
pub fn parse_user(s: &str) -> Result<(String, Option<String>), String> {
    let (user, group) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let ok =
        |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if !ok(user) || group.is_some_and(|g| !ok(g)) {
        return Err(format!("`{s}` is not a user (expected uid[:gid] or name[:group])"));
    }
    Ok((user.to_string(), group.map(str::to_string)))
}

/// Resolve a user against the image tree's /etc/passwd and /etc/group.
pub fn resolve_user(spec: Option<&str>, tree: &mut Tree) -> Result<(u32, u32), String> {
    let Some(spec) = spec else { return Ok((0, 0)) };
    let (user, group) = parse_user(spec)?;
    let passwd = read_text(tree, "etc/passwd");
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, lookup(&passwd, 2, &user).and_then(|f| f.get(3).and_then(|g| g.parse().ok())).or(Some(uid))),
        Err(_) => {
            let f =
                lookup(&passwd, 0, &user).ok_or_else(|| format!("user `{user}` is not in the image's /etc/passwd"))?;
            let uid =
                f.get(2).and_then(|u| u.parse().ok()).ok_or_else(|| format!("bad /etc/passwd entry for `{user}`"))?;
            (uid, f.get(3).and_then(|g| g.parse().ok()))
        }
    };
    let gid = match group {
        None => primary_gid.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = read_text(tree, "etc/group");
                let f =
                    lookup(&groups, 0, &g).ok_or_else(|| format!("group `{g}` is not in the image's /etc/group"))?;
                f.get(2).and_then(|x| x.parse().ok()).ok_or_else(|| format!("bad /etc/group entry for `{g}`"))?
            }
        },
    };
    Ok((uid, gid))
}

fn read_text(tree: &mut Tree, path: &str) -> String {
    match tree.lookup(path) {
        Ok(image::tree::Node { kind: image::tree::Kind::File(d), .. }) => String::from_utf8_lossy(d).into_owned(),
        _ => String::new(),
    }
}

fn lookup(db: &str, field: usize, value: &str) -> Option<Vec<String>> {
    db.lines()
        .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
        .find(|f| f.get(field).map(String::as_str) == Some(value))
}

/// One container's root tree as stored on keel-images: the image's tree plus the container's
/// mount points, stored with owners shifted by `id_base`.
#[derive(Debug)]
pub struct Rootfs {
    /// Directory name on keel-images (the plan's `rootfs`): the container's name.
    pub dir: String,
    /// The tree.
    pub tree: Tree,
    /// Host id of the container's uid and gid 0.
    pub id_base: u32,
}

/// Every container's root tree, and its plan entry.
#[derive(Debug)]
pub struct Materialized {
    /// One tree per container, in config order.
    pub trees: Vec<Rootfs>,
    /// Distinct images flattened.
    pub images: usize,
    /// The plan's containers, in config order.
    pub containers: Vec<keel_plan::Container>,
    /// What flattening did, over all images.
    pub stats: image::FlattenStats,
    /// Files whose owner was outside the container's id range and became 65534 (`nobody`).
    pub owners_clamped: u64,
    /// Compiled seccomp filters: (absolute path in the initramfs, file bytes), each path once.
    pub seccomp: Vec<(String, Vec<u8>)>,
    /// The plan's volumes, each with its owner settled.
    pub volumes: Vec<keel_plan::Volume>,
    /// The plan's uplink and firewall.
    pub net: keel_plan::net::Net,
    /// Each container's image as the config names it and the digests of its content, in config
    /// order: what the provenance record lists.
    pub sources: Vec<ImageSource>,
}

/// One container's image, for the provenance record.
#[derive(Debug, Clone)]
pub struct ImageSource {
    /// The container.
    pub container: String,
    /// The image reference as written in the config.
    pub reference: String,
    /// `(what, digest)` pairs: see [`image::Image::digests`].
    pub digests: Vec<(&'static str, String)>,
    /// The installed Debian packages its `/var/lib/dpkg/status` lists (none without one), for
    /// the SBOM.
    pub packages: Vec<image::dpkg::Package>,
}

/// Where an image's Debian package database is.
pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// The installed packages of `tree`'s dpkg status file; none if it has no such regular file.
fn dpkg_packages(tree: &mut Tree) -> Result<Vec<image::dpkg::Package>, String> {
    match tree.lookup(DPKG_STATUS) {
        Ok(image::tree::Node { kind: image::tree::Kind::File(bytes), .. }) => {
            image::dpkg::installed(bytes).map_err(|e| format!("{DPKG_STATUS}: {e}"))
        }
        _ => Ok(Vec::new()),
    }
}

/// Where the seccomp filter of a container lives in the initramfs.
pub fn seccomp_path(c: &ContainerConfig) -> Option<String> {
    match &c.isolation.seccomp {
        Seccomp::Default => Some(format!("{}/default", keel_plan::SECCOMP_DIR)),
        Seccomp::Unconfined => None,
        // Never `default`: a container may be named that.
        Seccomp::Profile { .. } => Some(format!("{}/profile-{}", keel_plan::SECCOMP_DIR, c.name)),
    }
}

/// Flatten every image (verifying every layer), make each container's tree (its mount points
/// added, owners checked against its id range) and resolve its user. Shared by `keel check` and
/// `keel build`: whatever a build would reject, check rejects.
pub fn materialize(
    config: &Config,
    arch: Arch,
    resolved: &[Resolved],
    mut progress: impl FnMut(usize, &str),
) -> Result<Materialized, ConfigErrors> {
    let mut seccomp: Vec<(String, Vec<u8>)> = Vec::new();
    if resolved.len() > ID_SLOTS as usize {
        let msg = format!("at most {ID_SLOTS} containers (one user-namespace id range each)");
        return Err(ConfigErrors(vec![config.locator().at(&(0..0), "container", msg)]));
    }
    let mut images: Vec<(String, Tree, Vec<image::dpkg::Package>)> = Vec::new();
    let mut packages = Vec::new();
    let mut trees = Vec::new();
    let mut containers = Vec::new();
    let mut stats = image::FlattenStats::default();
    let mut owners_clamped = 0;
    // Each container's (uid, gid), for the volumes' default owners.
    let mut ids: Vec<(u32, u32)> = Vec::new();
    let bases = id_bases(resolved.iter().map(|r| r.config.name.as_str()));
    let netplan =
        crate::netplan::plan(config).map_err(|e| ConfigErrors(vec![config.locator().at(&(0..0), "network", e)]))?;
    // Each container's problems are reported, not only the first container's.
    let mut errors = Vec::new();
    for ((i, r), id_base) in resolved.iter().enumerate().zip(bases) {
        progress(i, &r.config.name);
        let mut one = || -> Result<(), ConfigErrors> {
            let fail = |field: &str, e: String| ConfigErrors(vec![container_error(config, &r.config, field, e)]);
            let (mut tree, debs) = match images.iter().find(|(id, ..)| *id == r.image.id) {
                Some((_, t, p)) => (t.clone(), p.clone()),
                None => {
                    let (mut tree, s) = image::flatten(&r.image).map_err(|e| fail("image", e.to_string()))?;
                    let debs = dpkg_packages(&mut tree).map_err(|e| fail("image", e))?;
                    stats.layers += s.layers;
                    stats.whiteouts += s.whiteouts;
                    stats.devices_dropped += s.devices_dropped;
                    stats.mount_points_replaced += s.mount_points_replaced;
                    images.push((r.image.id.clone(), tree.clone(), debs.clone()));
                    (tree, debs)
                }
            };
            let (uid, gid) = resolve_user(r.user.as_deref(), &mut tree).map_err(|e| fail("user", e))?;
            if uid >= keel_plan::ID_RANGE || gid >= keel_plan::ID_RANGE {
                return Err(fail(
                    "user",
                    format!("{uid}:{gid} is outside the container's id range 0-{}", keel_plan::ID_RANGE - 1),
                ));
            }
            for path in &r.config.isolation.tmpfs {
                mount_point(&mut tree, "tmpfs", path).map_err(|e| fail("tmpfs", e))?;
            }
            // Volume targets too: the root is read-only, so a missing one is added to the tree.
            for (j, m) in r.config.volumes.iter().enumerate() {
                mount_point(&mut tree, &format!("volume `{}` target", m.volume), &m.target).map_err(|e| {
                    ConfigErrors(vec![config.locator().at(&m.span, r.config.key(&format!("volumes[{j}]")), e)])
                })?;
            }
            let cnet = netplan.containers.get(i).cloned().flatten();
            if let (Some(hosts), Some(me)) = (netplan.hosts.get(i).cloned().flatten(), &cnet) {
                let egress = netplan.net.firewall.egress.iter().any(|s| s.contains(me.default_src));
                let resolv = crate::netplan::resolv_conf(&netplan.net, egress);
                name_files(&mut tree, hosts, resolv).map_err(|e| fail("networks", e))?;
            }
            ids.push((uid, gid));
            owners_clamped += clamp_owners(&mut tree.root);
            let iso = &r.config.isolation;
            let filter = seccomp_path(&r.config);
            if let Some(path) = &filter {
                if !seccomp.iter().any(|(p, _)| p == path) {
                    let profile = match &iso.seccomp {
                        Seccomp::Profile { path, .. } => crate::seccomp::Profile::File(path.clone()),
                        _ => crate::seccomp::Profile::Default,
                    };
                    let bytes = crate::seccomp::compile(&profile, arch).map_err(|e| fail("seccomp", e.to_string()))?;
                    seccomp.push((path.clone(), bytes));
                }
            }
            containers.push(keel_plan::Container {
                name: r.config.name.clone(),
                rootfs: r.config.name.clone(),
                args: r.args.clone(),
                env: r.env.clone(),
                cwd: r.cwd.clone(),
                hostname: r.config.hostname.clone(),
                uid,
                gid,
                id_base,
                limits: iso.limits,
                capabilities: iso.capabilities.clone(),
                seccomp: filter,
                read_only: iso.read_only,
                tmpfs: iso.tmpfs.clone(),
                nofile: iso.nofile,
                restart: r.config.restart,
                restart_delay: r.config.restart_delay,
                depends_on: r.config.depends_on.iter().map(|(n, _)| n.clone()).collect(),
                health: r.config.health.clone(),
                volumes: r.config.volumes.iter().map(|m| m.plan()).collect(),
                net: cnet,
            });
            trees.push(Rootfs { dir: r.config.name.clone(), tree, id_base });
            packages.push(debs);
            Ok(())
        };
        if let Err(e) = one() {
            errors.extend(e.0);
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let users = resolved.iter().map(|r| r.config.volumes.as_slice()).zip(ids.iter().copied());
    let volumes = crate::config::volumes::plan_volumes(&config.volumes, users);
    Ok(Materialized {
        trees,
        images: images.len(),
        containers,
        stats,
        owners_clamped,
        seccomp,
        volumes,
        net: netplan.net,
        sources: resolved
            .iter()
            .zip(packages)
            .map(|(r, packages)| ImageSource {
                container: r.config.name.clone(),
                reference: r.config.image.clone(),
                digests: r.image.digests(),
                packages,
            })
            .collect(),
    })
}

/// Make `path` a directory in `tree` that the runtime can mount on: every component a real
/// directory (created if missing), none a symlink, since the kernel would follow a symlink in a
/// mount target before the container's root is in place. `what` names the mount in errors.
fn mount_point(tree: &mut Tree, what: &str, path: &str) -> Result<(), String> {
    let comps = image::tree::components(path).map_err(|e| format!("{what} `{path}`: {e}"))?;
    let real = tree
        .resolve_dir(&comps, Some(image::tree::Meta::root(0o755)))
        .map_err(|e| format!("{what} `{path}` cannot be a mount point in the image: {e}"))?;
    if real != comps {
        return Err(format!(
            "{what} `{path}` goes through a symlink in the image (to /{}): list the real directory instead",
            real.join("/")
        ));
    }
    Ok(())
}

/// Write a networked container's name files: `/etc/hosts` (replacing the image's), `/etc/resolv.conf`
/// when its DNS servers are known, and `/etc/nsswitch.conf` when the image has none (glibc would
/// otherwise ask DNS before the hosts file).
fn name_files(tree: &mut Tree, hosts: String, resolv: Option<String>) -> Result<(), String> {
    use image::tree::{Kind, Meta, Node};
    let etc = tree
        .resolve_dir(&["etc".to_string()], Some(Meta::root(0o755)))
        .map_err(|e| format!("/etc cannot hold the hosts file: {e}"))?;
    let dir = tree.dir_mut(&etc).map_err(|e| format!("/etc: {e}"))?;
    let file =
        |text: String| Node { meta: Meta::root(0o644), kind: Kind::File(std::sync::Arc::new(text.into_bytes())) };
    dir.insert("hosts".into(), file(hosts));
    if let Some(r) = resolv {
        dir.insert("resolv.conf".into(), file(r));
    }
    dir.entry("nsswitch.conf".into()).or_insert_with(|| file(crate::netplan::NSSWITCH.to_string()));
    Ok(())
}

/// Owners outside the container's id range would land in another container's range once
/// shifted: make them `nobody` (65534). Returns how many nodes changed.
fn clamp_owners(node: &mut image::tree::Node) -> u64 {
    const NOBODY: u32 = 65_534;
    let mut n = 0;
    if node.meta.uid >= keel_plan::ID_RANGE || node.meta.gid >= keel_plan::ID_RANGE {
        if node.meta.uid >= keel_plan::ID_RANGE {
            node.meta.uid = NOBODY;
        }
        if node.meta.gid >= keel_plan::ID_RANGE {
            node.meta.gid = NOBODY;
        }
        n += 1;
    }
    if let image::tree::Kind::Dir(children) = &mut node.kind {
        n += children.values_mut().map(clamp_owners).sum::<u64>();
    }
    n
}

/// Number of id ranges keel hands out: bases are `slot * ID_RANGE` for slot 1..=SLOTS, all below
/// 2^31 so no host id overflows.
pub const ID_SLOTS: u32 = 32_767;

/// Each container's host id base: a slot picked from a hash of its name (so a container keeps
/// its range when others are added, removed or reordered, and files it leaves on volumes stay
/// its own), moving to the next free slot on a collision.
pub fn id_bases<'a>(names: impl Iterator<Item = &'a str>) -> Vec<u32> {
    let mut used = std::collections::BTreeSet::new();
    names
        .map(|name| {
            // FNV-1a: stable across Rust versions, unlike the std hasher.
            let h = name.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
            let mut slot = h % ID_SLOTS;
            while !used.insert(slot) {
                slot = (slot + 1) % ID_SLOTS;
            }
            (slot + 1) * keel_plan::ID_RANGE
        })
        .collect()
}

/// A diagnostic for a container problem found while building.
pub fn container_error(config: &Config, c: &ContainerConfig, field: &str, message: String) -> Diagnostic {
    let span = match field {
        "image" => c.image_span.clone(),
        "user" => c.user.as_ref().map(|(_, s)| s.clone()).unwrap_or(c.span.clone()),
        "seccomp" => match &c.isolation.seccomp {
            Seccomp::Profile { span, .. } => span.clone(),
            _ => c.span.clone(),
        },
        _ => c.span.clone(),
    };
    config.locator().at(&span, c.key(field), message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tree::{Kind, Meta, Node};
    use std::sync::Arc;

    fn tree_with(passwd: &str, group: &str) -> Tree {
        let mut t = Tree::default();
        let etc = t.resolve_dir(&["etc".into()], Some(Meta::root(0o755))).unwrap();
        let d = t.dir_mut(&etc).unwrap();
        d.insert(
            "passwd".into(),
            Node { meta: Meta::root(0o644), kind: Kind::File(Arc::new(passwd.as_bytes().to_vec())) },
        );
        d.insert(
            "group".into(),
            Node { meta: Meta::root(0o644), kind: Kind::File(Arc::new(group.as_bytes().to_vec())) },
        );
        t
    }

    #[test]
    fn users() {
        let mut t =
            tree_with("root:x:0:0::/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n", "root:x:0:\nstaff:x:50:\n");
        assert_eq!(resolve_user(None, &mut t), Ok((0, 0)));
        assert_eq!(resolve_user(Some("www"), &mut t), Ok((33, 34)));
        assert_eq!(resolve_user(Some("www:staff"), &mut t), Ok((33, 50)));
        assert_eq!(resolve_user(Some("1000:1000"), &mut t), Ok((1000, 1000)));
        assert_eq!(resolve_user(Some("33"), &mut t), Ok((33, 34)));
        assert!(resolve_user(Some("nobody"), &mut t).is_err());
        assert!(parse_user("a b").is_err());
    }

    #[test]
    fn id_bases_are_distinct_stable_and_in_range() {
        let names: Vec<String> = (0..2000).map(|i| format!("c{i}")).collect();
        let bases = id_bases(names.iter().map(String::as_str));
        let set: std::collections::BTreeSet<u32> = bases.iter().copied().collect();
        assert_eq!(set.len(), bases.len(), "ranges overlap");
        assert!(bases.iter().all(|b| *b >= keel_plan::ID_RANGE && b % keel_plan::ID_RANGE == 0));
        assert!(bases.iter().all(|b| b.checked_add(keel_plan::ID_RANGE).is_some_and(|e| e <= 1 << 31)));
        // A container keeps its range when another one is added before it.
        let a = id_bases(["web"].into_iter());
        let b = id_bases(["db", "web"].into_iter());
        assert_eq!(a[0], b[1]);
        // A collision moves to the next slot deterministically.
        let same = id_bases(["x", "x"].into_iter());
        assert_eq!(same[1], same[0] + keel_plan::ID_RANGE);
    }

    #[test]
    fn tmpfs_mount_points_are_real_directories() {
        let mut t = tree_with("", "");
        t.dir_mut(&[])
            .unwrap()
            .insert("link".into(), Node { meta: Meta::root(0o777), kind: Kind::Symlink("/etc".into()) });
        assert!(mount_point(&mut t, "tmpfs", "/var/cache/app").is_ok());
        assert!(t.lookup("var/cache/app").is_ok());
        let e = mount_point(&mut t, "tmpfs", "/link/x").unwrap_err();
        assert!(e.contains("symlink"), "{e}");
        let e = mount_point(&mut t, "tmpfs", "/etc/passwd").unwrap_err();
        assert!(e.contains("mount point"), "{e}");
    }

    #[test]
    fn owners_outside_the_range_become_nobody() {
        let mut t = tree_with("", "");
        t.dir_mut(&[]).unwrap().insert(
            "big".into(),
            Node { meta: Meta { mode: 0o644, uid: 70_000, gid: 5, mtime: 0 }, kind: Kind::File(Arc::new(vec![])) },
        );
        assert_eq!(clamp_owners(&mut t.root), 1);
        let n = t.lookup("big").unwrap();
        assert_eq!((n.meta.uid, n.meta.gid), (65_534, 5));
    }
}

#[cfg(test)]
mod seccomp_paths {
    use super::*;

    #[test]
    fn a_container_named_default_cannot_take_the_default_filter_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.toml"), "syscalls = [\"execve\"]\n").unwrap();
        let src = "version = 1\nname = \"x\"\n[kernel]\npackage.x86_64 = { path = \"k\", sha256 = \"\
                   0000000000000000000000000000000000000000000000000000000000000000\" }\n\
                   [[container]]\nname = \"default\"\nimage = \"dir:r\"\nseccomp = \"p.toml\"\n\
                   [[container]]\nname = \"web\"\nimage = \"dir:r\"\n";
        let config = Config::parse(&dir.path().join("c.toml"), src.to_string()).unwrap();
        let own = seccomp_path(&config.containers[0]).unwrap();
        let default = seccomp_path(&config.containers[1]).unwrap();
        assert_ne!(own, default);
        assert_eq!(default, format!("{}/default", keel_plan::SECCOMP_DIR));
    }
}
