//! Seccomp profiles: keel's default allowlist (`builder/seccomp/default.toml`, whose header
//! documents the format) and users' profile files in the same format, validated and compiled to
//! classic BPF for one architecture with seccompiler.
//!
//! A compiled profile is one or two programs in [`keel_plan::seccomp`]'s file format, installed in
//! order by the runtime after `no_new_privs`:
//!
//! 1. the allowlist: a listed syscall (or one whose arguments match one of its rules) is allowed,
//!    anything else fails with EPERM;
//! 2. if the profile has `enosys` names, a filter failing exactly those with ENOSYS. The kernel
//!    runs every program and, between two ERRNO results, keeps the later program's errno, so these
//!    calls fail with ENOSYS although the allowlist denies them with EPERM.
//!
//! Each program first checks the architecture: a syscall made under another ABI of the machine
//! (32-bit x86 or arm) kills the process. Output is deterministic: programs list syscalls by
//! number, rules in file order.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use keel_plan::seccomp::{encode, Insn, MAX_INSNS};
use keel_plan::Arch;
use serde::Deserialize;
use serde_json::{json, Value};
use toml::Spanned;

use crate::config::{Diagnostic, Locator};

/// The default profile, as shipped in the builder.
pub const DEFAULT_PROFILE: &str = include_str!("../seccomp/default.toml");

/// How the default profile is named in messages.
pub const DEFAULT_PROFILE_PATH: &str = "builder/seccomp/default.toml";

/// The errno of a denied syscall (the same number on x86_64 and aarch64).
pub const EPERM: u32 = 1;

/// The errno of a syscall listed in `enosys` (the same number on x86_64 and aarch64).
pub const ENOSYS: u32 = 38;

/// Syscalls that every profile must allow: the runtime installs the filter before it executes
/// the container's program.
const REQUIRED: [&str; 1] = ["execve"];

/// Which profile to compile. "unconfined" (no filter) is the caller's business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// keel's default profile ([`DEFAULT_PROFILE`]).
    Default,
    /// A profile file in keel's format.
    File(PathBuf),
}

/// A profile that cannot be read, is invalid, or does not compile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile file cannot be read.
    #[error("cannot read seccomp profile {}", path.display())]
    Read {
        /// The profile file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The profile is not valid TOML or breaks a rule of the format; one diagnostic per problem.
    #[error("{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// Every problem found, located at `file:line:column` with its key.
        problems: Vec<Diagnostic>,
    },
    /// seccompiler refused the profile (e.g. too many instructions).
    #[error("seccomp profile {origin}: cannot compile for {arch}: {message}")]
    Compile {
        /// The profile (file path, or [`DEFAULT_PROFILE_PATH`]).
        origin: String,
        /// The target architecture.
        arch: Arch,
        /// seccompiler's message.
        message: String,
    },
}

/// A validated profile, for every architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileData {
    /// Where it came from, for messages.
    pub origin: String,
    /// Allowed on every architecture, whatever the arguments.
    pub syscalls: Vec<String>,
    /// Allowed on x86_64 only.
    pub x86_64: Vec<String>,
    /// Allowed on aarch64 only.
    pub aarch64: Vec<String>,
    /// Fail with ENOSYS instead of EPERM.
    pub enosys: Vec<String>,
    /// Denied on purpose (documentation; checked not to be allowed).
    pub denied: Vec<String>,
    /// Argument-conditioned allow rules, in file order.
    pub rules: Vec<Rule>,
}

/// One allowed argument pattern of one syscall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The syscall.
    pub syscall: String,
    /// The only architecture it applies to, or every one.
    pub arch: Option<Arch>,
    /// All must hold.
    pub args: Vec<Condition>,
}

/// A comparison of one syscall argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condition {
    /// Argument index, 0 to 5.
    pub arg: u8,
    /// The comparison.
    pub op: CmpOp,
    /// The value compared with (already masked to `width`).
    pub value: u64,
    /// How many low bits of the argument are compared.
    pub width: Width,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `arg == value`.
    Eq,
    /// `arg != value`.
    Ne,
    /// `arg < value` (unsigned).
    Lt,
    /// `arg <= value` (unsigned).
    Le,
    /// `arg > value` (unsigned).
    Gt,
    /// `arg >= value` (unsigned).
    Ge,
    /// `arg & mask == value`.
    MaskedEq(u64),
}

/// Width of a compared argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// The low 32 bits (int, unsigned int and flag arguments).
    Bits32,
    /// All 64 bits.
    Bits64,
}

impl ProfileData {
    /// The default profile.
    pub fn default_profile() -> Result<ProfileData, SeccompError> {
        ProfileData::parse(DEFAULT_PROFILE, Path::new(DEFAULT_PROFILE_PATH))
    }

    /// Parse and validate a profile's text; `file` names it in messages.
    pub fn parse(source: &str, file: &Path) -> Result<ProfileData, SeccompError> {
        let loc = Locator::new(file, source);
        let raw: RawProfile =
            toml::from_str(source).map_err(|e| SeccompError::Invalid { problems: vec![loc.from_toml(&e)] })?;
        let mut v = Validation { loc: &loc, problems: Vec::new() };
        let data = v.profile(&raw, file.display().to_string());
        if v.problems.is_empty() {
            Ok(data)
        } else {
            Err(SeccompError::Invalid { problems: v.problems })
        }
    }

    /// The syscalls allowed unconditionally on `arch`.
    pub fn allowed(&self, arch: Arch) -> impl Iterator<Item = &str> {
        let extra = match arch {
            Arch::X86_64 => &self.x86_64,
            Arch::Aarch64 => &self.aarch64,
        };
        self.syscalls.iter().chain(extra).map(String::as_str)
    }

    /// The rules that apply on `arch`.
    pub fn rules(&self, arch: Arch) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |r| r.arch.is_none_or(|a| a == arch))
    }
}

/// Read and validate a user's profile file.
pub fn load_profile(path: &Path) -> Result<ProfileData, SeccompError> {
    let source =
        std::fs::read_to_string(path).map_err(|source| SeccompError::Read { path: path.to_path_buf(), source })?;
    ProfileData::parse(&source, path)
}

/// Compile `profile` for `arch` into [`keel_plan::seccomp`]'s file format.
pub fn compile(profile: &Profile, arch: Arch) -> Result<Vec<u8>, SeccompError> {
    let data = match profile {
        Profile::Default => ProfileData::default_profile()?,
        Profile::File(path) => load_profile(path)?,
    };
    Ok(encode(&compile_programs(&data, arch)?))
}

/// Compile a profile for `arch` into its programs, in installation order.
pub fn compile_programs(data: &ProfileData, arch: Arch) -> Result<Vec<Vec<Insn>>, SeccompError> {
    let fail = |message: String| SeccompError::Compile { origin: data.origin.clone(), arch, message };
    let mut entries: Vec<Value> = data.allowed(arch).map(|name| json!({ "syscall": name })).collect();
    entries.extend(data.rules(arch).map(rule_json));
    let mut programs = vec![program(arch, json!({ "errno": EPERM }), json!("allow"), entries).map_err(fail)?];
    if !data.enosys.is_empty() {
        let entries = data.enosys.iter().map(|name| json!({ "syscall": name })).collect();
        programs.push(program(arch, json!("allow"), json!({ "errno": ENOSYS }), entries).map_err(fail)?);
    }
    Ok(programs)
}

/// One seccompiler filter: `entries` get `on_match`, every other syscall `on_mismatch`.
fn program(arch: Arch, on_mismatch: Value, on_match: Value, entries: Vec<Value>) -> Result<Vec<Insn>, String> {
    let filter = json!({ "p": { "mismatch_action": on_mismatch, "match_action": on_match, "filter": entries } });
    let mut map =
        seccompiler::compile_from_json(filter.to_string().as_bytes(), target(arch)).map_err(|e| e.to_string())?;
    let bpf = map.remove("p").ok_or("seccompiler returned no program")?;
    if bpf.len() > MAX_INSNS {
        return Err(format!("{} instructions, more than the kernel's {MAX_INSNS}", bpf.len()));
    }
    Ok(bpf.into_iter().map(|i| Insn { code: i.code, jt: i.jt, jf: i.jf, k: i.k }).collect())
}

fn rule_json(rule: &Rule) -> Value {
    let args: Vec<Value> = rule
        .args
        .iter()
        .map(|c| {
            let op = match c.op {
                CmpOp::Eq => json!("eq"),
                CmpOp::Ne => json!("ne"),
                CmpOp::Lt => json!("lt"),
                CmpOp::Le => json!("le"),
                CmpOp::Gt => json!("gt"),
                CmpOp::Ge => json!("ge"),
                CmpOp::MaskedEq(mask) => json!({ "masked_eq": mask }),
            };
            let width = match c.width {
                Width::Bits32 => "dword",
                Width::Bits64 => "qword",
            };
            json!({ "index": c.arg, "type": width, "op": op, "val": c.value })
        })
        .collect();
    json!({ "syscall": rule.syscall, "args": args })
}

fn target(arch: Arch) -> seccompiler::TargetArch {
    match arch {
        Arch::X86_64 => seccompiler::TargetArch::x86_64,
        Arch::Aarch64 => seccompiler::TargetArch::aarch64,
    }
}

/// The names among `names` that are not syscalls on `arch`. seccompiler resolves names only
/// while compiling, so this compiles them as one filter and bisects on failure: one compile when
/// every name is known.
fn unknown_names<'a>(arch: Arch, names: &[&'a str]) -> Vec<&'a str> {
    if names.is_empty() {
        return Vec::new();
    }
    let entries = names.iter().map(|n| json!({ "syscall": n })).collect();
    if program(arch, json!({ "errno": EPERM }), json!("allow"), entries).is_ok() {
        return Vec::new();
    }
    if names.len() == 1 {
        return names.to_vec();
    }
    let (a, b) = names.split_at(names.len() / 2);
    let mut out = unknown_names(arch, a);
    out.extend(unknown_names(arch, b));
    out
}

// ---- the file's schema

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    syscalls: Vec<Spanned<String>>,
    #[serde(default)]
    enosys: Vec<Spanned<String>>,
    #[serde(default)]
    denied: Vec<Spanned<String>>,
    #[serde(default)]
    x86_64: RawArch,
    #[serde(default)]
    aarch64: RawArch,
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawArch {
    #[serde(default)]
    syscalls: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    syscall: Spanned<String>,
    arch: Option<Spanned<String>>,
    args: Spanned<Vec<RawCondition>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    arg: Spanned<i64>,
    op: Spanned<String>,
    value: Spanned<i64>,
    mask: Option<Spanned<i64>>,
    width: Option<Spanned<i64>>,
}

// ---- validation

/// What a name in the profile does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Allow,
    Rule,
    Enosys,
    Denied,
}

/// One syscall name as written in the profile.
struct Entry<'a> {
    name: &'a str,
    span: Range<usize>,
    key: String,
    kind: Kind,
    /// The architectures it applies to.
    arches: Vec<Arch>,
}

struct Validation<'a> {
    loc: &'a Locator<'a>,
    problems: Vec<Diagnostic>,
}

impl Validation<'_> {
    fn err(&mut self, span: &Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        let d = self.loc.at(span, key, message);
        if !self.problems.contains(&d) {
            self.problems.push(d);
        }
    }

    fn profile(&mut self, raw: &RawProfile, origin: String) -> ProfileData {
        let rules: Vec<Rule> = raw.rule.iter().enumerate().map(|(i, r)| self.rule(i, r)).collect();
        let entries = self.entries(raw, &rules);
        self.check_names(&entries);
        self.check_conflicts(&entries);
        self.check_required(raw, &entries);
        let names = |list: &[Spanned<String>]| list.iter().map(|s| s.get_ref().clone()).collect::<Vec<_>>();
        ProfileData {
            origin,
            syscalls: names(&raw.syscalls),
            x86_64: names(&raw.x86_64.syscalls),
            aarch64: names(&raw.aarch64.syscalls),
            enosys: names(&raw.enosys),
            denied: names(&raw.denied),
            rules,
        }
    }

    fn entries<'r>(&self, raw: &'r RawProfile, rules: &[Rule]) -> Vec<Entry<'r>> {
        let mut out = Vec::new();
        let mut list = |items: &'r [Spanned<String>], key: &str, kind: Kind, arches: &[Arch]| {
            for s in items {
                out.push(Entry {
                    name: s.get_ref(),
                    span: s.span(),
                    key: key.to_string(),
                    kind,
                    arches: arches.to_vec(),
                });
            }
        };
        list(&raw.syscalls, "syscalls", Kind::Allow, &Arch::ALL);
        list(&raw.x86_64.syscalls, "x86_64.syscalls", Kind::Allow, &[Arch::X86_64]);
        list(&raw.aarch64.syscalls, "aarch64.syscalls", Kind::Allow, &[Arch::Aarch64]);
        list(&raw.enosys, "enosys", Kind::Enosys, &Arch::ALL);
        list(&raw.denied, "denied", Kind::Denied, &Arch::ALL);
        for (i, (r, rule)) in raw.rule.iter().zip(rules).enumerate() {
            let arches = rule.arch.map_or(Arch::ALL.to_vec(), |a| vec![a]);
            out.push(Entry {
                name: r.syscall.get_ref(),
                span: r.syscall.span(),
                key: format!("rule[{i}].syscall"),
                kind: Kind::Rule,
                arches,
            });
        }
        out
    }

    /// Every name must be a syscall on each architecture it applies to (a `denied` name on at
    /// least one).
    fn check_names(&mut self, entries: &[Entry<'_>]) {
        let mut unknown: BTreeMap<Arch, BTreeSet<&str>> = BTreeMap::new();
        for arch in Arch::ALL {
            let names: BTreeSet<&str> = entries.iter().filter(|e| e.arches.contains(&arch)).map(|e| e.name).collect();
            let names: Vec<&str> = names.into_iter().collect();
            unknown.insert(arch, unknown_names(arch, &names).into_iter().collect());
        }
        for e in entries {
            let missing: Vec<Arch> =
                e.arches.iter().copied().filter(|a| unknown.get(a).is_some_and(|u| u.contains(e.name))).collect();
            let fails = if e.kind == Kind::Denied { missing.len() == e.arches.len() } else { !missing.is_empty() };
            if fails {
                let on = missing.iter().map(|a| a.name()).collect::<Vec<_>>().join(" or ");
                let hint = match (e.key.as_str(), missing.as_slice()) {
                    ("syscalls", [only]) => {
                        let other = Arch::ALL.into_iter().find(|a| a != only).map_or("", |a| a.name());
                        format!(" (list it under [{other}] instead)")
                    }
                    _ => String::new(),
                };
                self.err(&e.span, e.key.clone(), format!("`{}` is not a syscall on {on}{hint}", e.name));
            }
        }
    }

    /// A name goes in one list only, per architecture (several rules for one syscall are fine).
    fn check_conflicts(&mut self, entries: &[Entry<'_>]) {
        for arch in Arch::ALL {
            let mut first: BTreeMap<&str, &Entry<'_>> = BTreeMap::new();
            for e in entries.iter().filter(|e| e.arches.contains(&arch)) {
                let Some(prev) = first.get(e.name) else {
                    first.insert(e.name, e);
                    continue;
                };
                if prev.kind == Kind::Rule && e.kind == Kind::Rule {
                    continue;
                }
                let message = if prev.key == e.key {
                    format!("`{}` is listed twice", e.name)
                } else {
                    format!(
                        "`{}` is already in `{}`: a syscall is either allowed (`syscalls` or `[[rule]]`s), in \
                         `enosys`, or in `denied`",
                        e.name, prev.key
                    )
                };
                self.err(&e.span, e.key.clone(), message);
            }
        }
    }

    fn check_required(&mut self, raw: &RawProfile, entries: &[Entry<'_>]) {
        for name in REQUIRED {
            for arch in Arch::ALL {
                let allowed =
                    entries.iter().any(|e| e.kind == Kind::Allow && e.name == name && e.arches.contains(&arch));
                if !allowed {
                    let span = raw.syscalls.first().map_or(0..0, |s| s.span());
                    self.err(
                        &span,
                        "syscalls",
                        format!(
                            "`{name}` must be allowed unconditionally on {arch}: the runtime starts the container's \
                             program with it after installing the filter"
                        ),
                    );
                }
            }
        }
    }

    fn rule(&mut self, index: usize, raw: &RawRule) -> Rule {
        let key = |f: &str| format!("rule[{index}].{f}");
        let arch = raw.arch.as_ref().and_then(|a| {
            let parsed = Arch::parse(a.get_ref());
            if parsed.is_none() {
                self.err(
                    &a.span(),
                    key("arch"),
                    format!("`{}` is not an architecture (x86_64 or aarch64)", a.get_ref()),
                );
            }
            parsed
        });
        if raw.args.get_ref().is_empty() {
            self.err(
                &raw.args.span(),
                key("args"),
                "a rule needs at least one condition (list the syscall in `syscalls` to allow it whatever its arguments)",
            );
        }
        let args = raw.args.get_ref().iter().enumerate().map(|(j, c)| self.condition(&key(&format!("args[{j}]")), c));
        Rule { syscall: raw.syscall.get_ref().clone(), arch, args: args.collect() }
    }

    fn condition(&mut self, key: &str, raw: &RawCondition) -> Condition {
        let key = |f: &str| format!("{key}.{f}");
        let arg = match u8::try_from(*raw.arg.get_ref()) {
            Ok(n) if n <= 5 => n,
            _ => {
                self.err(&raw.arg.span(), key("arg"), "a syscall's arguments are numbered 0 to 5");
                0
            }
        };
        let width = match raw.width.as_ref().map(|w| (w.get_ref(), w.span())) {
            None | Some((32, _)) => Width::Bits32,
            Some((64, _)) => Width::Bits64,
            Some((_, span)) => {
                self.err(&span, key("width"), "width is 32 or 64 (bits of the argument compared)");
                Width::Bits32
            }
        };
        let value = self.number(&raw.value, width, &key("value"));
        let mask = raw.mask.as_ref().map(|m| (self.number(m, width, &key("mask")), m.span()));
        let op = match (raw.op.get_ref().as_str(), mask) {
            ("masked-eq", Some((mask, _))) => CmpOp::MaskedEq(mask),
            ("masked-eq", None) => {
                self.err(&raw.op.span(), key("op"), "`masked-eq` needs a `mask`");
                CmpOp::MaskedEq(0)
            }
            (op, Some((_, span))) if ["eq", "ne", "lt", "le", "gt", "ge"].contains(&op) => {
                self.err(&span, key("mask"), "`mask` goes with op = \"masked-eq\" only");
                CmpOp::Eq
            }
            ("eq", None) => CmpOp::Eq,
            ("ne", None) => CmpOp::Ne,
            ("lt", None) => CmpOp::Lt,
            ("le", None) => CmpOp::Le,
            ("gt", None) => CmpOp::Gt,
            ("ge", None) => CmpOp::Ge,
            (other, _) => {
                self.err(
                    &raw.op.span(),
                    key("op"),
                    format!("`{other}` is not a comparison (eq, ne, lt, le, gt, ge or masked-eq)"),
                );
                CmpOp::Eq
            }
        };
        Condition { arg, op, value, width }
    }

    /// A TOML integer as an argument value of `width` bits; negative numbers are two's complement.
    fn number(&mut self, n: &Spanned<i64>, width: Width, key: &str) -> u64 {
        let v = *n.get_ref();
        match width {
            Width::Bits64 => v as u64,
            Width::Bits32 if (-(1i64 << 31)..(1i64 << 32)).contains(&v) => v as u64 & 0xFFFF_FFFF,
            Width::Bits32 => {
                self.err(&n.span(), key, format!("{v} does not fit in 32 bits (set width = 64 to compare 64)"));
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ProfileData, SeccompError> {
        ProfileData::parse(text, Path::new("p.toml"))
    }

    fn problems(text: &str) -> Vec<String> {
        match parse(text) {
            Err(SeccompError::Invalid { problems }) => problems.iter().map(ToString::to_string).collect(),
            other => panic!("expected an invalid profile, got {other:?}"),
        }
    }

    /// The syscall numbers a program compares against: a `jeq` right after the load of the
    /// number (offset 0) or after the `ret` that ends the previous syscall's chain. (Argument
    /// comparisons follow a load of an argument or an `and`; the arch check a load of offset 4.)
    fn numbers(p: &[Insn]) -> BTreeSet<u32> {
        p.windows(2)
            .filter(|w| w[1].code == 0x15 && ((w[0].code == 0x20 && w[0].k == 0) || w[0].code == 0x06))
            .map(|w| w[1].k)
            .collect()
    }

    #[test]
    fn the_default_profile_parses_and_denies_what_it_says() {
        let d = ProfileData::default_profile().unwrap();
        assert!(d.syscalls.len() > 200, "{} syscalls", d.syscalls.len());
        for must in ["mount", "unshare", "setns", "bpf", "keyctl", "ptrace", "reboot", "io_uring_setup", "iopl"] {
            assert!(d.denied.iter().any(|n| n == must), "{must} not in `denied`");
            for arch in Arch::ALL {
                assert!(!d.allowed(arch).any(|n| n == must), "{must} allowed on {arch}");
                assert!(!d.rules(arch).any(|r| r.syscall == must), "{must} has a rule on {arch}");
            }
        }
        assert_eq!(d.enosys, ["clone3"]);
        assert!(d.x86_64.iter().any(|n| n == "open") && d.aarch64.is_empty());
        let clone: Vec<&Rule> = d.rules.iter().filter(|r| r.syscall == "clone").collect();
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0].args[0].op, CmpOp::MaskedEq(0x7E02_0000));
        assert_eq!(clone[0].args[0].value, 0);
        assert_eq!(d.rules(Arch::Aarch64).filter(|r| r.syscall == "mknod").count(), 0);
        assert_eq!(d.rules(Arch::X86_64).filter(|r| r.syscall == "mknod").count(), 4);
    }

    #[test]
    fn compiles_for_both_arches_deterministically() {
        for arch in Arch::ALL {
            let a = compile(&Profile::Default, arch).unwrap();
            let b = compile(&Profile::Default, arch).unwrap();
            assert_eq!(a, b, "{arch}: two compiles differ");
            let programs = keel_plan::seccomp::decode(&a).unwrap();
            assert_eq!(programs.len(), 2);
            // Program 1 checks the arch, then loads the syscall number; its final return is EPERM.
            let audit = match arch {
                Arch::X86_64 => 0xC000_003E,
                Arch::Aarch64 => 0xC000_00B7,
            };
            assert_eq!(programs[0][1].k, audit, "{arch}: arch check");
            assert_eq!(programs[0].last().unwrap().k, 0x0005_0000 | EPERM);
            assert_eq!(programs[1].last().unwrap().k, 0x7FFF_0000, "{arch}: program 2 allows the rest");
            assert!(programs[1].iter().any(|i| i.code == 0x06 && i.k == 0x0005_0000 | ENOSYS));
        }
        let x = compile(&Profile::Default, Arch::X86_64).unwrap();
        let a = compile(&Profile::Default, Arch::Aarch64).unwrap();
        assert_ne!(x, a);
    }

    #[test]
    fn numbers_are_per_arch() {
        let d = ProfileData::default_profile().unwrap();
        let x = compile_programs(&d, Arch::X86_64).unwrap();
        let a = compile_programs(&d, Arch::Aarch64).unwrap();
        // read, openat, clone: x86_64 0, 257, 56; aarch64 63, 56, 220. open (x86_64 2) is absent on aarch64.
        let (xn, an) = (numbers(&x[0]), numbers(&a[0]));
        for n in [0, 257, 56, 2] {
            assert!(xn.contains(&n), "x86_64 program lacks {n}");
        }
        for n in [63, 56, 220] {
            assert!(an.contains(&n), "aarch64 program lacks {n}");
        }
        // mount (x86_64 165, aarch64 40), clone3 (435 on both) are not in the allowlist.
        assert!(!xn.contains(&165) && !an.contains(&40) && !xn.contains(&435) && !an.contains(&435));
        assert_eq!(numbers(&x[1]), BTreeSet::from([435]));
        assert_eq!(numbers(&a[1]), BTreeSet::from([435]));
    }

    #[test]
    fn unknown_names_are_named_with_key_and_arch() {
        let p = problems("syscalls = [\"execve\", \"frobnicate\", \"open\"]\n");
        assert_eq!(
            p,
            [
                "p.toml:1:23: key `syscalls`: `frobnicate` is not a syscall on x86_64 or aarch64",
                "p.toml:1:37: key `syscalls`: `open` is not a syscall on aarch64 (list it under [x86_64] instead)",
            ]
        );
        let p = problems("syscalls = [\"execve\"]\n[aarch64]\nsyscalls = [\"fork\"]\n");
        assert_eq!(p, ["p.toml:3:13: key `aarch64.syscalls`: `fork` is not a syscall on aarch64"]);
        let p = problems("syscalls = [\"execve\"]\n[[rule]]\nsyscall = \"nope\"\narch = \"x86_64\"\nargs = [{ arg = 0, op = \"eq\", value = 1 }]\n");
        assert_eq!(p, ["p.toml:3:11: key `rule[0].syscall`: `nope` is not a syscall on x86_64"]);
    }

    #[test]
    fn conflicts_and_bad_conditions_are_reported() {
        let p = problems(concat!(
            "syscalls = [\"execve\", \"read\", \"read\", \"mount\"]\n",
            "enosys = [\"read\"]\n",
            "denied = [\"mount\"]\n",
            "[[rule]]\nsyscall = \"socket\"\nargs = []\n",
            "[[rule]]\nsyscall = \"execve\"\nargs = [{ arg = 6, op = \"masked-eq\", value = 1 }]\n",
            "[[rule]]\nsyscall = \"clone\"\narch = \"riscv64\"\nargs = [{ arg = 0, op = \"eq\", value = 4294967296, mask = 1 }]\n",
        ));
        let has = |s: &str| p.iter().any(|l| l.contains(s));
        assert!(has("key `syscalls`: `read` is listed twice"), "{p:#?}");
        assert!(has("key `enosys`: `read` is already in `syscalls`"), "{p:#?}");
        assert!(has("key `denied`: `mount` is already in `syscalls`"), "{p:#?}");
        assert!(has("key `rule[0].args`: a rule needs at least one condition"), "{p:#?}");
        assert!(has("key `rule[1].syscall`: `execve` is already in `syscalls`"), "{p:#?}");
        assert!(has("key `rule[1].args[0].arg`: a syscall's arguments are numbered 0 to 5"), "{p:#?}");
        assert!(has("key `rule[1].args[0].op`: `masked-eq` needs a `mask`"), "{p:#?}");
        assert!(has("key `rule[2].arch`: `riscv64` is not an architecture"), "{p:#?}");
        assert!(has("key `rule[2].args[0].value`: 4294967296 does not fit in 32 bits"), "{p:#?}");
        assert!(has("key `rule[2].args[0].mask`: `mask` goes with op = \"masked-eq\" only"), "{p:#?}");
    }

    #[test]
    fn execve_is_required_and_syntax_errors_are_located() {
        let p = problems("syscalls = [\"read\"]\n");
        assert!(p.iter().any(|l| l.contains("`execve` must be allowed unconditionally on x86_64")), "{p:#?}");
        assert!(p.iter().any(|l| l.contains("`execve` must be allowed unconditionally on aarch64")), "{p:#?}");
        let p = problems("syscalls = [\"execve\"]\nallow = []\n");
        assert!(p[0].starts_with("p.toml:2:1: ") && p[0].contains("unknown field `allow`"), "{p:#?}");
        let p = problems("syscalls = [\"execve\"\n");
        assert!(p[0].starts_with("p.toml:"), "{p:#?}");
    }

    #[test]
    fn user_files_load_and_compile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        let text = "syscalls = [\"execve\", \"exit_group\", \"write\"]\n[[rule]]\nsyscall = \"ioctl\"\n\
                    args = [{ arg = 1, op = \"le\", value = -1 }, { arg = 2, op = \"ne\", value = 0, width = 64 }]\n";
        std::fs::write(&path, text).unwrap();
        let d = load_profile(&path).unwrap();
        assert_eq!(d.rules[0].args[0].value, 0xFFFF_FFFF);
        assert_eq!(d.rules[0].args[1].width, Width::Bits64);
        let bytes = compile(&Profile::File(path.clone()), Arch::Aarch64).unwrap();
        let programs = keel_plan::seccomp::decode(&bytes).unwrap();
        assert_eq!(programs.len(), 1, "no enosys names, no second program");
        // execve 221, exit_group 94, write 64, ioctl 29 on aarch64.
        assert_eq!(numbers(&programs[0]), BTreeSet::from([29, 64, 94, 221]));
        let err = compile(&Profile::File(dir.path().join("missing.toml")), Arch::X86_64).unwrap_err();
        assert!(err.to_string().starts_with("cannot read seccomp profile "), "{err}");
    }
}
