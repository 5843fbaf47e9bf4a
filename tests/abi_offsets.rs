// SPDX-License-Identifier: GPL-2.0-or-later
//! The bindgen types generated from slurm-headers/layout_<tag>.h must place every
//! member the plugin reads exactly where tests/data/abi-offsets.md (measured with
//! offsetof() against configured upstream Slurm trees) and the project's own
//! measurements of further layouts (tests/data/abi-offsets-<release>.md, same
//! format) say, and have the measured sizeof. Every numbered cell of the tables
//! must be checked: no silent skips.
//!
//! Cells marked "—" (member absent in that release) are not checkable from Rust: a
//! missing field is a compile error, so they are simply not listed below.

use std::collections::{BTreeMap, BTreeSet};
use std::mem::{offset_of, size_of};

const TABLE: &str = include_str!("data/abi-offsets.md");
/// Layouts measured by the project itself, one column each (their provenance is
/// in each file).
const EXTRA_TABLES: [(&str, &str); 1] =
    [("data/abi-offsets-26.05.5.md", include_str!("data/abi-offsets-26.05.5.md"))];

/// One measured cell: layout column ("24.11.7") or series ("24.11") for slurm_conf_t.
type Key = (String, String, String); // (column, struct, field)

#[derive(Default)]
struct Table {
    layouts: Vec<String>,
    /// (layout, struct, field) -> (C type, offset)
    offsets: BTreeMap<Key, (String, usize)>,
    /// (layout, struct) -> sizeof, only where the table gives a number
    sizes: BTreeMap<(String, String), usize>,
    /// (series, "slurm_conf_t", field) -> (C type, offset)
    conf: BTreeMap<Key, (String, usize)>,
    conf_series: Vec<String>,
}

fn cells(line: &str) -> Vec<String> {
    line.trim().trim_matches('|').split('|').map(|c| c.trim().to_string()).collect()
}

fn number(cell: &str) -> Option<usize> {
    match cell {
        "—" | "-" | "" => None,
        n => Some(n.parse().unwrap_or_else(|_| panic!("bad table cell {n:?}"))),
    }
}

/// The fact sheet with the extra tables' columns added.
fn parse_table() -> Table {
    let mut t = parse_one(TABLE);
    assert!(!t.conf.is_empty(), "no slurm_conf_t table");
    for (name, text) in EXTRA_TABLES {
        let x = parse_one(text);
        for col in &x.layouts {
            assert!(!t.layouts.contains(col), "{name}: column {col} is already in the fact sheet");
        }
        t.layouts.extend(x.layouts);
        for (k, v) in x.offsets {
            assert!(t.offsets.insert(k.clone(), v).is_none(), "{name}: {k:?} twice");
        }
        t.sizes.extend(x.sizes);
        for (k, v) in x.conf {
            assert!(t.conf.insert(k.clone(), v).is_none(), "{name}: slurm_conf_t {k:?} twice");
        }
    }
    t
}

fn parse_one(text: &str) -> Table {
    let lines: Vec<&str> = text.lines().collect();
    let mut t = Table::default();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(rest) = line.strip_prefix("### ") {
            let name = rest.split_whitespace().next().unwrap().to_string();
            let header = cells(lines[i + 1]);
            assert_eq!(&header[..2], ["field", "type"], "table {name}: unexpected header");
            let columns: Vec<String> = header[2..].to_vec();
            let is_conf = name == "slurm_conf_t";
            if is_conf {
                t.conf_series = columns.clone();
            } else {
                let sizes = rest.split_once("sizeof:").unwrap_or_else(|| panic!("{name}: no sizeof")).1;
                for pair in sizes.split_whitespace() {
                    let (col, n) = pair.split_once('=').unwrap();
                    assert!(columns.iter().any(|c| c == col), "{name}: sizeof for unknown column {col}");
                    if let Some(n) = number(n) {
                        t.sizes.insert((col.to_string(), name.clone()), n);
                    }
                }
                if t.layouts.is_empty() {
                    t.layouts = columns.clone();
                }
                assert_eq!(t.layouts, columns, "table {name}: columns differ from the first table");
            }
            i += 3;
            while i < lines.len() && lines[i].starts_with('|') {
                let row = cells(lines[i]);
                assert_eq!(row.len(), columns.len() + 2, "{name}: ragged row {:?}", lines[i]);
                for (col, cell) in columns.iter().zip(&row[2..]) {
                    if let Some(off) = number(cell) {
                        let key = (col.clone(), name.clone(), row[0].clone());
                        let map = if is_conf { &mut t.conf } else { &mut t.offsets };
                        assert!(map.insert(key, (row[1].clone(), off)).is_none(), "duplicate {name}.{}", row[0]);
                    }
                }
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    t
}

/// Size of a member's type, given an accessor; lets the test compare each declared
/// member's width with the table's type column.
fn member_size<T, F>(_: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// Width of the table's C types on x86-64 LP64.
fn type_size(ctype: &str) -> usize {
    match ctype {
        "uint16_t" => 2,
        "uint32_t" | "int" => 4,
        "uint64_t" | "time_t" | "sluid_t" => 8,
        "slurm_step_id_t" => 24,
        t if t.ends_with('*') => 8,
        t => panic!("unknown type {t:?} in the table: teach type_size()"),
    }
}

#[derive(Default)]
struct Measured {
    /// (column, struct, field) -> (offset, member size)
    offsets: BTreeMap<Key, (usize, usize)>,
    sizes: BTreeMap<(String, String), usize>,
    conf: BTreeMap<Key, (usize, usize)>,
}

impl Measured {
    fn put(&mut self, col: &str, s: &str, f: &str, off: usize, width: usize) {
        let key = (col.to_string(), s.to_string(), f.to_string());
        assert!(self.offsets.insert(key, (off, width)).is_none(), "{col} {s}.{f} listed twice");
    }
}

/// Record offset_of! and the member width of each listed field of one struct.
macro_rules! fields {
    ($m:ident, $col:expr, $ty:ty, $name:literal, [$($f:ident),* $(,)?]) => {
        $( $m.put($col, $name, stringify!($f), offset_of!($ty, $f), member_size(|r: &$ty| &r.$f)); )*
        $m.sizes.insert(($col.to_string(), $name.to_string()), size_of::<$ty>());
    };
}

/// All declarations of one layout module. The optional lists name the members
/// and structs that only exist from some release on.
macro_rules! layout {
    ($m:ident, $module:ident, $col:literal,
     job_record_extra: [$($jx:ident),*],
     identity: $identity:tt,
     step_id: $step:tt) => {{
        use jobcomp_kafka::slurm::layouts::$module as l;
        let col: &str = $col;
        fields!($m, col, l::job_record, "job_record", [
            account, admin_comment, alloc_node, array_job_id, array_task_id, assoc_ptr,
            batch_flag, comment, container, db_index, derived_ec, details, end_time,
            exit_code, group_id, het_job_id, het_job_offset, job_id, job_state, name,
            nodes, partition, part_ptr, priority, qos_ptr, resize_time, resv_name,
            start_time, time_limit, total_cpus, total_nodes, tres_req_str,
            tres_fmt_req_str, tres_alloc_str, tres_fmt_alloc_str, user_id, wckey
            $(, $jx)*
        ]);
        fields!($m, col, l::job_details, "job_details", [
            begin_time, cpus_per_task, exc_nodes, features, ntasks_per_node,
            ntasks_per_tres, num_tasks, orig_dependency, std_err, std_in, std_out,
            submit_time, work_dir
        ]);
        fields!($m, col, l::part_record, "part_record", [max_time, name]);
        fields!($m, col, l::slurmdb_assoc_rec, "slurmdb_assoc_rec", [acct, cluster, usage]);
        fields!($m, col, l::slurmdb_assoc_usage, "slurmdb_assoc_usage", [parent_assoc_ptr]);
        fields!($m, col, l::slurmdb_qos_rec, "slurmdb_qos_rec", [name]);
        layout!(@identity $m, l, col, $identity);
        layout!(@step $m, l, col, $step);
        // Sanity magics (abi-offsets.md prose, not a table row).
        let job_magic = if stringify!($step) == "yes" { 24 } else { 0 };
        assert_eq!(offset_of!(l::job_record, magic), job_magic, "{col} job_record.magic");
        assert_eq!(offset_of!(l::job_details, magic), 0, "{col} job_details.magic");
        assert_eq!(offset_of!(l::part_record, magic), 0, "{col} part_record.magic");
        assert_eq!(member_size(|r: &l::job_record| &r.magic), 4);
        // slurm_conf_t: the series column; no sizeof (not measured).
        let series = col.rsplitn(2, '.').nth(1).unwrap();
        for (f, off, width) in [
            ("cluster_name", offset_of!(l::slurm_conf_t, cluster_name), member_size(|r: &l::slurm_conf_t| &r.cluster_name)),
            ("debug_flags", offset_of!(l::slurm_conf_t, debug_flags), member_size(|r: &l::slurm_conf_t| &r.debug_flags)),
            ("job_comp_loc", offset_of!(l::slurm_conf_t, job_comp_loc), member_size(|r: &l::slurm_conf_t| &r.job_comp_loc)),
            ("job_comp_params", offset_of!(l::slurm_conf_t, job_comp_params), member_size(|r: &l::slurm_conf_t| &r.job_comp_params)),
            ("job_comp_type", offset_of!(l::slurm_conf_t, job_comp_type), member_size(|r: &l::slurm_conf_t| &r.job_comp_type)),
            ("state_save_location", offset_of!(l::slurm_conf_t, state_save_location), member_size(|r: &l::slurm_conf_t| &r.state_save_location)),
        ] {
            // Keyed by layout so that each layout's check is accounted for.
            let key = (col.to_string(), "slurm_conf_t".to_string(), format!("{series}/{f}"));
            assert!($m.conf.insert(key, (off, width)).is_none());
        }
    }};
    (@identity $m:ident, $l:ident, $col:ident, yes) => {
        fields!($m, $col, $l::identity, "identity", [pw_name, ngids, gids, gr_names]);
    };
    (@identity $m:ident, $l:ident, $col:ident, no) => {};
    (@step $m:ident, $l:ident, $col:ident, yes) => {
        fields!($m, $col, $l::slurm_step_id, "slurm_step_id", [sluid]);
    };
    (@step $m:ident, $l:ident, $col:ident, no) => {};
    (@step $m:ident, $l:ident, $col:ident, sluid_only) => {
        fields!($m, $col, $l::slurm_step_id, "slurm_step_id", [sluid]);
    };
}

fn measure() -> Measured {
    let mut m = Measured::default();
    layout!(m, l22_05_8, "22.05.8", job_record_extra: [], identity: no, step_id: no);
    layout!(m, l23_02_2, "23.02.2", job_record_extra: [failed_node], identity: no, step_id: no);
    layout!(m, l23_02_7, "23.02.7", job_record_extra: [failed_node], identity: no, step_id: no);
    layout!(m, l23_11_10, "23.11.10", job_record_extra: [failed_node, id], identity: yes, step_id: no);
    layout!(m, l24_05_8, "24.05.8", job_record_extra: [failed_node, id], identity: yes, step_id: no);
    // 24.11 and 25.05 have the 24-byte slurm_step_id (sluid) but job_record does
    // not embed it yet.
    layout!(m, l24_11_0, "24.11.0", job_record_extra: [failed_node, id], identity: yes, step_id: sluid_only);
    layout!(m, l24_11_3, "24.11.3", job_record_extra: [failed_node, id], identity: yes, step_id: sluid_only);
    layout!(m, l24_11_7, "24.11.7", job_record_extra: [failed_node, id], identity: yes, step_id: sluid_only);
    layout!(m, l25_05_8, "25.05.8", job_record_extra: [failed_node, id], identity: yes, step_id: sluid_only);
    layout!(m, l25_11_7, "25.11.7", job_record_extra: [failed_node, id, step_id], identity: yes, step_id: yes);
    layout!(m, l26_05_3, "26.05.3", job_record_extra: [failed_node, id, step_id], identity: yes, step_id: yes);
    layout!(m, l26_05_5, "26.05.5", job_record_extra: [failed_node, id, step_id], identity: yes, step_id: yes);
    m
}

#[test]
fn declarations_match_the_measured_table() {
    let table = parse_table();
    let measured = measure();
    let mut errors = Vec::new();

    // Every numbered cell is checked, and nothing is declared that the table lacks.
    let table_keys: BTreeSet<&Key> = table.offsets.keys().collect();
    let measured_keys: BTreeSet<&Key> = measured.offsets.keys().collect();
    for k in table_keys.difference(&measured_keys) {
        errors.push(format!("{} {}.{}: in the table but not checked", k.0, k.1, k.2));
    }
    for k in measured_keys.difference(&table_keys) {
        errors.push(format!("{} {}.{}: declared but the table has no number for it", k.0, k.1, k.2));
    }
    for (k, (ctype, want)) in &table.offsets {
        if let Some(&(got, width)) = measured.offsets.get(k) {
            if got != *want {
                errors.push(format!("{} {}.{}: offset {got}, table says {want}", k.0, k.1, k.2));
            }
            if width != type_size(ctype) {
                errors.push(format!("{} {}.{}: member is {width} bytes, table type {ctype} is {}", k.0, k.1, k.2, type_size(ctype)));
            }
        }
    }

    // sizeof: every struct declared in a layout must have the table's size. The only
    // table sizes not checked are those of structs a layout deliberately does not
    // declare (slurm_step_id before 24.11, where the plugin reads no member of it).
    for ((col, s), got) in &measured.sizes {
        match table.sizes.get(&(col.clone(), s.clone())) {
            Some(want) if want == got => {}
            Some(want) => errors.push(format!("{col} sizeof {s}: {got}, table says {want}")),
            None => errors.push(format!("{col} sizeof {s}: declared but the table has no size")),
        }
    }
    for ((col, s), want) in &table.sizes {
        if !measured.sizes.contains_key(&(col.clone(), s.clone())) {
            let has_members = table.offsets.keys().any(|k| &k.0 == col && &k.1 == s);
            if has_members || s != "slurm_step_id" {
                errors.push(format!("{col} sizeof {s} = {want}: not checked"));
            }
        }
    }

    // slurm_conf_t: each layout against its series column; every series covered.
    let mut series_checked = BTreeSet::new();
    for ((col, _, sf), (got, width)) in &measured.conf {
        let (series, f) = sf.split_once('/').unwrap();
        series_checked.insert(series.to_string());
        let key = (series.to_string(), "slurm_conf_t".to_string(), f.to_string());
        match table.conf.get(&key) {
            Some((ctype, want)) => {
                if got != want {
                    errors.push(format!("{col} slurm_conf_t.{f}: offset {got}, table ({series}) says {want}"));
                }
                if *width != type_size(ctype) {
                    errors.push(format!("{col} slurm_conf_t.{f}: member is {width} bytes, table type {ctype}"));
                }
            }
            None => errors.push(format!("{col} slurm_conf_t.{f}: no {series} cell in the table")),
        }
    }
    for k in table.conf.keys() {
        let checked = measured.conf.keys().any(|(_, _, sf)| sf == &format!("{}/{}", k.0, k.2));
        if !checked {
            errors.push(format!("slurm_conf_t {} .{}: in the table but not checked", k.0, k.2));
        }
    }
    assert_eq!(series_checked.into_iter().collect::<Vec<_>>(), table.conf_series, "slurm_conf_t series coverage");

    // Every layout column of the table has a module.
    let cols: BTreeSet<&String> = measured.sizes.keys().map(|(c, _)| c).collect();
    assert_eq!(cols.len(), table.layouts.len(), "a layout column has no module");

    assert!(errors.is_empty(), "{} mismatch(es):\n  {}", errors.len(), errors.join("\n  "));
    eprintln!(
        "checked {} offsets, {} sizes, {} slurm_conf_t offsets over {} layouts",
        measured.offsets.len(),
        measured.sizes.len(),
        measured.conf.len(),
        table.layouts.len()
    );
}

#[test]
fn vendored_table_parses_completely() {
    // The fact sheet: 11 layouts; guard against a truncated copy.
    let sheet = parse_one(TABLE);
    assert_eq!(sheet.layouts.len(), 11, "expected 11 layout columns in the fact sheet");
    assert_eq!(sheet.layouts.first().map(String::as_str), Some("22.05.8"));
    assert_eq!(sheet.layouts.last().map(String::as_str), Some("26.05.3"));
    // With the project's own measurements.
    let t = parse_table();
    assert_eq!(t.layouts.len(), 12, "expected 12 layout columns");
    assert_eq!(t.layouts.last().map(String::as_str), Some("26.05.5"));
    for (col, s) in [("26.05.5", "job_record"), ("26.05.5", "job_details"), ("26.05.5", "identity")] {
        assert!(t.sizes.contains_key(&(col.to_string(), s.to_string())), "no sizeof {s} for {col}");
    }
    for s in ["job_record", "job_details", "part_record", "slurmdb_assoc_rec", "slurmdb_assoc_usage", "slurmdb_qos_rec", "identity", "slurm_step_id"] {
        assert!(t.offsets.keys().any(|k| k.1 == s), "no rows for {s}");
    }
    assert_eq!(t.conf_series.len(), 8);
}
