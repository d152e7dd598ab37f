//! Host runtime tests of volumes: real containers with different id ranges share a directory
//! through idmapped mounts (see `common` for the tree and the root requirement). The volume
//! directory is on the build host's root filesystem (ext4 here, as keel-data is in the guest).

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use common::{collect, container, within_timeout, Images, Outcome, ID_BASE};
use keel_plan::{Container, VolumeMount};
use keel_runtime::{spawn, ExitStatus, Host, RuntimeError};

fn with_volume(mut c: Container, id_base: u32, uid: u32, read_only: bool) -> Container {
    c.id_base = id_base;
    c.uid = uid;
    c.gid = uid;
    c.volumes = vec![VolumeMount { volume: "shared".into(), target: "/data".into(), read_only }];
    c
}

fn run_with(images: &Images, volumes: &Path, c: &Container) -> Result<Outcome, RuntimeError> {
    let host = Host { images: images.path(), cgroups: None, scratch: &images.scratch(), volumes: Some(volumes) };
    collect(spawn(c, &host)?)
}

/// A volumes directory next to the tests' target dir (on the host's root filesystem, not tmpfs),
/// holding `shared`, owned by container ids 1000:1000 as keel-init would create it.
fn volumes_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("keel-volumes").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let shared = dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(1000), Some(1000)).unwrap();
    fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn containers_with_different_id_ranges_share_a_volume_with_container_level_owners() {
    within_timeout(|| {
        let images = Images::new();
        fs::create_dir(images.root().join("data")).unwrap();
        let vols = volumes_dir();
        let shared = vols.path().join("shared");

        // A: container uid 1000 in range ID_BASE writes a file.
        let a = with_volume(
            container(&["sh", "-c", "echo from-a > /data/note && stat -c '%u:%g' /data /data/note && id -u"]),
            ID_BASE,
            1000,
            false,
        );
        let o = run_with(&images, vols.path(), &a).expect("a starts").ok();
        assert_eq!(o.stdout, "1000:1000\n1000:1000\n1000\n", "stderr: {}", o.stderr);
        // On disk: the container-level ids, not the host ids of A's range.
        let m = fs::metadata(shared.join("note")).unwrap();
        assert_eq!((m.uid(), m.gid()), (1000, 1000));

        // B: another range, same container uid, sees the same owner and appends.
        let b_base = ID_BASE + 2 * 65_536;
        let b = with_volume(
            container(&["sh", "-c", "echo from-b >> /data/note && cat /data/note && stat -c '%u:%g' /data/note"]),
            b_base,
            1000,
            false,
        );
        let o = run_with(&images, vols.path(), &b).expect("b starts").ok();
        assert_eq!(o.stdout, "from-a\nfrom-b\n1000:1000\n", "stderr: {}", o.stderr);

        // C: read-only, container root of a third range: reads, cannot write, sees 1000 too.
        let c = with_volume(
            container(&["sh", "-c", "cat /data/note; stat -c '%u:%g' /data/note; touch /data/x; echo touch=$?"]),
            ID_BASE + 4 * 65_536,
            0,
            true,
        );
        let o = run_with(&images, vols.path(), &c).expect("c starts");
        assert_eq!(o.status, ExitStatus::Exited(0));
        assert_eq!(o.stdout, "from-a\nfrom-b\n1000:1000\ntouch=1\n", "stderr: {}", o.stderr);
        assert!(o.stderr.contains("Read-only file system"), "{}", o.stderr);
        assert!(!shared.join("x").exists());

        // The mount is nosuid and nodev, read-write; container root has no capabilities, so it
        // cannot write into the volume, which belongs to 1000.
        let d = with_volume(
            container(&["sh", "-c", "grep ' /data ' /proc/self/mounts; touch /data/by-root; echo touch=$?"]),
            ID_BASE,
            0,
            false,
        );
        let o = run_with(&images, vols.path(), &d).expect("d starts").ok();
        let opts = o.stdout.split_whitespace().nth(3).unwrap_or_default().to_string();
        assert!(opts.split(',').any(|o| o == "nosuid") && opts.split(',').any(|o| o == "nodev"), "{}", o.stdout);
        assert!(opts.split(',').any(|o| o == "rw"), "{}", o.stdout);
        assert!(o.stdout.ends_with("touch=1\n") && o.stderr.contains("Permission denied"), "{o:?}");
    });
}

#[test]
fn volume_problems_are_start_errors() {
    within_timeout(|| {
        let images = Images::new();
        fs::create_dir(images.root().join("data")).unwrap();
        let vols = volumes_dir();
        let mut c = with_volume(container(&["true"]), ID_BASE, 0, false);
        c.volumes[0].volume = "missing".into();
        match run_with(&images, vols.path(), &c) {
            Err(RuntimeError::InvalidVolume { name, why }) => {
                assert_eq!(name, "missing");
                assert!(why.contains("missing or not a directory"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let mut c = with_volume(container(&["true"]), ID_BASE, 0, false);
        c.volumes[0].target = "/nope".into();
        assert!(matches!(run_with(&images, vols.path(), &c), Err(RuntimeError::MountPoint { .. })));
        let c = with_volume(container(&["true"]), ID_BASE, 0, false);
        let host = Host { images: images.path(), cgroups: None, scratch: &images.scratch(), volumes: None };
        assert!(matches!(spawn(&c, &host), Err(RuntimeError::InvalidVolume { .. })));
    });
}

/// The start cost of a volume: `spawn` alone (until the container's exec) and spawn-to-exit of
/// `true`, with no volume and with one (idmapped), rounds interleaved; medians printed (a rough
/// figure on a shared machine, not asserted).
#[test]
fn start_cost_of_a_volume() {
    within_timeout(|| {
        let images = Images::new();
        fs::create_dir(images.root().join("data")).unwrap();
        let vols = volumes_dir();
        let host =
            Host { images: images.path(), cgroups: None, scratch: &images.scratch(), volumes: Some(vols.path()) };
        let rounds = 60;
        let plain = container(&["true"]);
        let one = with_volume(container(&["true"]), ID_BASE, 0, false);
        // [no volume, one volume] × [spawn, spawn to exit].
        let mut times: [[Vec<f64>; 2]; 2] = Default::default();
        for i in 0..rounds + 3 {
            for (k, c) in [&plain, &one].into_iter().enumerate() {
                let t = Instant::now();
                let running = spawn(c, &host).expect("starts");
                let started = t.elapsed();
                let o = collect(running).expect("runs");
                let total = t.elapsed();
                assert_eq!(o.status, ExitStatus::Exited(0));
                if i >= 3 {
                    times[k][0].push(started.as_secs_f64() * 1e3);
                    times[k][1].push(total.as_secs_f64() * 1e3);
                }
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let [mut none, mut vol] = times;
        let (s0, s1) = (median(&mut none[0]), median(&mut vol[0]));
        let (t0, t1) = (median(&mut none[1]), median(&mut vol[1]));
        eprintln!(
            "median of {rounds}: spawn {s0:.3} ms without a volume, {s1:.3} ms with one (+{:.3}); \
             spawn to exit of `true` {t0:.3} ms / {t1:.3} ms (+{:.3})",
            s1 - s0,
            t1 - t0
        );
    });
}
