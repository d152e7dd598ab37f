//! From a validated config to what the image will run: each container's image found and
//! checked, and its process (argv, env, cwd, user) decided. Shared by `keel check` and
//! `keel build`, so a config that checks clean builds.

use std::path::Path;

use keel_plan::Arch;

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

/// Every image flattened into its tree, and each container's plan entry.
#[derive(Debug)]
pub struct Materialized {
    /// One tree per distinct image, by image id.
    pub trees: Vec<(String, Tree)>,
    /// The plan's containers, in config order.
    pub containers: Vec<keel_plan::Container>,
    /// What flattening did, over all images.
    pub stats: image::FlattenStats,
}

/// Flatten every image (verifying every layer) and resolve each container's user against its
/// image. Shared by `keel check` and `keel build`: whatever a build would reject, check rejects.
pub fn materialize(
    config: &Config,
    resolved: &[Resolved],
    mut progress: impl FnMut(usize, &str),
) -> Result<Materialized, ConfigErrors> {
    let mut trees: Vec<(String, Tree)> = Vec::new();
    let mut containers = Vec::new();
    let mut stats = image::FlattenStats::default();
    for (i, r) in resolved.iter().enumerate() {
        progress(i, &r.config.name);
        if !trees.iter().any(|(id, _)| *id == r.image.id) {
            let (tree, s) = image::flatten(&r.image)
                .map_err(|e| ConfigErrors(vec![container_error(config, &r.config, "image", e.to_string())]))?;
            stats.layers += s.layers;
            stats.whiteouts += s.whiteouts;
            stats.devices_dropped += s.devices_dropped;
            stats.mount_points_replaced += s.mount_points_replaced;
            trees.push((r.image.id.clone(), tree));
        }
        let (uid, gid) = match trees.iter_mut().find(|(id, _)| *id == r.image.id) {
            Some((_, t)) => resolve_user(r.user.as_deref(), t)
                .map_err(|e| ConfigErrors(vec![container_error(config, &r.config, "user", e)]))?,
            None => (0, 0),
        };
        containers.push(keel_plan::Container {
            name: r.config.name.clone(),
            rootfs: r.image.id.clone(),
            args: r.args.clone(),
            env: r.env.clone(),
            cwd: r.cwd.clone(),
            hostname: r.config.hostname.clone(),
            uid,
            gid,
            id_base: 0,
            limits: keel_plan::Limits::default(),
            capabilities: vec![],
            seccomp: None,
            read_only: false,
            tmpfs: vec!["/tmp".into(), "/run".into()],
            nofile: keel_plan::Rlimit { soft: 1024, hard: 524_288 },
        });
    }
    Ok(Materialized { trees, containers, stats })
}

/// A diagnostic for a container problem found while building.
pub fn container_error(config: &Config, c: &ContainerConfig, field: &str, message: String) -> Diagnostic {
    let span = match field {
        "image" => c.image_span.clone(),
        "user" => c.user.as_ref().map(|(_, s)| s.clone()).unwrap_or(c.span.clone()),
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
}
