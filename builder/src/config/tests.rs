use super::*;

const GOOD: &str = r#"
version = 1
name = "hello"

[kernel]
package.x86_64 = { path = "k.deb", sha256 = "0000000000000000000000000000000000000000000000000000000000000000" }
cmdline = "quiet"

[host]
on-exit = "poweroff"

[[container]]
name = "hello"
image = "oci:img:hello"
command = ["/bin/sh", "-c", "echo hi"]
env = { A = "1" }
"#;

fn parse(src: &str) -> Result<Config, ConfigErrors> {
    Config::parse(Path::new("t.toml"), src.to_string())
}

fn first_error(src: &str) -> Diagnostic {
    match parse(src) {
        Ok(_) => panic!("config was accepted"),
        Err(e) => e.0.into_iter().next().expect("at least one diagnostic"),
    }
}

#[test]
fn good_config_parses() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.name, "hello");
    assert_eq!(c.arch, Arch::X86_64);
    assert_eq!(c.containers.len(), 1);
    assert_eq!(c.containers[0].hostname, "hello");
    assert_eq!(c.kernel.packages[&Arch::X86_64].path, Path::new("k.deb"));
    assert_eq!(c.host.on_exit, OnExit::Poweroff);
}

#[test]
fn unknown_key_is_located() {
    let d = first_error(&GOOD.replace("cmdline = \"quiet\"", "cmdline = \"quiet\"\ncolour = 1"));
    assert_eq!((d.line, d.column), (8, 1));
    assert_eq!(d.key, "kernel.colour");
    assert!(d.message.contains("unknown field"), "{d}");
}

#[test]
fn wrong_type_is_located() {
    let d = first_error(&GOOD.replace("version = 1", "version = \"one\""));
    assert_eq!(d.line, 2);
    assert_eq!(d.key, "version");
}

#[test]
fn duplicate_container_names() {
    let src = format!("{GOOD}\n[[container]]\nname = \"hello\"\nimage = \"dir:x\"\n");
    let d = first_error(&src);
    assert_eq!(d.key, "container[1].name");
    assert!(d.message.contains("duplicate"), "{d}");
}

#[test]
fn every_problem_is_reported() {
    let src = GOOD.replace("name = \"hello\"\n\n[kernel]", "name = \"Hello!\"\narch = \"sparc\"\n\n[kernel]");
    let e = parse(&src).unwrap_err();
    let keys: Vec<_> = e.0.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, ["name", "arch"]);
}

#[test]
fn bad_size() {
    let d = first_error(&format!("{GOOD}\n[disk]\ndata-size = \"12XB\"\n"));
    assert_eq!(d.key, "disk.data-size");
}
