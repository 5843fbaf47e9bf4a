#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Generate slurm-headers/layout_<tag>.h from the measured offset tables:
# tests/data/abi-offsets.md (a verbatim copy of the project's fact sheet) and
# the project's own measurements of further layouts next to it,
# tests/data/abi-offsets-<release>.md (same format, one column each; their
# release rows replace the fact sheet's rows of the columns they name).
#
# Each header declares, under Slurm's real struct tags and member names, only
# the members the plugin reads, at exactly the measured offsets, with explicit
# char padding between them and a tail pad so that sizeof matches the table.
# _Static_asserts at the end make any C compile of a header a proof of it.
#
# Usage: ci/gen-headers.py [TABLE.md [EXTRA.md ...]] [--out OUTDIR]
#        ci/gen-headers.py --check   (regenerate in memory, fail if a file differs)
#   (an old-style second positional argument that is a directory is OUTDIR)
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Structs in the order they must be declared (pointees before users only matter
# for embedded members; pointers to incomplete types are fine in C).
STRUCTS = [
    "slurm_step_id",
    "identity",
    "slurmdb_assoc_usage",
    "slurmdb_assoc_rec",
    "slurmdb_qos_rec",
    "part_record",
    "job_details",
    "job_record",
]

# Table type spelling -> declaration in our headers (only struct tags, no Slurm
# typedefs, so that the headers need nothing but libc).
TYPE_MAP = {
    "char *": "char *",
    "char **": "char **",
    "int": "int",
    "uint16_t": "uint16_t",
    "uint32_t": "uint32_t",
    "uint64_t": "uint64_t",
    "time_t": "time_t",
    "gid_t *": "gid_t *",
    "sluid_t": "uint64_t",
    "slurm_step_id_t": "struct slurm_step_id",
    "identity_t *": "struct identity *",
    "part_record_t *": "struct part_record *",
    "slurmdb_assoc_rec_t *": "struct slurmdb_assoc_rec *",
    "slurmdb_assoc_usage_t *": "struct slurmdb_assoc_usage *",
    "slurmdb_qos_rec_t *": "struct slurmdb_qos_rec *",
    "struct job_details *": "struct job_details *",
}

# Sizes of the declared member types on x86-64 LP64.
TYPE_SIZE = {
    "char *": 8, "char **": 8, "int": 4, "uint16_t": 2, "uint32_t": 4,
    "uint64_t": 8, "time_t": 8, "gid_t *": 8,
}

MAGICS = [
    ("JOB_MAGIC", "0xf0b7392c"),
    ("DETAILS_MAGIC", "0x0dea84e7"),
    ("PART_MAGIC", "0xaefe8495"),
]

# slurm_conf_t column (series) for each layout column.
def series_of(layout):
    return ".".join(layout.split(".")[:2])


def parse(path):
    """Return (layouts, releases_table, structs, conf).

    structs: name -> {"sizeof": {layout: int|None}, "fields": [(field, type, {layout: int|None})]}
    conf: {"series": [..], "fields": [(field, type, {series: int})]}
    releases_table: list of (releases, column) rows.
    """
    lines = open(path, encoding="utf-8").read().splitlines()
    structs = {}
    conf = None
    releases = []
    layouts = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("| releases | column |"):
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                releases.append((cells[0], cells[1]))
                i += 1
            continue
        m = re.match(r"^### (\w+)\s+sizeof:(.*)$", line)
        if m:
            name = m.group(1)
            sizes = {}
            for k, v in re.findall(r"([\d.]+)=(\S+)", m.group(2)):
                sizes[k] = None if v in ("-", "—") else int(v)
            header = [c.strip() for c in lines[i + 1].strip().strip("|").split("|")]
            cols = header[2:]
            if layouts is None:
                layouts = cols
            assert cols == layouts, (name, cols)
            assert sorted(sizes) == sorted(cols), (name, sizes)
            fields = []
            i += 3
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                offs = {}
                for col, v in zip(cols, cells[2:]):
                    offs[col] = None if v in ("-", "—") else int(v)
                fields.append((cells[0], cells[1], offs))
                i += 1
            structs[name] = {"sizeof": sizes, "fields": fields}
            continue
        if line.startswith("### slurm_conf_t"):
            header = [c.strip() for c in lines[i + 1].strip().strip("|").split("|")]
            series = header[2:]
            fields = []
            i += 3
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                fields.append((cells[0], cells[1], {s: int(v) for s, v in zip(series, cells[2:])}))
                i += 1
            conf = {"series": series, "fields": fields}
            continue
        i += 1
    assert layouts and releases, path
    for s in STRUCTS:
        assert s in structs, "%s lacks %s" % (path, s)
    return layouts, releases, structs, conf


def merge(base, extra, extra_path):
    """Add an extra table's columns to the fact sheet's."""
    layouts, releases, structs, conf, source = base
    xl, xr, xs, xc = extra
    for col in xl:
        assert col not in layouts, "%s: column %s is already in the fact sheet" % (extra_path, col)
    named = set(col.split()[0] for _, col in xr)
    releases = [row for row in releases if row[1].split()[0] not in named] + xr
    for name, table in xs.items():
        mine = structs[name]
        for col in xl:
            mine["sizeof"][col] = table["sizeof"][col]
        fields = {f: (t, o) for f, t, o in mine["fields"]}
        for f, t, offs in table["fields"]:
            if f in fields:
                assert fields[f][0] == t, "%s: %s.%s has type %s, the fact sheet %s" % (
                    extra_path, name, f, t, fields[f][0])
                fields[f][1].update(offs)
            else:
                mine["fields"].append((f, t, dict({c: None for c in layouts}, **offs)))
        for f, t, offs in mine["fields"]:
            for col in xl:
                offs.setdefault(col, None)
    source = dict(source)
    for col in xl:
        source[col] = extra_path
    return layouts + xl, releases, structs, conf or xc, source


def members(structs, sname, layout):
    """List of (offset, ctype, name) for one struct in one layout, magic included."""
    out = []
    for fname, ftype, offs in structs[sname]["fields"]:
        off = offs[layout]
        if off is not None:
            out.append((off, TYPE_MAP[ftype], fname))
    if sname in ("job_details", "part_record"):
        out.append((0, "uint32_t", "magic"))
    elif sname == "job_record":
        has_step = any(n == "step_id" for _, _, n in out)
        out.append((24 if has_step else 0, "uint32_t", "magic"))
    out.sort()
    return out


def size_of(ctype, structs, layout):
    if ctype in TYPE_SIZE:
        return TYPE_SIZE[ctype]
    if ctype.endswith("*"):
        return 8
    if ctype.startswith("struct "):
        return structs[ctype[len("struct "):]]["sizeof"][layout]
    raise KeyError(ctype)


def declare(ctype, name):
    if ctype.endswith("*"):
        return "%s%s;" % (ctype, name)
    return "%s %s;" % (ctype, name)


def emit_struct(lines, asserts, tag, mems, total, structs, layout, typedef=None):
    """Append a struct definition; total None = no tail pad (size unknown)."""
    pos = 0
    pad = 0
    body = []
    for off, ctype, name in mems:
        if off < pos:
            raise SystemExit("%s %s.%s at %d overlaps previous member ending at %d"
                             % (layout, tag, name, off, pos))
        if off > pos:
            body.append("\tchar _pad%d[%d];" % (pad, off - pos))
            pad += 1
        body.append("\t%s\t/* %d */" % (declare(ctype, name), off))
        pos = off + size_of(ctype, structs, layout)
        ref = typedef if typedef else "struct " + tag
        asserts.append('_Static_assert(offsetof(%s, %s) == %d, "%s.%s");'
                       % (ref, name, off, tag, name))
    if total is not None:
        if total < pos:
            raise SystemExit("%s %s: sizeof %d < end of last member %d" % (layout, tag, total, pos))
        if total > pos:
            body.append("\tchar _pad%d[%d];\t/* tail */" % (pad, total - pos))
        asserts.append('_Static_assert(sizeof(struct %s) == %d, "sizeof %s");' % (tag, total, tag))
    if typedef:
        lines.append("typedef struct {")
    else:
        lines.append("struct %s {" % tag)
    lines.extend(body)
    lines.append("} %s;" % typedef if typedef else "};")
    lines.append("")


def releases_for(layout, releases):
    return [r for r, col in releases if col.split()[0] == layout]


MAIN_TABLE = os.path.join("tests", "data", "abi-offsets.md")


def render(layout, layouts, releases, structs, conf, source=None):
    tag = layout.replace(".", "_")
    guard = "JOBCOMP_KAFKA_LAYOUT_%s_H" % tag
    series = series_of(layout)
    covered = releases_for(layout, releases)
    lines = [
        "/* SPDX-License-Identifier: GPL-2.0-or-later */",
        "/*",
        " * jobcomp/kafka: our own declarations of the parts of Slurm's internal",
        " * structs that the plugin reads, for struct layout %s." % layout,
        " *",
        " * Covers Slurm releases: %s" % "; ".join(covered),
        " * (slurm_conf_t: the %s series column)." % series,
        " *",
    ]
    table = (source or {}).get(layout, MAIN_TABLE)
    if table == MAIN_TABLE:
        lines += [
            " * Only the members the plugin uses are declared, at the offsets measured",
            " * with offsetof() against configured upstream source trees (x86-64 LP64);",
        ]
    else:
        lines += [
            " * Only the members the plugin uses are declared, at the offsets measured",
            " * on Debian's build of that release (x86-64 LP64; evidence in the table);",
        ]
    lines += [
        " * everything else is explicit char padding, and a tail pad makes sizeof",
        " * equal to the measured sizeof. The _Static_asserts at the end check it.",
        " *",
        " * GENERATED by ci/gen-headers.py from %s; do not" % table.replace(os.sep, "/"),
        " * edit by hand, change the table or the script and regenerate.",
        " */",
        "#ifndef %s" % guard,
        "#define %s" % guard,
        "",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "#include <sys/types.h>",
        "#include <time.h>",
        "",
    ]
    for name, value in MAGICS:
        lines += ["#ifndef %s" % name, "#define %s %s" % (name, value), "#endif"]
    lines.append("")
    # Forward declarations, so pointer members never depend on order.
    for s in STRUCTS:
        if structs[s]["sizeof"][layout] is not None and members(structs, s, layout):
            lines.append("struct %s;" % s)
    lines.append("")
    asserts = []
    for s in STRUCTS:
        mems = members(structs, s, layout)
        if not mems:
            lines.append("/* struct %s: nothing declared in this layout */" % s)
            lines.append("")
            continue
        total = structs[s]["sizeof"][layout]
        emit_struct(lines, asserts, s, mems, total, structs, layout)
    cmems = sorted((f[2][series], TYPE_MAP[f[1]], f[0]) for f in conf["fields"])
    lines.append("/*")
    lines.append(" * Public slurm/slurm.h configuration (the exported `slurm_conf`).")
    lines.append(" * Its full sizeof is not measured: the struct deliberately ends after")
    lines.append(" * state_save_location, with no tail pad. Never allocate or copy one;")
    lines.append(" * only read members through a pointer to slurmctld's object.")
    lines.append(" */")
    emit_struct(lines, asserts, "slurm_conf_t", cmems, None, structs, layout, typedef="slurm_conf_t")
    lines.append("#if !defined(__cplusplus)")
    lines.extend(asserts)
    lines.append("#endif")
    lines.append("")
    lines.append("#endif /* %s */" % guard)
    return "\n".join(lines) + "\n"


def main(argv):
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    outdir = os.path.join(ROOT, "slurm-headers")
    if "--out" in args:
        i = args.index("--out")
        outdir = args[i + 1]
        del args[i:i + 2]
    elif len(args) == 2 and os.path.isdir(args[1]):
        outdir = args.pop()
    if args:
        tables = args
    else:
        data = os.path.join(ROOT, "tests", "data")
        tables = [os.path.join(data, "abi-offsets.md")] + sorted(
            os.path.join(data, f) for f in os.listdir(data)
            if re.fullmatch(r"abi-offsets-[\d.]+\.md", f))
    merged = parse(tables[0]) + ({},)
    for extra in tables[1:]:
        merged = merge(merged, parse(extra), os.path.relpath(extra, ROOT))
    layouts, releases, structs, conf, source = merged
    assert conf, "no slurm_conf_t table"
    bad = 0
    for layout in layouts:
        text = render(layout, layouts, releases, structs, conf, source)
        path = os.path.join(outdir, "layout_%s.h" % layout.replace(".", "_"))
        if check:
            try:
                old = open(path, encoding="utf-8").read()
            except FileNotFoundError:
                old = None
            if old != text:
                print("out of date: " + path)
                bad = 1
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    return bad


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
