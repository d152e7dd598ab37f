//! `keel graph`: configs/web.toml drawn as SVG and DOT. The SVG is rendered to PNG by the real
//! `rsvg-convert` and the pixels are checked (not blank, the edge colours present); the DOT is
//! laid out by the real Graphviz `dot`, which must accept it without a warning. Bad output names
//! and bad configs fail with exit status 2 and leave nothing behind.

use std::path::Path;

use keel_builder::config::Config;
use keel_tests::{keel, root, text, tool};

/// Decodes an 8-bit RGB/RGBA PNG (any filter) with zlib alone and prints
/// `WIDTH HEIGHT NON_WHITE BLUE ORANGE GREEN`: pixels not white, and pixels near each edge colour.
const PNG_STATS: &str = r#"
import struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
pos, idat = 8, b''
while pos < len(data):
    n, typ = struct.unpack('>I4s', data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if typ == b'IHDR':
        w, h, depth, ctype, _, _, interlace = struct.unpack('>IIBBBBB', body)
    elif typ == b'IDAT':
        idat += body
    pos += 12 + n
assert depth == 8 and interlace == 0 and ctype in (2, 6), (depth, ctype, interlace)
bpp = 4 if ctype == 6 else 3
raw = zlib.decompress(idat)
stride = w * bpp
prev = bytearray(stride)
targets = [(31, 111, 235), (194, 65, 12), (46, 125, 50)]
near = [0, 0, 0]
nonwhite = 0
i = 0
for y in range(h):
    f = raw[i]
    line = bytearray(raw[i + 1:i + 1 + stride])
    i += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0
        b = prev[x]
        c = prev[x - bpp] if x >= bpp else 0
        if f == 1:
            line[x] = (line[x] + a) & 255
        elif f == 2:
            line[x] = (line[x] + b) & 255
        elif f == 3:
            line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for x in range(0, stride, bpp):
        al = line[x + 3] if bpp == 4 else 255
        px = [(v * al + 255 * (255 - al)) // 255 for v in line[x:x + 3]]
        if min(px) < 245:
            nonwhite += 1
        for k, t in enumerate(targets):
            if max(abs(u - v) for u, v in zip(px, t)) <= 24:
                near[k] += 1
    prev = line
print(w, h, nonwhite, *near)
"#;

/// The number in attribute `name="…"` of the first tag that has it.
fn attr(svg: &str, name: &str) -> u64 {
    let start = svg.find(&format!(" {name}=\"")).unwrap_or_else(|| panic!("no {name} in the SVG")) + name.len() + 3;
    svg[start..].split('"').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("bad {name} in the SVG"))
}

fn graph(config: &str, out: &Path) -> std::process::Output {
    keel(&["graph", config, "-o", &out.to_string_lossy()])
}

#[test]
fn web_config_as_svg_and_dot() {
    let config = Config::load(&root().join("configs/web.toml")).unwrap_or_else(|e| panic!("configs/web.toml: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("web.svg");
    let dot_path = dir.path().join("web.dot");

    let o = graph("configs/web.toml", &svg_path);
    assert!(o.status.success(), "keel graph -o web.svg failed:\n{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let want = format!("keel graph: wrote {} ({} network", svg_path.display(), config.networks.len());
    assert!(stdout.starts_with(&want) && stdout.lines().count() == 1, "unexpected report: {stdout}");
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<?xml") && svg.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""), "not an SVG");
    assert!(svg.trim_end().ends_with("</svg>"));
    for name in config.containers.iter().map(|c| &c.name).chain(config.networks.iter().map(|n| &n.name)) {
        assert!(svg.contains(&format!(">{name}</text>")), "{name} is not in the SVG");
    }

    // Same config, same bytes.
    let again = dir.path().join("again.svg");
    let o = graph("configs/web.toml", &again);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(&again).unwrap(), svg.as_bytes(), "two runs differ");

    // Rendered by librsvg: the size the SVG says, not blank, the edges drawn in their colours.
    let png = dir.path().join("web.png");
    let o = tool("rsvg-convert", &[&svg_path.to_string_lossy(), "-o", &png.to_string_lossy()]);
    assert!(o.status.success() && o.stderr.is_empty(), "rsvg-convert complained:\n{}", text(&o));
    let size = std::fs::metadata(&png).unwrap().len();
    assert!(size > 5000, "PNG of {size} bytes");
    let o = tool("python3", &["-c", PNG_STATS, &png.to_string_lossy()]);
    assert!(o.status.success(), "decoding the PNG failed:\n{}", text(&o));
    let stats: Vec<u64> =
        String::from_utf8_lossy(&o.stdout).split_whitespace().filter_map(|v| v.parse().ok()).collect();
    let [w, h, ink, blue, orange, green] = stats[..] else { panic!("bad PNG stats: {}", text(&o)) };
    eprintln!("web.png: {w}x{h}, {ink} non-white pixels, link {blue}, publish {orange}, egress {green}");
    assert_eq!((w, h), (attr(&svg, "width"), attr(&svg, "height")), "PNG size differs from the SVG's");
    assert!(w > 100 && h > 100, "{w}x{h}");
    assert!(ink * 100 > w * h && ink * 100 < w * h * 70, "{ink} of {} pixels drawn", w * h);
    if !config.links.is_empty() {
        assert!(blue > 30, "links not drawn ({blue} blue pixels)");
    }
    if config.containers.iter().any(|c| !c.ports.is_empty()) {
        assert!(orange > 30, "published ports not drawn ({orange} orange pixels)");
    }
    if config.networks.iter().any(|n| n.egress) {
        assert!(green > 30, "egress not drawn ({green} green pixels)");
    }

    // DOT, laid out by Graphviz without a warning.
    let o = graph("configs/web.toml", &dot_path);
    assert!(o.status.success(), "keel graph -o web.dot failed:\n{}", text(&o));
    let dot = std::fs::read_to_string(&dot_path).unwrap();
    assert!(dot.starts_with("digraph ") && dot.contains("compound=true"), "{dot}");
    for n in &config.networks {
        assert!(dot.contains(&format!("subgraph \"cluster_{}\" {{", n.name)), "no cluster for {}:\n{dot}", n.name);
    }
    for c in &config.containers {
        assert!(dot.contains(&format!("\"c/{}\" [label=\"{}\\n", c.name, c.name)), "no node for {}:\n{dot}", c.name);
    }
    assert!(dot.matches(" -> ").count() >= config.links.len(), "{dot}");
    let o = tool("dot", &["-Tsvg", &dot_path.to_string_lossy(), "-o", &dir.path().join("dot.svg").to_string_lossy()]);
    assert!(o.status.success() && o.stderr.is_empty(), "dot refused or warned:\n{}", text(&o));

    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["again.svg", "dot.svg", "web.dot", "web.png", "web.svg"], "unexpected files");
}

#[test]
fn bad_output_names_and_configs_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["web.png", "web"] {
        let out = dir.path().join(name);
        let o = graph("configs/web.toml", &out);
        assert_eq!(o.status.code(), Some(2), "-o {name}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(if name.contains('.') { "`.png`" } else { "no extension" }), "{err}");
        assert!(err.contains(".svg or .dot"), "{err}");
    }

    // A bad config: its located error, as `keel check` prints it, and exit 2.
    let src = tempfile::tempdir().unwrap();
    let bad = src.path().join("bad.toml");
    let web = std::fs::read_to_string(root().join("configs/web.toml")).unwrap();
    std::fs::write(&bad, format!("{web}\n[[link]]\nfrom = \"nobody\"\nto = \"network:nowhere\"\nports = [\"1\"]\n"))
        .unwrap();
    let o = graph(&bad.to_string_lossy(), &dir.path().join("bad.svg"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with(&format!("{}:", bad.display())) && err.contains("link["), "{err}");
    let o = graph("configs/does-not-exist.toml", &dir.path().join("missing.svg"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // An output directory that does not exist: a plain failure, nothing written anywhere.
    let o = graph("configs/web.toml", &dir.path().join("no/such/dir/web.svg"));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "output left behind");
}
