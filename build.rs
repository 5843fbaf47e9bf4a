//! Picks the Slurm release the plugin is built for and generates the struct
//! bindings for it.
//!
//! - The release comes from `SLURM_VERSION` (e.g. 24.11.5), else from the installed
//!   slurm/slurm_version.h. The loader demands an exact match, micro included.
//! - slurm-headers/layout_<tag>.h holds the project's own declarations of the parts
//!   of Slurm's internal structs the plugin reads, one header per distinct layout.
//!   Bindgen runs over every one of them (the unit tests read synthetic records of
//!   each layout); the target release's layout is the one used at run time.
//! - With `SLURM_SRC_DIR=<configured Slurm source tree>` the target layout is taken
//!   from that tree's real headers instead (any release, site patches included):
//!   the job records are then read through those bindings (cfg
//!   `jk_layout_from_source`, with `jk_source_fields` naming which optional
//!   members the release's job_record has).

#[path = "src/release.rs"]
#[allow(dead_code)]
mod release;

use release::{JobcompApi, Layout, Release};
use std::env;
use std::fs;
use std::path::{Path, PathBuf};

const STRUCTS: [&str; 8] = [
    "job_record",
    "job_details",
    "part_record",
    "slurmdb_assoc_rec",
    "slurmdb_assoc_usage",
    "slurmdb_qos_rec",
    "identity",
    "slurm_step_id",
];

fn main() {
    println!("cargo:rerun-if-env-changed=SLURM_VERSION");
    println!("cargo:rerun-if-env-changed=SLURM_SRC_DIR");
    println!("cargo:rerun-if-env-changed=SLURM_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=JK_TEST_FORCE_LAYOUT");
    println!("cargo:rerun-if-changed=slurm-headers");
    println!("cargo:rerun-if-changed=src/release.rs");
    println!("cargo::rustc-check-cfg=cfg(jk_api, values(\"v22_05\", \"v23_02\", \"v25_05\"))");
    println!("cargo::rustc-check-cfg=cfg(jk_layout_from_source)");
    println!(
        "cargo::rustc-check-cfg=cfg(jk_source_fields, values(\"v22_05\", \"v23_02\", \"v23_11\", \"v25_11\"))"
    );

    check_librdkafka_features();

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let release = target_release();
    let source_tree = env::var_os("SLURM_SRC_DIR").map(PathBuf::from);
    let mut layout = match release.layout() {
        Some(layout) => layout,
        // Read through the tree's own bindings; the nominal table layout only
        // serves the tests' C host.
        None if source_tree.is_some() => nominal_layout(release),
        None if release.series() == (26, 5) => fail(&format!(
            "the struct layout of Slurm {release} is not known: job_record differs between \
             26.05.3 and 26.05.5 (tests/data/abi-offsets-26.05.5.md) and {release} was not \
             measured. Build against its configured source tree with \
             SLURM_SRC_DIR=/path/to/slurm-{release} (after ./configure)."
        )),
        None => fail(&format!(
            "Slurm {release} is outside the releases this plugin knows (22.05.0 to 26.05.x). \
             Build against a configured source tree of that release with \
             SLURM_SRC_DIR=/path/to/slurm-{release} (after ./configure), or add its layout \
             to slurm-headers/ and src/release.rs."
        )),
    };

    let mut variant = None;
    if let Some((forced, moved)) = forced_layout(source_tree.is_some()) {
        println!(
            "cargo:warning=JK_TEST_FORCE_LAYOUT={}: TEST-ONLY build with Slurm {release}'s plugin_version but the \
             struct layout measured on {}{}; slurmctld {release} must refuse it at run time (layout guard). \
             Never install this build.",
            forced.tag(),
            forced.measured_on(),
            moved.map(|m| format!(" with {}", m.describe())).unwrap_or_default()
        );
        layout = forced;
        variant = moved;
    } else if source_tree.is_none() && release.layout_is_assumed() {
        println!(
            "cargo:warning=Slurm {release} is newer than {}, the newest {}.{:02} release whose struct layout was \
             measured: assuming that layout (slurm-headers/layout_{}.h). The plugin's layout guard checks it \
             against slurmctld's memory at run time and refuses to read job records if it does not match; \
             build with SLURM_SRC_DIR=/path/to/configured/slurm-{release} to use the release's own headers.",
            release.newest_measured().unwrap_or(release),
            release.major,
            release.minor,
            layout.tag()
        );
    }

    for each in Layout::ALL {
        let mut header = Path::new("slurm-headers").join(format!("layout_{}.h", each.tag()));
        if let Some(moved) = variant.filter(|_| each == layout) {
            header = moved.write_header(&header, &out_dir);
        }
        generate(&header, &[], &out_dir.join(format!("layout_{}.rs", each.tag())));
    }

    if let Some(tree) = &source_tree {
        generate_from_source_tree(tree, &out_dir.join("layout_source.rs"));
        println!("cargo:rustc-cfg=jk_layout_from_source");
        // Which optional job_record members the release has (job.rs's reader
        // switches): failed_node from 23.02, the identity from 23.11, the
        // embedded step id (sluid) from 25.11.
        let fields = if release.at_least(25, 11, 0) {
            "v25_11"
        } else if release.at_least(23, 11, 0) {
            "v23_11"
        } else if release.at_least(23, 2, 0) {
            "v23_02"
        } else {
            "v22_05"
        };
        println!("cargo:rustc-cfg=jk_source_fields=\"{fields}\"");
    }

    let api = match release.api() {
        JobcompApi::LogRecordWithLocation => "v22_05",
        JobcompApi::LogRecord => "v23_02",
        JobcompApi::StartAndEnd => "v25_05",
    };
    println!("cargo:rustc-cfg=jk_api=\"{api}\"");

    let layout_module = if source_tree.is_some() {
        "crate::slurm::layouts::source".to_string()
    } else {
        format!("crate::slurm::layouts::l{}", layout.tag())
    };
    let target = format!(
        "/// The Slurm release this plugin is built for.\n\
         pub const RELEASE: crate::release::Release = crate::release::Release::new({}, {}, {});\n\
         /// Its struct layout (abi-offsets.md column).\n\
         pub const LAYOUT: crate::release::Layout = crate::release::Layout::{:?};\n\
         /// True when the layout comes from a real Slurm source tree (SLURM_SRC_DIR).\n\
         pub const LAYOUT_FROM_SOURCE: bool = {};\n\
         /// TEST-ONLY (JK_TEST_FORCE_LAYOUT=<tag>+<variant>): how LAYOUT was changed.\n\
         pub const LAYOUT_TEST_VARIANT: Option<&str> = {:?};\n\
         /// The bindgen module of the layout used at run time.\n\
         pub use {} as layout;\n",
        release.major,
        release.minor,
        release.micro,
        layout,
        source_tree.is_some(),
        variant.map(|m| m.describe()),
        layout_module
    );
    fs::write(out_dir.join("target.rs"), target).expect("write target.rs");
}

/// JK_TEST_FORCE_LAYOUT=<tag> (e.g. 26_05_3), for tests only: build with
/// that layout whatever the release, to prove that the run-time layout guard
/// refuses a wrong layout inside a real slurmctld (tests/layout_guard26).
/// `<tag>+<variant>` (e.g. 26_05_5+job_id_moved): that layout with one
/// job_record member moved ([`Moved`]), slurm_conf_t left as it is: what a
/// site patch to job_record_t does, which the slurm_conf check at init cannot
/// see and the record checks must.
fn forced_layout(from_source: bool) -> Option<(Layout, Option<Moved>)> {
    let text = env::var("JK_TEST_FORCE_LAYOUT").ok().filter(|t| !t.trim().is_empty())?;
    if from_source {
        fail("JK_TEST_FORCE_LAYOUT and SLURM_SRC_DIR exclude each other");
    }
    let (tag, variant) = match text.trim().split_once('+') {
        Some((tag, variant)) => (tag, Some(variant)),
        None => (text.trim(), None),
    };
    let layout = Layout::ALL.iter().copied().find(|l| l.tag() == tag).unwrap_or_else(|| {
        let tags: Vec<&str> = Layout::ALL.iter().map(|l| l.tag()).collect();
        fail(&format!("JK_TEST_FORCE_LAYOUT={text:?}: {tag:?} is not one of {}", tags.join(", ")))
    });
    let moved = variant.map(|v| match v {
        "job_id_moved" => Moved::JobId,
        _ => fail(&format!("JK_TEST_FORCE_LAYOUT={text:?}: the only variant is +job_id_moved")),
    });
    Some((layout, moved))
}

/// A TEST-ONLY change to a layout's job_record declaration.
#[derive(Clone, Copy)]
enum Moved {
    /// `job_id` moved 4 bytes on, into the padding that follows it (the
    /// member declared next must be `char _padN[4];`).
    JobId,
}

impl Moved {
    fn describe(self) -> &'static str {
        match self {
            Moved::JobId => "job_record.job_id moved 4 bytes on (TEST-ONLY)",
        }
    }

    /// Writes the layout's header with the member moved into `out_dir` and
    /// returns its path; fails the build if the header is not as expected.
    fn write_header(self, header: &Path, out_dir: &Path) -> PathBuf {
        let text = fs::read_to_string(header).unwrap_or_else(|e| fail(&format!("{}: {e}", header.display())));
        let lines: Vec<&str> = text.lines().collect();
        fn bad(header: &Path, what: &str) -> ! {
            fail(&format!("JK_TEST_FORCE_LAYOUT +job_id_moved: {} {what}", header.display()))
        }
        let start = lines.iter().position(|l| l.starts_with("struct job_record {")).unwrap_or_else(|| bad(header, "has no struct job_record"));
        let at = start
            + lines[start..].iter().position(|l| l.trim_start().starts_with("uint32_t job_id;")).unwrap_or_else(|| bad(header, "declares no job_id"));
        let pad = lines[at + 1].trim();
        if !(pad.starts_with("char _pad") && pad.ends_with("[4];")) {
            bad(header, "has no 4 bytes of padding after job_id")
        }
        let offset: usize = lines[at]
            .split("/*")
            .nth(1)
            .and_then(|c| c.trim().trim_end_matches("*/").trim().parse().ok())
            .unwrap_or_else(|| bad(header, "gives no offset for job_id"));
        let assert_old = format!("_Static_assert(offsetof(struct job_record, job_id) == {offset},");
        let assert_new = format!("_Static_assert(offsetof(struct job_record, job_id) == {},", offset + 4);
        let mut out: Vec<String> = lines.iter().map(|l| l.replace(&assert_old, &assert_new)).collect();
        out.swap(at, at + 1);
        out[at + 1] = format!("\tuint32_t job_id;\t/* {} (TEST-ONLY: moved from {offset}) */", offset + 4);
        let path = out_dir.join(format!("{}+job_id_moved.h", header.file_stem().unwrap().to_string_lossy()));
        fs::write(&path, out.join("\n") + "\n").expect("write the moved header");
        path
    }
}

/// A table layout for a release that has none (built from a source tree): the
/// newest layout measured on a release not after it, else the oldest.
fn nominal_layout(release: Release) -> Layout {
    Layout::ALL
        .iter()
        .rev()
        .copied()
        .find(|l| l.measured_on() <= release)
        .unwrap_or(Layout::ALL[0])
}

/// The target release: SLURM_VERSION, else the installed slurm_version.h.
fn target_release() -> Release {
    if let Some(text) = env::var("SLURM_VERSION").ok().filter(|t| !t.trim().is_empty()) {
        return Release::parse(&text).unwrap_or_else(|| {
            fail(&format!("SLURM_VERSION={text:?} is not a release number like 24.11.5"))
        });
    }
    let include = env::var("SLURM_INCLUDE_DIR").unwrap_or_else(|_| "/usr/include".into());
    let header = Path::new(&include).join("slurm/slurm_version.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let text = fs::read_to_string(&header).unwrap_or_else(|e| {
        fail(&format!(
            "no Slurm release given and {} is unreadable ({e}). Set SLURM_VERSION=X.Y.Z \
             (e.g. `make build SLURM_VERSION=24.11.5`) or install libslurm-dev.",
            header.display()
        ))
    });
    version_from_header(&text).unwrap_or_else(|| {
        fail(&format!("{} has no SLURM_VERSION_NUMBER; set SLURM_VERSION=X.Y.Z", header.display()))
    })
}

fn version_from_header(text: &str) -> Option<Release> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("#define SLURM_VERSION_NUMBER"))?;
    let hex = line.split_whitespace().nth(2)?.trim_start_matches("0x");
    let number = u32::from_str_radix(hex, 16).ok()?;
    Some(Release::new((number >> 16) as u8, (number >> 8) as u8, number as u8))
}

fn bindgen_builder() -> bindgen::Builder {
    let mut builder = bindgen::Builder::default()
        .allowlist_type("slurm_conf_t")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false);
    for name in STRUCTS {
        builder = builder.allowlist_type(name);
    }
    builder
}

fn generate(header: &Path, clang_args: &[String], out: &Path) {
    if !header.exists() {
        fail(&format!("missing {}: every layout needs its header", header.display()));
    }
    let bindings = bindgen_builder()
        .header(header.to_string_lossy())
        .clang_args(clang_args)
        .generate()
        .unwrap_or_else(|e| fail(&format!("bindgen failed on {}: {e}", header.display())));
    bindings.write_to_file(out).expect("write bindings");
}

/// Bindings from a configured Slurm source tree: slurmctld.h brings job_record,
/// job_details, part_record; slurmdb_defs.h and assoc_mgr.h the association types.
fn generate_from_source_tree(tree: &Path, out: &Path) {
    if !tree.join("config.h").exists() {
        fail(&format!(
            "SLURM_SRC_DIR={} has no config.h: run ./configure in that tree first",
            tree.display()
        ));
    }
    let wrapper = PathBuf::from(env::var("OUT_DIR").unwrap()).join("source_tree.h");
    fs::write(
        &wrapper,
        "#include \"config.h\"\n\
         #include \"src/slurmctld/slurmctld.h\"\n\
         #include \"src/common/assoc_mgr.h\"\n",
    )
    .expect("write wrapper");
    let args = vec![
        format!("-I{}", tree.display()),
        format!("-I{}/src", tree.display()),
        format!("-I{}/slurm", tree.display()),
    ];
    generate(&wrapper, &args, out);
}

/// librdkafka's configure leaves a feature out, silently, when a system library's
/// development files are missing (libcurl: curl-sys then compiles its own copy, which
/// configure does not find). Every library of ci/build-deps.txt must have been found:
/// its macro is in the config.h of the librdkafka that rdkafka-sys built.
fn check_librdkafka_features() {
    println!("cargo:rerun-if-changed=ci/build-deps.txt");
    // DEP_RDKAFKA_ROOT: rdkafka-sys's build directory (it `links = "rdkafka"`).
    let Some(root) = env::var_os("DEP_RDKAFKA_ROOT") else { return };
    let config_h = Path::new(&root).join("config.h");
    let config = fs::read_to_string(&config_h)
        .unwrap_or_else(|e| fail(&format!("cannot read librdkafka's {}: {e}", config_h.display())));
    let deps = fs::read_to_string("ci/build-deps.txt").expect("read ci/build-deps.txt");
    let mut missing = Vec::new();
    for line in deps.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let columns: Vec<&str> = line.split_whitespace().collect();
        let [_module, mac, debian, rhel, what @ ..] = columns.as_slice() else {
            fail(&format!("ci/build-deps.txt: malformed line {line:?}"))
        };
        if !config.lines().any(|l| l.split_whitespace().take(2).eq(["#define", *mac])) {
            let remedy = if *debian == "-" {
                "built from a crate: check the rdkafka-sys features in Cargo.toml".to_string()
            } else {
                format!("Debian/Ubuntu: apt-get install {debian}; RHEL-family: dnf install {rhel}")
            };
            missing.push(format!("{} (no {mac}) -- {remedy}", what.join(" ")));
        }
    }
    if !missing.is_empty() {
        fail(&format!(
            "librdkafka was configured without: {}. Install the package(s), then `cargo clean -p \
             rdkafka-sys` and build again (ci/check-build-deps.sh lists what is missing).",
            missing.join("; ")
        ));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    panic!("{message}");
}
