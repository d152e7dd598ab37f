//! The module closure: what the plan asks for, plus every `depends=` (and `softdep` pre-loads
//! that are module names), minus built-ins, ordered so each module follows its dependencies.

use std::collections::BTreeSet;

use super::{Kernel, KernelError};

/// A module the plan asks for, and who asked (for error messages).
#[derive(Debug, Clone)]
pub struct Wanted {
    /// Module name (`-` or `_`).
    pub name: String,
    /// Who asked, e.g. `keel (disk)` or `kernel.modules`.
    pub by: String,
    /// If false, a module missing from the package is skipped instead of an error (for
    /// modules only some kernels have, like virtio_mmio).
    pub required: bool,
}

/// The load order for `wanted` and everything it depends on. Deterministic: dependencies are
/// visited in sorted order, the wanted list in the order given.
pub fn closure(kernel: &Kernel, wanted: &[Wanted]) -> Result<Vec<String>, KernelError> {
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    for w in wanted {
        let name = super::modinfo::normalise(&w.name);
        if kernel.builtin.contains(&name) || done.contains(&name) {
            continue;
        }
        if !kernel.modules.contains_key(&name) {
            if w.required {
                return Err(KernelError::MissingModule { name, needed_by: w.by.clone() });
            }
            continue;
        }
        visit(kernel, &name, &w.by, &mut Vec::new(), &mut done, &mut order)?;
    }
    Ok(order)
}

fn visit(
    kernel: &Kernel,
    name: &str,
    by: &str,
    stack: &mut Vec<String>,
    done: &mut BTreeSet<String>,
    order: &mut Vec<String>,
) -> Result<(), KernelError> {
    if done.contains(name) || kernel.builtin.contains(name) {
        return Ok(());
    }
    if stack.iter().any(|s| s == name) {
        return Err(KernelError::Cycle(name.to_string()));
    }
    let module = kernel
        .modules
        .get(name)
        .ok_or_else(|| KernelError::MissingModule { name: name.to_string(), needed_by: by.to_string() })?;
    stack.push(name.to_string());
    let mut deps: BTreeSet<&str> = module.info.depends.iter().map(String::as_str).collect();
    // Soft pre-dependencies that are real module names (not aliases) are loaded first too.
    deps.extend(module.info.softdep_pre.iter().map(String::as_str).filter(|d| kernel.modules.contains_key(*d)));
    for dep in deps {
        visit(kernel, dep, name, stack, done, order)?;
    }
    stack.pop();
    done.insert(name.to_string());
    order.push(name.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{modinfo::ModInfo, ModuleFile};
    use super::*;

    fn kernel(mods: &[(&str, &[&str])], builtin: &[&str]) -> Kernel {
        Kernel {
            release: "test".into(),
            image: Vec::new(),
            modules: mods
                .iter()
                .map(|(n, deps)| {
                    let info = ModInfo {
                        name: Some(n.to_string()),
                        depends: deps.iter().map(|d| d.to_string()).collect(),
                        softdep_pre: Vec::new(),
                    };
                    (n.to_string(), ModuleFile { path: format!("{n}.ko"), bytes: Vec::new(), info })
                })
                .collect(),
            builtin: builtin.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn want(names: &[&str]) -> Vec<Wanted> {
        names.iter().map(|n| Wanted { name: n.to_string(), by: "test".into(), required: true }).collect()
    }

    #[test]
    fn dependencies_come_first_and_builtins_are_skipped() {
        let k = kernel(
            &[
                ("ext4", &["mbcache", "jbd2", "crc16"]),
                ("jbd2", &[]),
                ("mbcache", &[]),
                ("virtio_blk", &["virtio"]),
                ("virtio", &[]),
            ],
            &["crc16"],
        );
        let order = closure(&k, &want(&["virtio_blk", "ext4"])).unwrap();
        assert_eq!(order, ["virtio", "virtio_blk", "jbd2", "mbcache", "ext4"]);
    }

    #[test]
    fn missing_module_names_who_needed_it() {
        let k = kernel(&[("a", &["b"])], &[]);
        let e = closure(&k, &want(&["a"])).unwrap_err();
        assert!(matches!(e, KernelError::MissingModule { ref name, ref needed_by } if name == "b" && needed_by == "a"));
    }

    #[test]
    fn optional_missing_is_skipped() {
        let k = kernel(&[], &[]);
        let w = [Wanted { name: "virtio_mmio".into(), by: "keel".into(), required: false }];
        assert!(closure(&k, &w).unwrap().is_empty());
    }

    #[test]
    fn cycles_are_errors() {
        let k = kernel(&[("a", &["b"]), ("b", &["a"])], &[]);
        assert!(matches!(closure(&k, &want(&["a"])), Err(KernelError::Cycle(_))));
    }
}
