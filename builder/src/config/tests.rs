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
fn shutdown_grace_defaults_and_parses() {
    assert_eq!(parse(GOOD).unwrap().host.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    let c =
        parse(&GOOD.replace("on-exit = \"poweroff\"", "on-exit = \"poweroff\"\nshutdown-grace = \"1500ms\"")).unwrap();
    assert_eq!(c.host.shutdown_grace, Duration::from_millis(1500));
    let d = first_error(&GOOD.replace("on-exit = \"poweroff\"", "on-exit = \"poweroff\"\nshutdown-grace = \"soon\""));
    assert_eq!(d.key, "host.shutdown-grace");
    assert_eq!(d.line, 11);
}

#[test]
fn bad_size() {
    let d = first_error(&format!("{GOOD}\n[disk]\ndata-size = \"12XB\"\n"));
    assert_eq!(d.key, "disk.data-size");
}

fn with_container_keys(keys: &str) -> String {
    GOOD.replace("env = { A = \"1\" }", &format!("env = {{ A = \"1\" }}\n{keys}"))
}

#[test]
fn isolation_defaults_are_the_safe_choice() {
    let c = parse(GOOD).unwrap();
    let iso = &c.containers[0].isolation;
    assert_eq!(iso.limits.memory_max, Some(isolation::DEFAULT_MEMORY));
    assert_eq!(iso.limits.pids_max, Some(isolation::DEFAULT_PIDS));
    assert_eq!(iso.limits.cpu_max, None);
    assert!(iso.capabilities.is_empty());
    assert_eq!(iso.seccomp, isolation::Seccomp::Default);
    assert!(iso.read_only);
    assert_eq!(iso.tmpfs, ["/tmp", "/run"]);
    assert_eq!(iso.nofile, isolation::DEFAULT_NOFILE);
}

#[test]
fn isolation_keys_parse() {
    let src = with_container_keys(
        "memory = \"64MiB\"\ncpus = 0.5\npids = 64\nnofile = \"256:4096\"\ncapabilities = [\"NET_BIND_SERVICE\", \"CAP_CHOWN\"]\n\
         seccomp = \"unconfined\"\nread-only = false\ntmpfs = [\"/var/cache//app/\", \"/tmp\"]",
    );
    let c = parse(&src).unwrap();
    let iso = &c.containers[0].isolation;
    assert_eq!(iso.limits.memory_max, Some(64 << 20));
    assert_eq!(iso.limits.cpu_max, Some(keel_plan::CpuMax { quota_us: 50_000, period_us: 100_000 }));
    assert_eq!(iso.limits.pids_max, Some(64));
    assert_eq!(iso.nofile, keel_plan::Rlimit { soft: 256, hard: 4096 });
    assert_eq!(iso.capabilities, [0, 10]);
    assert_eq!(iso.seccomp, isolation::Seccomp::Unconfined);
    assert!(!iso.read_only);
    assert_eq!(iso.tmpfs, ["/var/cache/app", "/tmp"]);
    let c = parse(&with_container_keys("memory = \"max\"\npids = \"max\"\ncpus = 2")).unwrap();
    let l = c.containers[0].isolation.limits;
    assert_eq!((l.memory_max, l.pids_max), (None, None));
    assert_eq!(l.cpu_max.map(|c| c.quota_us), Some(200_000));
}

#[test]
fn bad_isolation_values_are_located() {
    for (keys, key, needle) in [
        ("memory = \"1MiB\"", "container[0].memory", "at least 4MiB"),
        ("memory = \"lots\"", "container[0].memory", "not a size"),
        ("cpus = 0", "container[0].cpus", "0.01 to 1024"),
        ("cpus = \"fast\"", "container[0].cpus", "0.01 to 1024"),
        ("pids = 0", "container[0].pids", "at least 1"),
        ("nofile = \"9:3\"", "container[0].nofile", "SOFT:HARD"),
        ("capabilities = [\"FLY\"]", "container[0].capabilities", "not a capability"),
        ("seccomp = \"no-such-profile.toml\"", "container[0].seccomp", "profile not found"),
        ("tmpfs = [\"var/x\"]", "container[0].tmpfs", "absolute"),
        ("tmpfs = [\"/a/../b\"]", "container[0].tmpfs", "`..`"),
        ("tmpfs = [\"/proc/x\"]", "container[0].tmpfs", "managed by keel"),
        ("tmpfs = [\"/x\", \"/x/\"]", "container[0].tmpfs", "twice"),
        ("read-only = \"yes\"", "container[0].read-only", ""),
    ] {
        let d = first_error(&with_container_keys(keys));
        assert_eq!(d.key, key, "{keys}: {d}");
        assert!(d.message.contains(needle), "{keys}: {d}");
        assert_eq!(d.line, 17, "{keys}: {d}");
    }
}

#[test]
fn restart_defaults_to_on_failure_and_parses() {
    assert_eq!(parse(GOOD).unwrap().containers[0].restart, Restart::OnFailure);
    for (value, want) in [("no", Restart::No), ("on-failure", Restart::OnFailure), ("always", Restart::Always)] {
        let c = parse(&with_container_keys(&format!("restart = \"{value}\""))).unwrap();
        assert_eq!(c.containers[0].restart, want, "{value}");
    }
    let d = first_error(&with_container_keys("restart = \"sometimes\""));
    assert_eq!(d.key, "container[0].restart");
    assert!(d.message.contains("expected no, on-failure or always"), "{d}");
    assert_eq!(d.line, 17);
}

#[test]
fn health_checks_parse_with_defaults() {
    assert_eq!(parse(GOOD).unwrap().containers[0].health, None);
    let c = parse(&with_container_keys("health = { tcp = 5432, interval = \"5s\" }")).unwrap();
    let h = c.containers[0].health.clone().unwrap();
    assert_eq!(h.check, keel_plan::HealthCheck::Tcp(5432));
    assert_eq!((h.interval_ms, h.timeout_ms, h.retries, h.start_period_ms), (5_000, 10_000, 3, 0));
    let c = parse(&with_container_keys(
        "health = { cmd = [\"/bin/check\", \"-q\"], interval = \"1s\", timeout = \"500ms\", retries = 2, start-period = \"20s\" }",
    ))
    .unwrap();
    let h = c.containers[0].health.clone().unwrap();
    assert_eq!(h.check, keel_plan::HealthCheck::Cmd(vec!["/bin/check".into(), "-q".into()]));
    assert_eq!((h.interval_ms, h.timeout_ms, h.retries, h.start_period_ms), (1_000, 500, 2, 20_000));
}

#[test]
fn bad_health_checks_are_located() {
    for (keys, key, needle) in [
        ("health = { interval = \"1s\" }", "container[0].health", "needs `cmd = [...]` or `tcp = PORT`"),
        ("health = { tcp = 1, cmd = [\"x\"] }", "container[0].health.tcp", "not both"),
        ("health = { tcp = 70000 }", "container[0].health.tcp", "not a TCP port"),
        ("health = { cmd = [] }", "container[0].health.cmd", "empty"),
        ("health = { tcp = 80, interval = \"10ms\" }", "container[0].health.interval", "at least 100 ms"),
        ("health = { tcp = 80, timeout = \"later\" }", "container[0].health.timeout", ""),
        ("health = { tcp = 80, retries = 0 }", "container[0].health.retries", "1 to 1000"),
        ("health = { tcp = 80, every = \"1s\" }", "container[0].health.every", "unknown field"),
    ] {
        let d = first_error(&with_container_keys(keys));
        assert_eq!(d.key, key, "{keys}: {d}");
        assert!(d.message.contains(needle), "{keys}: {d}");
        assert_eq!(d.line, 17, "{keys}: {d}");
    }
}

fn chain(deps: &[(&str, &str)]) -> String {
    let mut src = GOOD.to_string();
    for (name, keys) in deps {
        src.push_str(&format!("\n[[container]]\nname = \"{name}\"\nimage = \"dir:x\"\n{keys}\n"));
    }
    src
}

#[test]
fn depends_on_parses() {
    let c = parse(&chain(&[("db", ""), ("web", "depends-on = [\"db\", \"hello\"]")])).unwrap();
    let names: Vec<&str> = c.containers[2].depends_on.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["db", "hello"]);
}

#[test]
fn bad_dependencies_are_located() {
    let d = first_error(&chain(&[("web", "depends-on = [\"nosuch\"]")]));
    assert_eq!((d.key.as_str(), d.line), ("container[1].depends-on[0]", 21), "{d}");
    assert!(d.message.contains("no container is named `nosuch`"), "{d}");
    let d = first_error(&chain(&[("web", "depends-on = [\"web\"]")]));
    assert!(d.message.contains("cannot depend on itself"), "{d}");
    let d = first_error(&chain(&[("web", "depends-on = [\"hello\", \"hello\"]")]));
    assert_eq!(d.key, "container[1].depends-on[1]", "{d}");
    assert!(d.message.contains("listed twice"), "{d}");
    let d = first_error(&chain(&[
        ("a", "depends-on = [\"b\"]"),
        ("b", "depends-on = [\"c\"]"),
        ("c", "depends-on = [\"a\", \"hello\"]"),
    ]));
    assert_eq!(d.key, "container[1].depends-on", "{d}");
    assert!(d.message.contains("depends-on makes a cycle: a -> b -> c -> a"), "{d}");
}
