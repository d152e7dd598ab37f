pub fn run(_: &std::path::Path, _: Option<&str>, _: Option<&str>, _: &str, _: Option<&str>, _: bool) -> anyhow::Result<bool> { anyhow::bail!("qemu crate not wired yet") }
