//! `keel graph`: a config's networks, containers and the connections its firewall allows, as a
//! picture.
//!
//! Two renderings of the same facts (the config and the [`NetPlan`] derived from it):
//! - [`dot`]: Graphviz DOT, one cluster per network, for `dot -Tsvg` and other Graphviz tools;
//! - [`svg`]: a self-contained SVG drawn here with a small fixed layout, so users need no
//!   Graphviz. The uplink is a bar across the top, each network a column below it, and each
//!   container on a network a row of its own: its box sits in its first network's column, with
//!   a dashed copy (its address there) in every other network it is on, on the same row. Since
//!   a row holds one container, edges run vertically in the gutters between columns (and, for
//!   columns that are not neighbours, along a track below the clusters) and never cross a box.
//!
//! Both are deterministic: the same config gives the same bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use keel_plan::net::{Proto, Uplink, UplinkMode};

use crate::config::network::LinkTarget;
use crate::config::Config;
use crate::netplan::NetPlan;

/// Label of an egress edge.
const EGRESS: &str = "egress (masquerade)";

/// `5432/tcp, 53/udp`.
fn ports_label(ports: &[(Proto, u16)]) -> String {
    ports.iter().map(|(p, n)| format!("{n}/{}", p.name())).collect::<Vec<_>>().join(", ")
}

/// `dhcp`, `static 192.168.1.10/24 via 192.168.1.1`, `none`; `… on eth0` when the interface is named.
fn uplink_mode(u: &Uplink) -> String {
    let mode = match &u.mode {
        UplinkMode::Dhcp => "dhcp".to_string(),
        UplinkMode::Static { address, gateway: Some(g), .. } => format!("static {address} via {g}"),
        UplinkMode::Static { address, gateway: None, .. } => format!("static {address}"),
        UplinkMode::None => "none".to_string(),
    };
    match &u.interface {
        Some(i) => format!("{mode} on {i}"),
        None => mode,
    }
}

/// Container `ci`'s address on network `net`.
fn address(plan: &NetPlan, ci: usize, net: &str) -> String {
    plan.containers
        .get(ci)
        .and_then(Option::as_ref)
        .and_then(|n| n.addresses.iter().find(|a| a.network == net))
        .map(|a| a.address.to_string())
        .unwrap_or_default()
}

/// Network `ni`'s subnet (configured or derived).
fn subnet(plan: &NetPlan, ni: usize) -> String {
    plan.subnets.get(ni).map(ToString::to_string).unwrap_or_default()
}

/// Published ports per container, in config order: (container index, labels like `8080→80/tcp`).
fn published(config: &Config, plan: &NetPlan) -> Vec<(usize, Vec<String>)> {
    config
        .containers
        .iter()
        .enumerate()
        .filter_map(|(ci, c)| {
            let labels: Vec<String> = (plan.net.firewall.publish)
                .iter()
                .filter(|p| p.container == c.name)
                .map(|p| format!("{}→{}/{}", p.host_port, p.port, p.proto.name()))
                .collect();
            (!labels.is_empty()).then_some((ci, labels))
        })
        .collect()
}

/// `N`, then `noun` or its plural.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// What a graph shows, for `keel graph`'s report: `3 networks, 5 containers, 2 links, 1 published port`.
pub fn summary(config: &Config) -> String {
    let ports = config.containers.iter().map(|c| c.ports.len()).sum();
    format!(
        "{}, {}, {}, {}",
        count(config.networks.len(), "network"),
        count(config.containers.len(), "container"),
        count(config.links.len(), "link"),
        count(ports, "published port")
    )
}

// ---------------------------------------------------------------------------------------------
// DOT

/// A quoted DOT string: `"`, `\` escaped, newlines as `\n` (centred lines), other controls dropped.
fn q(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if c.is_control() => {}
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Node id of a container's box in its first network (or outside, when on none).
fn node(name: &str) -> String {
    q(&format!("c/{name}"))
}

/// Node id of a container's copy in another network it is on.
fn alias_node(name: &str, net: &str) -> String {
    q(&format!("c/{name}@{net}"))
}

/// Graphviz DOT: one cluster per network with the containers on it (a container on several
/// networks sits in its first one, with a dashed copy in each other), containers on no network
/// as grey nodes, the uplink, and an edge per link, published port and egress network.
pub fn dot(config: &Config, plan: &NetPlan) -> String {
    const FONT: &str = "Helvetica,Arial,sans-serif";
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(w, "digraph {} {{", q("keel"));
    let _ = writeln!(
        w,
        "  graph [compound=true, newrank=true, rankdir=TB, nodesep=0.5, ranksep=0.8, fontname={}, fontsize=14, labelloc=t, label={}];",
        q(FONT),
        q(&format!("{}: networks and allowed connections", config.name))
    );
    let _ = writeln!(
        w,
        "  node [shape=box, style={}, fillcolor={}, color={}, fontname={}, fontsize=12];",
        q("rounded,filled"),
        q("#ffffff"),
        q("#3b4a5a"),
        q(FONT)
    );
    let _ = writeln!(w, "  edge [fontname={}, fontsize=10];", q(FONT));
    let (fill, stroke) =
        if config.host.network.mode == UplinkMode::None { ("#e6e6e6", "#999999") } else { ("#dbe7fb", "#4a6fa5") };
    let _ = writeln!(
        w,
        "  {{ rank=source; {} [label={}, style={}, fillcolor={}, color={}]; }}",
        q("uplink"),
        q(&format!("uplink\n{}", uplink_mode(&plan.net.uplink))),
        q("filled"),
        q(fill),
        q(stroke)
    );

    // Clusters, remembering one node inside each for edges that end at the cluster.
    let mut anchors: Vec<Vec<(usize, String)>> = Vec::new();
    for (ni, n) in config.networks.iter().enumerate() {
        let mut label = format!("{}\n{}", n.name, subnet(plan, ni));
        if n.egress {
            label.push_str("\negress");
        }
        let _ = writeln!(w, "  subgraph {} {{", q(&format!("cluster_{}", n.name)));
        let _ = writeln!(
            w,
            "    label={}; style={}; color={}; fillcolor={}; fontsize=13;",
            q(&label),
            q("rounded,filled"),
            q(if n.egress { "#2e7d32" } else { "#8a99ad" }),
            q("#f3f6fa")
        );
        let mut inside = Vec::new();
        for (ci, c) in config.containers.iter().enumerate() {
            let Some(k) = c.networks.iter().position(|(x, _)| *x == n.name) else { continue };
            let label = q(&format!("{}\n{}", c.name, address(plan, ci, &n.name)));
            if k == 0 {
                let _ = writeln!(w, "    {} [label={label}];", node(&c.name));
                inside.push((ci, node(&c.name)));
            } else {
                let id = alias_node(&c.name, &n.name);
                let _ = writeln!(
                    w,
                    "    {id} [label={label}, style={}, color={}, fontcolor={}];",
                    q("rounded,dashed"),
                    q("#8a8a8a"),
                    q("#666666")
                );
                inside.push((ci, id));
            }
        }
        if inside.is_empty() {
            let id = q(&format!("n/{}", n.name));
            let _ = writeln!(w, "    {id} [label={}, shape=plaintext, style={}];", q("(no containers)"), q(""));
            inside.push((usize::MAX, id));
        }
        let _ = writeln!(w, "  }}");
        anchors.push(inside);
    }
    for c in config.containers.iter().filter(|c| c.networks.is_empty()) {
        let _ = writeln!(
            w,
            "  {} [label={}, fillcolor={}, color={}, fontcolor={}];",
            node(&c.name),
            q(&format!("{}\nloopback only", c.name)),
            q("#e6e6e6"),
            q("#999999"),
            q("#555555")
        );
    }

    // A container's box and its copies in its other networks.
    for c in &config.containers {
        for (n, _) in c.networks.iter().skip(1) {
            let _ = writeln!(
                w,
                "  {} -> {} [dir=none, style=dashed, color={}, constraint=false];",
                node(&c.name),
                alias_node(&c.name, n),
                q("#8a8a8a")
            );
        }
    }
    let net_index = |name: &str| config.networks.iter().position(|n| n.name == name);
    for l in &config.links {
        let attrs = format!("label={}, color={}, fontcolor={}", q(&ports_label(&l.ports)), q("#1f6feb"), q("#1f6feb"));
        match &l.to {
            LinkTarget::Container(t) => {
                let _ = writeln!(w, "  {} -> {} [{attrs}];", node(&l.from), node(t));
            }
            LinkTarget::Network(n) => {
                let Some(inside) = net_index(n).and_then(|i| anchors.get(i)) else { continue };
                let from = config.containers.iter().position(|c| c.name == l.from);
                // Graphviz refuses `lhead` when the tail is inside the head cluster: then the edge
                // goes to another member (or the container's own copy there).
                let own = inside.iter().any(|(ci, _)| Some(*ci) == from);
                let target = inside.iter().find(|(ci, _)| Some(*ci) != from).or(inside.first());
                let Some((_, target)) = target else { continue };
                let lhead = if own { String::new() } else { format!(", lhead={}", q(&format!("cluster_{n}"))) };
                let _ = writeln!(w, "  {} -> {target} [{attrs}{lhead}];", node(&l.from));
            }
        }
    }
    for (ci, labels) in published(config, plan) {
        let Some(c) = config.containers.get(ci) else { continue };
        for label in labels {
            let _ = writeln!(
                w,
                "  {} -> {} [label={}, color={}, fontcolor={}];",
                q("uplink"),
                node(&c.name),
                q(&label),
                q("#c2410c"),
                q("#c2410c")
            );
        }
    }
    for (ni, n) in config.networks.iter().enumerate() {
        let Some((_, target)) = anchors.get(ni).and_then(|a| a.first()).filter(|_| n.egress) else { continue };
        // Drawn uplink → cluster with the arrow at the uplink, so the uplink stays on top.
        let _ = writeln!(
            w,
            "  {} -> {target} [dir=back, lhead={}, label={}, color={}, fontcolor={}, style=bold];",
            q("uplink"),
            q(&format!("cluster_{}", n.name)),
            q(EGRESS),
            q("#2e7d32"),
            q("#2e7d32")
        );
    }
    let _ = writeln!(w, "}}");
    o
}

// ---------------------------------------------------------------------------------------------
// SVG

const FONT: &str = "DejaVu Sans, Verdana, Helvetica, Arial, sans-serif";
/// Space around everything.
const MARGIN: i64 = 24;
/// Height of the uplink bar.
const BAR_H: i64 = 44;
/// Between the uplink bar and the clusters (egress arrows and published ports cross it), with
/// and without egress arrows (and their labels) to fit.
const TOP_GAP: [i64; 2] = [48, 64];
/// Vertical spacing of the edges meeting one side of a box.
const SLOT: i64 = 18;
/// Smallest box height.
const BOX_MIN_H: i64 = 48;
/// Between rows.
const ROW_GAP: i64 = 18;
/// Spacing of the vertical edge runs in a gutter, and of the tracks below the clusters.
const LANE: i64 = 14;
/// Smallest height of a cluster's header (name, subnet).
const HEAD_MIN: i64 = 56;
/// Smallest column width.
const COL_MIN_W: i64 = 200;
/// Smallest box width.
const BOX_MIN_W: i64 = 110;
/// Smallest gutter width.
const GUTTER_MIN: i64 = 32;
/// Where egress arrows leave a cluster, from its left edge.
const EGRESS_X: i64 = 28;

const C_LINK: &str = "#1f6feb";
const C_PUBLISH: &str = "#c2410c";
const C_EGRESS: &str = "#2e7d32";
const C_ALIAS: &str = "#8a8a8a";
const C_TEXT: &str = "#1b2a3a";

/// Estimated width of `s` at `size` px (generous: DejaVu Sans is wide).
fn text_w(s: &str, size: i64, bold: bool) -> i64 {
    let per = if bold { 72 } else { 63 };
    (s.chars().count() as i64 * size * per + 99) / 100
}

/// XML text and attribute escaping.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if c.is_control() => {}
            c => o.push(c),
        }
    }
    o
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Side {
    Left,
    Right,
}

/// One side of a box (`row: Some`) or of a cluster's header (`row: None`) in column `col`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct Face {
    col: usize,
    row: Option<usize>,
    side: Side,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Link,
    Publish,
    Egress,
}

#[derive(Clone, Copy, Debug)]
enum End {
    /// The uplink bar.
    Bar,
    /// The top of column `.0`'s cluster.
    Top(usize),
    Face(Face),
}

#[derive(Clone, Copy, Debug)]
enum Route {
    /// Straight up (egress).
    Straight,
    /// One vertical run in a gutter.
    Lane(usize),
    /// Down a gutter, along a track below the clusters, up another gutter.
    Highway(usize, usize),
}

struct Edge {
    kind: Kind,
    label: String,
    from: End,
    to: End,
    route: Route,
}

/// Something meeting a face: an edge's end (`true`: its head) or the dashed line between a
/// container's boxes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Item {
    End(usize, bool),
    Conn,
}

struct BoxItem {
    row: usize,
    col: usize,
    name: String,
    detail: String,
    alias: bool,
}

/// A vertical run of an edge in a gutter.
struct Run {
    edge: usize,
    part: usize,
    gutter: usize,
    bottom: i64,
    /// Its ends turn left / right into a face (or along the track).
    left: bool,
    right: bool,
}

/// Rank of where an edge end's other side lies, to order the ends on a face top to bottom.
const HIGHWAY_RANK: i64 = i64::MAX / 4;
fn rank(end: End) -> i64 {
    match end {
        End::Bar | End::Top(_) => -2,
        End::Face(Face { row: None, .. }) => -1,
        End::Face(Face { row: Some(r), .. }) => 2 * r as i64,
    }
}

fn text(o: &mut String, x: i64, y: i64, size: i64, attrs: &str, s: &str) {
    let _ = writeln!(o, r#"<text x="{x}" y="{y}" font-size="{size}"{attrs}>{}</text>"#, esc(s));
}

fn polyline(o: &mut String, pts: &[(i64, i64)], attrs: &str) {
    let p: Vec<String> = pts.iter().map(|(x, y)| format!("{x},{y}")).collect();
    let _ = writeln!(o, r#"<polyline points="{}" fill="none"{attrs}/>"#, p.join(" "));
}

/// A self-contained SVG 1.1 picture of the networks (see the module docs for the layout).
pub fn svg(config: &Config, plan: &NetPlan) -> String {
    let ncols = config.networks.len();
    let col_of: BTreeMap<&str, usize> = config.networks.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let cols_of = |ci: usize| -> Vec<(usize, &str)> {
        config.containers.get(ci).map_or(Vec::new(), |c| {
            c.networks.iter().filter_map(|(n, _)| col_of.get(n.as_str()).map(|&k| (k, n.as_str()))).collect()
        })
    };

    // Rows: every container on a network, grouped by its first network.
    let mut rows: Vec<(usize, usize)> =
        (0..config.containers.len()).filter_map(|ci| cols_of(ci).first().map(|&(col, _)| (col, ci))).collect();
    rows.sort();
    let row_of: BTreeMap<usize, (usize, usize)> =
        rows.iter().enumerate().map(|(r, &(col, ci))| (ci, (r, col))).collect();
    let mut boxes = Vec::new();
    let mut conns: Vec<(usize, usize, usize)> = Vec::new();
    for (r, &(_, ci)) in rows.iter().enumerate() {
        let name = config.containers.get(ci).map(|c| c.name.clone()).unwrap_or_default();
        let mut cols: Vec<usize> = Vec::new();
        for (k, (col, net)) in cols_of(ci).into_iter().enumerate() {
            boxes.push(BoxItem { row: r, col, name: name.clone(), detail: address(plan, ci, net), alias: k > 0 });
            cols.push(col);
        }
        cols.sort();
        conns.extend(cols.windows(2).map(|w| (r, w[0], w[1])));
    }
    let loopback: Vec<&str> = (config.containers.iter().enumerate())
        .filter(|&(ci, _)| cols_of(ci).is_empty())
        .map(|(_, c)| c.name.as_str())
        .collect();

    // Edges.
    let mut edges: Vec<Edge> = Vec::new();
    for (ci, labels) in published(config, plan) {
        let Some(&(r, col)) = row_of.get(&ci) else { continue };
        edges.push(Edge {
            kind: Kind::Publish,
            label: labels.join(", "),
            from: End::Bar,
            to: End::Face(Face { col, row: Some(r), side: Side::Left }),
            route: Route::Lane(col),
        });
    }
    for l in &config.links {
        let Some(&(ra, ca)) = config.containers.iter().position(|c| c.name == l.from).and_then(|ci| row_of.get(&ci))
        else {
            continue;
        };
        let (rb, cb) = match &l.to {
            LinkTarget::Container(t) => {
                match config.containers.iter().position(|c| &c.name == t).and_then(|ci| row_of.get(&ci)) {
                    Some(&(rb, cb)) => (Some(rb), cb),
                    None => continue,
                }
            }
            LinkTarget::Network(n) => match col_of.get(n.as_str()) {
                Some(&cb) => (None, cb),
                None => continue,
            },
        };
        let (out, into, route) = if ca == cb {
            (Side::Right, Side::Right, Route::Lane(ca + 1))
        } else if cb == ca + 1 {
            (Side::Right, Side::Left, Route::Lane(cb))
        } else if ca == cb + 1 {
            (Side::Left, Side::Right, Route::Lane(ca))
        } else if cb > ca {
            (Side::Right, Side::Left, Route::Highway(ca + 1, cb))
        } else {
            (Side::Left, Side::Right, Route::Highway(ca, cb + 1))
        };
        edges.push(Edge {
            kind: Kind::Link,
            label: ports_label(&l.ports),
            from: End::Face(Face { col: ca, row: Some(ra), side: out }),
            to: End::Face(Face { col: cb, row: rb, side: into }),
            route,
        });
    }
    for (ni, n) in config.networks.iter().enumerate() {
        if n.egress {
            edges.push(Edge {
                kind: Kind::Egress,
                label: EGRESS.to_string(),
                from: End::Top(ni),
                to: End::Bar,
                route: Route::Straight,
            });
        }
    }

    // What meets each face, top to bottom.
    let mut faces: BTreeMap<Face, Vec<(i64, Item)>> = BTreeMap::new();
    for (e, edge) in edges.iter().enumerate() {
        let highway = matches!(edge.route, Route::Highway(..));
        if let End::Face(f) = edge.from {
            faces.entry(f).or_default().push((if highway { HIGHWAY_RANK } else { rank(edge.to) }, Item::End(e, false)));
        }
        if let End::Face(f) = edge.to {
            faces
                .entry(f)
                .or_default()
                .push((if highway { HIGHWAY_RANK } else { rank(edge.from) }, Item::End(e, true)));
        }
    }
    for &(r, a, b) in &conns {
        let own = 2 * r as i64;
        faces.entry(Face { col: a, row: Some(r), side: Side::Right }).or_default().push((own, Item::Conn));
        faces.entry(Face { col: b, row: Some(r), side: Side::Left }).or_default().push((own, Item::Conn));
    }
    for items in faces.values_mut() {
        items.sort_by_key(|&(k, _)| k);
    }

    // Slots per row (odd when a dashed line runs through its middle) and heights.
    let mut slots = vec![1i64; rows.len()];
    let mut has_conn = vec![false; rows.len()];
    let mut head_n = 0i64;
    for (f, items) in &faces {
        let n = items.len() as i64;
        match f.row {
            Some(r) => {
                let conn = items.iter().any(|(_, i)| *i == Item::Conn);
                let need = if conn {
                    let own = 2 * r as i64;
                    let up = items.iter().filter(|(k, _)| *k < own).count() as i64;
                    let down = items.iter().filter(|(k, _)| *k > own).count() as i64;
                    2 * up.max(down) + 1
                } else {
                    n
                };
                if let Some(s) = slots.get_mut(r) {
                    *s = (*s).max(need);
                }
                if let Some(h) = has_conn.get_mut(r) {
                    *h |= conn;
                }
            }
            None => head_n = head_n.max(n),
        }
    }
    for (s, c) in slots.iter_mut().zip(&has_conn) {
        if *c && *s % 2 == 0 {
            *s += 1;
        }
    }
    let heights: Vec<i64> = slots.iter().map(|&m| BOX_MIN_H.max((m + 1) * SLOT)).collect();
    let head = HEAD_MIN.max(24 + head_n * SLOT + 8);
    let bar_y = MARGIN;
    let bar_bottom = bar_y + BAR_H;
    let cluster_top = bar_bottom + TOP_GAP[usize::from(edges.iter().any(|e| e.kind == Kind::Egress))];
    let rows_top = cluster_top + head;
    let mut row_top = Vec::with_capacity(rows.len());
    let mut y = rows_top;
    for h in &heights {
        row_top.push(y);
        y += h + ROW_GAP;
    }
    let rows_end = if rows.is_empty() { rows_top + BOX_MIN_H } else { y - ROW_GAP };
    let cluster_bottom = rows_end + 16;
    let center =
        |r: usize| row_top.get(r).copied().unwrap_or(rows_top) + heights.get(r).copied().unwrap_or(BOX_MIN_H) / 2;

    // The y of every edge end on a face.
    let mut end_y: BTreeMap<(usize, bool), i64> = BTreeMap::new();
    let mut conn_y: BTreeMap<usize, i64> = BTreeMap::new();
    for (f, items) in &faces {
        match f.row {
            Some(r) => {
                let m = slots.get(r).copied().unwrap_or(1);
                let start = match items.iter().position(|(_, i)| *i == Item::Conn) {
                    Some(i) => (m - 1) / 2 - i as i64,
                    None => (m - items.len() as i64) / 2,
                };
                for (i, (_, item)) in items.iter().enumerate() {
                    let k = start + i as i64;
                    let y = center(r) + (2 * k - (m - 1)) * SLOT / 2;
                    match item {
                        Item::End(e, head) => {
                            end_y.insert((*e, *head), y);
                        }
                        Item::Conn => {
                            conn_y.insert(r, y);
                        }
                    }
                }
            }
            None => {
                for (k, (_, item)) in items.iter().enumerate() {
                    if let Item::End(e, head) = item {
                        end_y.insert((*e, *head), cluster_top + 24 + k as i64 * SLOT);
                    }
                }
            }
        }
    }

    // Tracks below the clusters, and the vertical runs in each gutter.
    let highway_top = cluster_bottom + 22;
    let mut track: BTreeMap<usize, i64> = BTreeMap::new();
    let mut runs: Vec<Run> = Vec::new();
    let turns = |f: Face, g: usize| (f.col + 1 == g, f.col == g);
    for (e, edge) in edges.iter().enumerate() {
        let ey = |head: bool| end_y.get(&(e, head)).copied().unwrap_or(cluster_top);
        match (edge.route, edge.from, edge.to) {
            (Route::Lane(g), from, End::Face(to)) => {
                let (mut left, mut right) = turns(to, g);
                let mut bottom = ey(true);
                if let End::Face(f) = from {
                    let (l, r) = turns(f, g);
                    left |= l;
                    right |= r;
                    bottom = bottom.max(ey(false));
                }
                runs.push(Run { edge: e, part: 0, gutter: g, bottom, left, right });
            }
            (Route::Highway(g1, g2), End::Face(from), End::Face(to)) => {
                let hy = highway_top + track.len() as i64 * LANE;
                track.insert(e, hy);
                let (l1, r1) = turns(from, g1);
                runs.push(Run { edge: e, part: 0, gutter: g1, bottom: hy, left: l1 || g2 < g1, right: r1 || g2 > g1 });
                let (l2, r2) = turns(to, g2);
                runs.push(Run { edge: e, part: 1, gutter: g2, bottom: hy, left: l2 || g1 < g2, right: r2 || g1 > g2 });
            }
            _ => {}
        }
    }
    let highway_bottom = if track.is_empty() { cluster_bottom } else { highway_top + (track.len() as i64 - 1) * LANE };
    // Order the runs of a gutter to spare crossings: runs turning left on the left, the deepest
    // outermost; runs turning right on the right, the deepest outermost... of their own side.
    let mut lanes: BTreeMap<usize, Vec<&Run>> = BTreeMap::new();
    for run in &runs {
        lanes.entry(run.gutter).or_default().push(run);
    }
    for list in lanes.values_mut() {
        list.sort_by_key(|r| match (r.left, r.right) {
            (true, false) => (0, r.bottom, r.edge, r.part),
            (false, true) => (2, -r.bottom, r.edge, r.part),
            _ => (1, 0, r.edge, r.part),
        });
    }

    // Widths: labels sit above the last stretch of their edge, in the gutter beside the face.
    let mut label_l = vec![8i64; ncols + 1];
    let mut label_r = vec![8i64; ncols + 1];
    for edge in &edges {
        if let (End::Face(f), Kind::Link | Kind::Publish) = (edge.to, edge.kind) {
            let w = text_w(&edge.label, 12, false) + 14;
            let (list, g) = match f.side {
                Side::Left => (&mut label_r, f.col),
                Side::Right => (&mut label_l, f.col + 1),
            };
            if let Some(x) = list.get_mut(g) {
                *x = (*x).max(w);
            }
        }
    }
    let gutter_w: Vec<i64> = (0..=ncols)
        .map(|g| {
            let n = lanes.get(&g).map_or(0, Vec::len) as i64;
            GUTTER_MIN.max(label_l[g] + n * LANE + label_r[g])
        })
        .collect();
    let mut box_w = vec![BOX_MIN_W; ncols];
    for b in &boxes {
        if let Some(w) = box_w.get_mut(b.col) {
            *w = (*w).max(text_w(&b.name, 14, true).max(text_w(&b.detail, 12, false)) + 28);
        }
    }
    let col_w: Vec<i64> = config
        .networks
        .iter()
        .enumerate()
        .map(|(ni, n)| {
            let sub = format!("{}{}", subnet(plan, ni), if n.egress { " · egress" } else { "" });
            [
                COL_MIN_W,
                box_w[ni] + 48,
                text_w(&n.name, 15, true) + 28,
                text_w(&sub, 12, false) + 28,
                if n.egress { EGRESS_X + 8 + text_w(EGRESS, 12, false) + 12 } else { 0 },
            ]
            .into_iter()
            .max()
            .unwrap_or(COL_MIN_W)
        })
        .collect();
    let mut gutter_x = Vec::with_capacity(ncols + 1);
    let mut col_x = Vec::with_capacity(ncols);
    let mut x = MARGIN;
    for g in 0..=ncols {
        gutter_x.push(x);
        x += gutter_w[g];
        if g < ncols {
            col_x.push(x);
            x += col_w[g];
        }
    }
    let nets_right = x;
    let lane_x: BTreeMap<(usize, usize), i64> = lanes
        .iter()
        .flat_map(|(&g, list)| {
            let base = gutter_x[g] + label_l[g] + LANE / 2;
            list.iter().enumerate().map(move |(k, r)| ((r.edge, r.part), base + k as i64 * LANE))
        })
        .collect();
    let box_x = |col: usize| col_x[col] + (col_w[col] - box_w[col]) / 2;
    let face_x = |f: Face| match (f.row, f.side) {
        (Some(_), Side::Left) => box_x(f.col),
        (Some(_), Side::Right) => box_x(f.col) + box_w[f.col],
        (None, Side::Left) => col_x[f.col],
        (None, Side::Right) => col_x[f.col] + col_w[f.col],
    };

    let mode = uplink_mode(&plan.net.uplink);
    let up_none = plan.net.uplink.mode == UplinkMode::None;
    let bar_text_w = text_w("uplink", 15, true) + text_w(&format!("  ·  {mode}"), 13, false);
    let bar_right = nets_right.max(MARGIN + bar_text_w + 40);

    // Containers on no network, to the right.
    let lb_x = nets_right + 16;
    let lb_box_w = loopback
        .iter()
        .map(|n| text_w(n, 14, true) + 28)
        .chain([text_w("loopback only", 12, false) + 28, BOX_MIN_W])
        .max()
        .unwrap_or(BOX_MIN_W);
    let lb_w = lb_box_w + 32;
    let lb_head = 52;
    let lb_bottom = cluster_top + lb_head + loopback.len() as i64 * (BOX_MIN_H + 12) + 4;

    // Legend.
    let mut legend: Vec<(Option<Kind>, &str)> = Vec::new();
    let has = |k: Kind| edges.iter().any(|e| e.kind == k);
    if has(Kind::Link) {
        legend.push((Some(Kind::Link), "link: new connections allowed to these ports"));
    }
    if has(Kind::Publish) {
        legend.push((Some(Kind::Publish), "published port: uplink port → container port"));
    }
    if has(Kind::Egress) {
        legend.push((Some(Kind::Egress), "egress: out of the uplink, masqueraded"));
    }
    if !conns.is_empty() {
        legend.push((None, "dashed: the same container on another network (its address there)"));
    }
    let note = "Members of a network reach each other; every other new connection is rejected.";
    let legend_top = [cluster_bottom, highway_bottom, if loopback.is_empty() { 0 } else { lb_bottom }]
        .into_iter()
        .max()
        .unwrap_or(cluster_bottom)
        + 34;
    let legend_w =
        legend.iter().map(|(_, t)| 40 + text_w(t, 12, false)).chain([text_w(note, 12, false)]).max().unwrap_or(0);
    let height = legend_top + (legend.len() as i64) * 20 + 8 + MARGIN;
    let width = [bar_right, if loopback.is_empty() { 0 } else { lb_x + lb_w }, MARGIN + legend_w]
        .into_iter()
        .max()
        .unwrap_or(0)
        + MARGIN;

    // Drawing.
    let mut o = String::new();
    let _ = writeln!(o, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="{FONT}">"#
    );
    let _ = writeln!(o, "<title>{}</title>", esc(&format!("keel graph: {}", config.name)));
    let _ = writeln!(o, "<defs>");
    for (id, color) in [("link", C_LINK), ("publish", C_PUBLISH), ("egress", C_EGRESS)] {
        let _ = writeln!(
            o,
            r#"<marker id="arrow-{id}" viewBox="0 0 10 10" refX="10" refY="5" markerUnits="userSpaceOnUse" markerWidth="10" markerHeight="10" orient="auto"><path d="M0,1 L10,5 L0,9 z" fill="{color}"/></marker>"#
        );
    }
    let _ = writeln!(o, "</defs>");
    let _ = writeln!(o, r##"<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>"##);

    // Clusters.
    for (ni, n) in config.networks.iter().enumerate() {
        let (x, w) = (col_x[ni], col_w[ni]);
        let _ = writeln!(
            o,
            r##"<rect x="{x}" y="{cluster_top}" width="{w}" height="{}" rx="10" fill="#f3f6fa" stroke="{}" stroke-width="1.4"/>"##,
            cluster_bottom - cluster_top,
            if n.egress { "#6aa56e" } else { "#8a99ad" }
        );
        text(&mut o, x + 14, cluster_top + 23, 15, &format!(r#" font-weight="bold" fill="{C_TEXT}""#), &n.name);
        let egress = if n.egress {
            format!(r#"<tspan dx="5" fill="{C_EGRESS}" font-weight="bold">· egress</tspan>"#)
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            r##"<text x="{}" y="{}" font-size="12" fill="#445566">{}{egress}</text>"##,
            x + 14,
            cluster_top + 42,
            esc(&subnet(plan, ni))
        );
        if !boxes.iter().any(|b| b.col == ni) {
            text(
                &mut o,
                x + w / 2,
                rows_top + 28,
                12,
                r##" text-anchor="middle" font-style="italic" fill="#888888""##,
                "(no containers)",
            );
        }
    }

    // The uplink.
    let (fill, stroke, dash) =
        if up_none { ("#eeeeee", "#999999", r#" stroke-dasharray="6 4""#) } else { ("#dbe7fb", "#4a6fa5", "") };
    let _ = writeln!(
        o,
        r#"<rect x="{MARGIN}" y="{bar_y}" width="{}" height="{BAR_H}" rx="8" fill="{fill}" stroke="{stroke}" stroke-width="1.4"{dash}/>"#,
        bar_right - MARGIN
    );
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle" fill="{C_TEXT}"><tspan font-size="15" font-weight="bold">uplink</tspan><tspan font-size="13" dx="8">·  {}</tspan></text>"#,
        (MARGIN + bar_right) / 2,
        bar_y + BAR_H / 2 + 5,
        esc(&mode)
    );

    // Boxes.
    for b in &boxes {
        let (x, y, w, h) = (box_x(b.col), row_top[b.row], box_w[b.col], heights[b.row]);
        let (fill, stroke, extra, name_fill, detail_fill) = if b.alias {
            ("#fafafa", C_ALIAS, r#" stroke-dasharray="5 3""#, "#666666", "#777777")
        } else {
            ("#ffffff", "#3b4a5a", "", C_TEXT, "#445566")
        };
        let _ = writeln!(
            o,
            r#"<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" fill="{fill}" stroke="{stroke}" stroke-width="1.4"{extra}/>"#
        );
        let cx = x + w / 2;
        let cy = y + h / 2;
        text(
            &mut o,
            cx,
            cy - 3,
            14,
            &format!(r#" text-anchor="middle" font-weight="bold" fill="{name_fill}""#),
            &b.name,
        );
        text(&mut o, cx, cy + 14, 12, &format!(r#" text-anchor="middle" fill="{detail_fill}""#), &b.detail);
    }
    if !loopback.is_empty() {
        let _ = writeln!(
            o,
            r##"<rect x="{lb_x}" y="{cluster_top}" width="{lb_w}" height="{}" rx="10" fill="#eeeeee" stroke="#aaaaaa" stroke-width="1.4" stroke-dasharray="6 4"/>"##,
            lb_bottom - cluster_top
        );
        text(&mut o, lb_x + 14, cluster_top + 23, 15, r##" font-weight="bold" fill="#555555""##, "no network");
        text(&mut o, lb_x + 14, cluster_top + 42, 12, r##" fill="#777777""##, "loopback only");
        for (i, name) in loopback.iter().enumerate() {
            let (x, y) = (lb_x + 16, cluster_top + lb_head + i as i64 * (BOX_MIN_H + 12));
            let _ = writeln!(
                o,
                r##"<rect x="{x}" y="{y}" width="{lb_box_w}" height="{BOX_MIN_H}" rx="6" fill="#f7f7f7" stroke="#999999" stroke-width="1.4"/>"##
            );
            let cx = x + lb_box_w / 2;
            text(&mut o, cx, y + 21, 14, r##" text-anchor="middle" font-weight="bold" fill="#555555""##, name);
            text(&mut o, cx, y + 38, 12, r##" text-anchor="middle" fill="#777777""##, "loopback only");
        }
    }

    // Edges, then their labels.
    for &(r, a, b) in &conns {
        let y = conn_y.get(&r).copied().unwrap_or_else(|| center(r));
        let pts = [(box_x(a) + box_w[a], y), (box_x(b), y)];
        polyline(&mut o, &pts, &format!(r#" stroke="{C_ALIAS}" stroke-width="1.3" stroke-dasharray="4 3""#));
    }
    let mut labels = String::new();
    for (e, edge) in edges.iter().enumerate() {
        let (color, id) = match edge.kind {
            Kind::Link => (C_LINK, "link"),
            Kind::Publish => (C_PUBLISH, "publish"),
            Kind::Egress => (C_EGRESS, "egress"),
        };
        let attrs = format!(r#" stroke="{color}" stroke-width="1.6" marker-end="url(#arrow-{id})""#);
        let ey = |head: bool| end_y.get(&(e, head)).copied().unwrap_or(cluster_top);
        let lx = |part: usize| lane_x.get(&(e, part)).copied().unwrap_or(0);
        let pts: Vec<(i64, i64)> = match (edge.route, edge.from, edge.to) {
            (Route::Straight, End::Top(col), _) => {
                let x = col_x[col] + EGRESS_X;
                text(
                    &mut labels,
                    x + 8,
                    (bar_bottom + cluster_top) / 2 + 4,
                    12,
                    &format!(r#" fill="{color}""#),
                    &edge.label,
                );
                vec![(x, cluster_top), (x, bar_bottom)]
            }
            (Route::Lane(_), End::Bar, End::Face(to)) => {
                let _ = writeln!(o, r#"<circle cx="{}" cy="{bar_bottom}" r="3" fill="{color}"/>"#, lx(0));
                vec![(lx(0), bar_bottom), (lx(0), ey(true)), (face_x(to), ey(true))]
            }
            (Route::Lane(_), End::Face(from), End::Face(to)) => {
                vec![(face_x(from), ey(false)), (lx(0), ey(false)), (lx(0), ey(true)), (face_x(to), ey(true))]
            }
            (Route::Highway(..), End::Face(from), End::Face(to)) => {
                let hy = track.get(&e).copied().unwrap_or(highway_top);
                vec![
                    (face_x(from), ey(false)),
                    (lx(0), ey(false)),
                    (lx(0), hy),
                    (lx(1), hy),
                    (lx(1), ey(true)),
                    (face_x(to), ey(true)),
                ]
            }
            _ => continue,
        };
        polyline(&mut o, &pts, &attrs);
        if let End::Face(f) = edge.to {
            let y = ey(true) - 5;
            match f.side {
                Side::Left => {
                    let x = col_x[f.col] - 6;
                    text(&mut labels, x, y, 12, &format!(r#" text-anchor="end" fill="{color}""#), &edge.label);
                }
                Side::Right => {
                    let x = col_x[f.col] + col_w[f.col] + 6;
                    text(&mut labels, x, y, 12, &format!(r#" fill="{color}""#), &edge.label);
                }
            }
        }
    }
    o.push_str(&labels);

    // Legend.
    for (i, (kind, t)) in legend.iter().enumerate() {
        let y = legend_top + i as i64 * 20;
        let attrs = match kind {
            Some(Kind::Link) => format!(r#" stroke="{C_LINK}" stroke-width="1.6" marker-end="url(#arrow-link)""#),
            Some(Kind::Publish) => {
                format!(r#" stroke="{C_PUBLISH}" stroke-width="1.6" marker-end="url(#arrow-publish)""#)
            }
            Some(Kind::Egress) => format!(r#" stroke="{C_EGRESS}" stroke-width="1.6" marker-end="url(#arrow-egress)""#),
            None => format!(r#" stroke="{C_ALIAS}" stroke-width="1.3" stroke-dasharray="4 3""#),
        };
        polyline(&mut o, &[(MARGIN, y - 4), (MARGIN + 30, y - 4)], &attrs);
        text(&mut o, MARGIN + 40, y, 12, r##" fill="#333333""##, t);
    }
    text(&mut o, MARGIN, legend_top + legend.len() as i64 * 20, 12, r##" fill="#555555" font-style="italic""##, note);
    let _ = writeln!(o, "</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netplan;
    use std::path::Path;

    fn load(extra: &str) -> Config {
        let text = format!(
            "version = 1\nname = \"t\"\n[kernel]\npackage.x86_64 = {{ path = \"k.deb\", sha256 = \"{0}\" }}\nstub.x86_64 = {{ path = \"s.deb\", sha256 = \"{0}\" }}\n{extra}",
            "0".repeat(64)
        );
        Config::parse(Path::new("t.toml"), text).unwrap_or_else(|e| panic!("{e}"))
    }

    const WEB: &str = r#"
[host.network]
mode = "static"
address = "192.168.7.10/24"
gateway = "192.168.7.1"
[[network]]
name = "front"
egress = true
[[network]]
name = "back"
subnet = "10.90.0.0/24"
[[network]]
name = "ops"
[[container]]
name = "web"
image = "oci:x"
networks = ["front"]
ports = ["8080:80", "8443:443"]
[[container]]
name = "api"
image = "oci:x"
networks = ["front", "back"]
[[container]]
name = "db"
image = "oci:x"
networks = ["back"]
[[container]]
name = "mon"
image = "oci:x"
networks = ["ops"]
ports = ["9090:9090/udp"]
[[container]]
name = "batch"
image = "oci:x"
[[link]]
from = "api"
to = "db"
ports = ["5432/tcp"]
[[link]]
from = "mon"
to = "network:front"
ports = ["9100/tcp", "53/udp"]
[[link]]
from = "web"
to = "api"
ports = ["8000"]
"#;

    fn both(extra: &str) -> (String, String) {
        let c = load(extra);
        let p = netplan::plan(&c).unwrap();
        (dot(&c, &p), svg(&c, &p))
    }

    #[test]
    fn dot_has_clusters_nodes_and_edges() {
        let (d, _) = both(WEB);
        for want in [
            "digraph \"keel\" {",
            "compound=true",
            "subgraph \"cluster_front\" {",
            "label=\"front\\n10.89.1.0/24\\negress\";",
            "subgraph \"cluster_back\" {",
            "label=\"back\\n10.90.0.0/24\";",
            "\"c/web\" [label=\"web\\n10.89.1.2\"];",
            "\"c/api@back\" [label=\"api\\n10.90.0.2\", style=\"rounded,dashed\"",
            "\"c/api\" -> \"c/api@back\" [dir=none, style=dashed",
            "\"c/batch\" [label=\"batch\\nloopback only\"",
            "{ rank=source; \"uplink\" [label=\"uplink\\nstatic 192.168.7.10/24 via 192.168.7.1\"",
            "\"c/api\" -> \"c/db\" [label=\"5432/tcp\"",
            "\"c/mon\" -> \"c/web\" [label=\"9100/tcp, 53/udp\", color=\"#1f6feb\", fontcolor=\"#1f6feb\", lhead=\"cluster_front\"];",
            "\"uplink\" -> \"c/web\" [label=\"8080→80/tcp\"",
            "\"uplink\" -> \"c/web\" [label=\"8443→443/tcp\"",
            "\"uplink\" -> \"c/mon\" [label=\"9090→9090/udp\"",
            "\"uplink\" -> \"c/web\" [dir=back, lhead=\"cluster_front\", label=\"egress (masquerade)\"",
        ] {
            assert!(d.contains(want), "missing {want:?} in:\n{d}");
        }
        // One egress edge (only front has egress); braces balance.
        assert_eq!(d.matches("egress (masquerade)").count(), 1, "{d}");
        assert_eq!(d.matches('{').count(), d.matches('}').count());
        assert!(d.ends_with("}\n"));
    }

    #[test]
    fn dot_escapes_and_handles_edge_cases() {
        assert_eq!(q("a\"b\\c\nd\u{7}"), "\"a\\\"b\\\\c\\nd\"");
        // A link to the source's own network has no lhead (Graphviz would refuse it); an empty
        // network still gets a node so its cluster is drawn; no uplink says none.
        let (d, s) = both(
            r#"
[host.network]
mode = "none"
[[network]]
name = "a"
[[network]]
name = "empty"
[[container]]
name = "x"
image = "oci:x"
networks = ["a"]
[[container]]
name = "y"
image = "oci:x"
networks = ["a"]
[[link]]
from = "x"
to = "network:a"
ports = ["1/udp"]
"#,
        );
        assert!(d.contains("\"c/x\" -> \"c/y\" [label=\"1/udp\", color=\"#1f6feb\", fontcolor=\"#1f6feb\"];"), "{d}");
        assert!(d.contains("\"n/empty\" [label=\"(no containers)\""), "{d}");
        assert!(d.contains("uplink\\nnone"), "{d}");
        assert!(s.contains("(no containers)") && s.contains("uplink") && s.contains("none"));
    }

    /// Tags open and close in order (a small check, not an XML parser), and text has no raw `&`.
    fn well_formed(s: &str) {
        assert!(s.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\""));
        let mut stack: Vec<String> = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find('<') {
            let text = &rest[..i];
            for (j, _) in text.match_indices('&') {
                let ent = &text[j..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|e| ent.starts_with(e)),
                    "raw & in {text:?}"
                );
            }
            let end = rest[i..].find('>').expect("unclosed tag") + i;
            let tag = &rest[i + 1..end];
            assert!(!tag.contains('<'), "< inside tag {tag:?}");
            assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes in {tag:?}");
            if tag.starts_with('?') {
            } else if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap_or("").to_string());
            }
            rest = &rest[end + 1..];
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        assert_eq!(rest.trim(), "");
    }

    /// Every `<rect>` (with its x, y, width, height).
    fn rects(s: &str) -> Vec<[i64; 4]> {
        s.lines()
            .filter(|l| l.starts_with("<rect ") && l.contains(" rx=\"6\""))
            .map(|l| {
                let attr = |k: &str| {
                    let i = l.find(&format!(" {k}=\"")).unwrap() + k.len() + 3;
                    l[i..].split('"').next().unwrap().parse::<i64>().unwrap()
                };
                [attr("x"), attr("y"), attr("width"), attr("height")]
            })
            .collect()
    }

    #[test]
    fn svg_is_well_formed_complete_and_deterministic() {
        let (_, s) = both(WEB);
        well_formed(&s);
        assert!(s.contains("viewBox=\"0 0 ") && s.contains(" width=\"") && s.contains(" height=\""));
        for name in ["web", "api", "db", "mon", "batch", "front", "back", "ops"] {
            assert!(s.contains(&format!(">{name}</text>")), "no {name} in the SVG");
        }
        for label in ["5432/tcp", "9100/tcp, 53/udp", "8000/tcp", "8080→80/tcp, 8443→443/tcp", "9090→9090/udp", EGRESS]
        {
            assert!(s.contains(&format!(">{label}</text>")), "no label {label}");
        }
        assert!(s.contains("static 192.168.7.10/24 via 192.168.7.1"));
        assert!(s.contains(">10.90.0.2</text>"), "api's address on back");
        assert_eq!(s, both(WEB).1, "same config, same bytes");

        // No two boxes overlap (clusters hold boxes; the background holds everything).
        let boxes = rects(&s);
        let size =
            |k: &str| s.split(&format!(" {k}=\"")).nth(1).unwrap().split('"').next().unwrap().parse::<i64>().unwrap();
        let (w, h) = (size("width"), size("height"));
        assert_eq!(boxes.len(), 6, "web, api, api on back, db, mon, batch: {boxes:?}");
        for (i, a) in boxes.iter().enumerate() {
            assert!(a[0] >= 0 && a[1] >= 0 && a[0] + a[2] <= w && a[1] + a[3] <= h, "{a:?} outside");
            for b in &boxes[i + 1..] {
                let apart = a[0] + a[2] <= b[0] || b[0] + b[2] <= a[0] || a[1] + a[3] <= b[1] || b[1] + b[3] <= a[1];
                assert!(apart, "{a:?} overlaps {b:?}");
            }
        }
    }

    #[test]
    fn svg_escapes_text_and_handles_no_networks() {
        assert_eq!(esc("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        let (d, s) = both("[[container]]\nname = \"solo\"\nimage = \"oci:x\"\n");
        well_formed(&s);
        assert!(s.contains(">solo</text>") && s.contains(">loopback only</text>"));
        assert!(d.contains("\"c/solo\" [label=\"solo\\nloopback only\""));
    }

    #[test]
    fn summary_counts() {
        assert_eq!(summary(&load(WEB)), "3 networks, 5 containers, 3 links, 3 published ports");
        let one = "[[network]]\nname = \"n\"\n[[container]]\nname = \"a\"\nimage = \"oci:x\"\nnetworks = [\"n\"]\nports = [\"80:80\"]\n";
        assert_eq!(summary(&load(one)), "1 network, 1 container, 0 links, 1 published port");
    }
}
