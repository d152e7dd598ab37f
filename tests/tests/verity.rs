//! dm-verity on keel-images, checked with veritysetup (cryptsetup-bin), no VM: configs/hello.toml
//! is built for x86_64 and its keel-images partition, with the root hash from the UKI's signed
//! `.cmdline` section, must
//! - pass `veritysetup verify` with the superblock at the offset the provenance names;
//! - show the salt, UUID and data block count in `veritysetup dump`;
//! - equal what `veritysetup format` writes for the same data, salt and UUID: root hash and
//!   every byte of the hash area;
//! - fail `veritysetup verify` once one byte of the data is changed.
//!
//! And `[disk] verity = false` builds without the parameter, the tree or the module.

use std::path::Path;

use keel_plan::Arch;
use keel_tests::{build, images_partition, keel, kernel_toml, text, tool};
use sha2::{Digest, Sha256};

/// The `.cmdline` section of the UKI `efi`, read with objcopy (not keel's own PE reader).
fn uki_cmdline(efi: &Path, dir: &Path) -> String {
    let out = dir.join("cmdline.bin");
    let o =
        tool("objcopy", &["-O", "binary", "--only-section=.cmdline", &efi.to_string_lossy(), &out.to_string_lossy()]);
    assert!(o.status.success(), "objcopy .cmdline: {}", text(&o));
    std::fs::read_to_string(&out).expect("the .cmdline section")
}

/// `veritysetup ARGS`: whether it succeeded, and what it printed.
fn veritysetup(args: &[&str]) -> (bool, String) {
    let o = tool("veritysetup", args);
    (o.status.success(), text(&o))
}

/// The value of `Field:` in `veritysetup dump`'s output.
fn field<'a>(dump: &'a str, name: &str) -> &'a str {
    dump.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in:\n{dump}"))
}

/// The paths in an initramfs (`zstd -dc | cpio -t`).
fn initramfs_listing(initrd: &Path) -> String {
    duct::cmd("zstd", ["-dc".as_ref(), initrd.as_os_str()])
        .pipe(duct::cmd("cpio", ["-t", "--quiet"]))
        .read()
        .expect("zstd -dc | cpio -t (make setup installs them)")
}

#[test]
fn keel_images_is_what_veritysetup_makes_and_checks() {
    let arch = Arch::X86_64;
    let b = build("configs/hello.toml", arch, "verity-hello");
    let tmp = tempfile::tempdir().unwrap();

    // The parameter, last on the UKI's command line, and the same in the .cmdline file.
    let cmdline = uki_cmdline(&b.efi, tmp.path());
    let last = cmdline.split_whitespace().last().unwrap_or_default();
    let value = last.strip_prefix("keel.verity=").unwrap_or_else(|| panic!("keel.verity= is not last: {cmdline}"));
    let file = std::fs::read_to_string(b.dir.join("hello-x86_64.cmdline")).unwrap();
    assert_eq!(file.trim_end(), cmdline.trim_end(), "the .cmdline file is not the UKI's");
    let [root, salt, blocks] = value.split(':').collect::<Vec<_>>()[..] else { panic!("keel.verity={value}") };
    let blocks: u64 = blocks.parse().unwrap();

    // The kernel side: dm-verity and its dependencies are loaded from the initramfs.
    let listing = initramfs_listing(&b.initrd);
    for m in ["dm_verity", "dm_mod", "dm_bufio", "reed_solomon"] {
        assert!(listing.lines().any(|l| l == format!("lib/modules/{m}.ko")), "no {m}.ko in the initramfs:\n{listing}");
    }

    // The provenance record says the same, and where the hash area is.
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.dir.join("hello-x86_64.provenance.json")).unwrap()).unwrap();
    let v = &record["verity"];
    assert_eq!(v["root_hash"].as_str(), Some(root), "{v}");
    assert_eq!(v["salt"].as_str(), Some(salt), "{v}");
    assert_eq!(v["data_blocks"].as_u64(), Some(blocks), "{v}");
    let offset = v["hash_offset"].as_u64().unwrap();
    let hash_size = v["hash_size"].as_u64().unwrap();
    assert_eq!(offset, blocks * 4096, "the superblock is not right after the data: {v}");

    let part = images_partition(&b.img, tmp.path());
    let part_s = part.to_string_lossy().into_owned();
    let bytes = std::fs::read(&part).unwrap();
    assert!(offset + hash_size <= bytes.len() as u64, "the hash area overruns keel-images ({} bytes)", bytes.len());
    let hash_offset = format!("--hash-offset={offset}");

    let (ok, out) = veritysetup(&["verify", &part_s, &part_s, root, &hash_offset]);
    assert!(ok, "veritysetup verify refused keel-images as built:\n{out}");

    let (ok, dump) = veritysetup(&["dump", &part_s, &hash_offset]);
    assert!(ok, "veritysetup dump:\n{dump}");
    assert_eq!(field(&dump, "Salt"), salt, "{dump}");
    assert_eq!(field(&dump, "Data blocks"), blocks.to_string(), "{dump}");
    assert_eq!(field(&dump, "Hash type"), "1", "{dump}");
    assert_eq!(field(&dump, "Hash algorithm"), "sha256", "{dump}");
    let uuid = field(&dump, "UUID").to_string();
    assert_eq!(v["uuid"].as_str(), Some(uuid.as_str()), "{v}");

    // The salt is derived from the data, so a rebuild gives the same bytes.
    let data = &bytes[..offset as usize];
    let want_salt = Sha256::new().chain_update(b"keel-verity-salt").chain_update(Sha256::digest(data)).finalize();
    assert_eq!(salt, hex::encode(want_salt), "the salt is not sha256(\"keel-verity-salt\" ‖ sha256(data))");

    // veritysetup's own tree over a copy of the data, with the same salt and UUID.
    let copy = tmp.path().join("data");
    let hash = tmp.path().join("hash");
    std::fs::write(&copy, data).unwrap();
    let (copy_s, hash_s) = (copy.to_string_lossy().into_owned(), hash.to_string_lossy().into_owned());
    let salt_arg = format!("--salt={salt}");
    let uuid_arg = format!("--uuid={uuid}");
    let (ok, out) = veritysetup(&["format", &copy_s, &hash_s, &salt_arg, &uuid_arg]);
    assert!(ok, "veritysetup format:\n{out}");
    assert_eq!(field(&out, "Root hash"), root, "veritysetup format gives another root hash:\n{out}");
    let theirs = std::fs::read(&hash).unwrap();
    assert_eq!(theirs.len() as u64, hash_size, "veritysetup's hash area has another size");
    assert!(
        theirs[..] == bytes[offset as usize..(offset + hash_size) as usize],
        "keel's superblock and tree differ from veritysetup's"
    );

    // One changed byte of the data (in a file's block, past the ext4 metadata) fails the check.
    let mut changed = bytes.clone();
    let at = data.len() / 2 + 100;
    changed[at] ^= 0x01;
    let bad = tmp.path().join("changed");
    std::fs::write(&bad, &changed).unwrap();
    let bad_s = bad.to_string_lossy().into_owned();
    let (ok, out) = veritysetup(&["verify", &bad_s, &bad_s, root, &hash_offset]);
    assert!(!ok, "veritysetup verify accepted keel-images with byte {at} changed:\n{out}");
    println!(
        "{arch}: root {root}, {blocks} data blocks, hash area {hash_size} bytes at {offset}; changed byte {at}: {out}"
    );
}

#[test]
fn verity_can_be_turned_off() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("plain.toml");
    let hello = std::fs::read_to_string(keel_tests::root().join("configs/hello.toml")).unwrap();
    let containers = &hello[hello.find("[host]").unwrap()..];
    std::fs::write(
        &config,
        format!(
            "version = 1\nname = \"plain\"\n\n{}cmdline = \"quiet\"\n\n[disk]\nverity = false\n\n{containers}",
            kernel_toml()
        )
        .replace("\"oci:../.cache/", &format!("\"oci:{}/.cache/", keel_tests::root().display())),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = keel(&["build", &config.to_string_lossy(), "--arch", "x86_64", "-o", &out.to_string_lossy(), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(j["verity"].is_null(), "verity = false still reports a tree: {}", j["verity"]);
    let steps: Vec<&str> =
        j["timings"]["steps"].as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
    assert!(!steps.contains(&"verity"), "{steps:?}");
    let cmdline = uki_cmdline(&out.join("plain-x86_64.efi"), tmp.path());
    assert!(!cmdline.contains("keel.verity"), "verity = false, yet: {cmdline}");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("plain-x86_64.provenance.json")).unwrap()).unwrap();
    assert!(record["verity"].is_null(), "{record}");
    let o = initramfs_listing(&out.join("plain-x86_64.initrd"));
    assert!(!o.contains("dm_verity"), "verity = false, yet dm_verity is loaded:\n{o}");
}
