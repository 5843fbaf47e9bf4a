//! Slurm releases and the struct layouts they use.
//!
//! A plugin is built for one exact Slurm release (the loader compares
//! `plugin_version` with SLURM_VERSION_NUMBER, micro included). Everything that
//! differs between releases -- the struct layout, the jobcomp API, the record's
//! field rules, the state file's protocol version -- is decided from a [`Release`].
//!
//! This file is also compiled into build.rs (`#[path]`), so it must stay plain Rust
//! with no dependencies.

use std::fmt;

/// A Slurm release, e.g. 24.11.5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Release {
    pub major: u8,
    pub minor: u8,
    pub micro: u8,
}

impl Release {
    pub const fn new(major: u8, minor: u8, micro: u8) -> Release {
        Release { major, minor, micro }
    }

    /// Parses "24.11.5" (also accepts a trailing "-1" style package suffix).
    pub fn parse(text: &str) -> Option<Release> {
        let text = text.trim();
        let text = text.split(['-', '+', '~']).next()?;
        let mut parts = text.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let micro = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Release { major, minor, micro })
    }

    /// SLURM_VERSION_NUMBER: 0xMMmmuu.
    pub const fn version_number(self) -> u32 {
        ((self.major as u32) << 16) | ((self.minor as u32) << 8) | self.micro as u32
    }

    /// True when this release is `major.minor.micro` or newer.
    pub fn at_least(self, major: u8, minor: u8, micro: u8) -> bool {
        self >= Release::new(major, minor, micro)
    }

    /// The release series, e.g. 24.11 for 24.11.5.
    pub fn series(self) -> (u8, u8) {
        (self.major, self.minor)
    }

    /// Slurm's protocol version for this series, as stored at the head of the
    /// state file (SLURM_<series>_PROTOCOL_VERSION). Series are numbered in
    /// steps of one from 22.05 (38 << 8); `None` outside the supported range.
    pub fn protocol_version(self) -> Option<u16> {
        series_index(self.series()).map(|i| (38 + i as u16) << 8)
    }

    /// Which jobcomp operation set slurmctld looks up for this release.
    pub fn api(self) -> JobcompApi {
        if self.at_least(25, 5, 0) {
            JobcompApi::StartAndEnd
        } else if self.at_least(23, 2, 0) {
            JobcompApi::LogRecord
        } else {
            JobcompApi::LogRecordWithLocation
        }
    }

    /// The struct layout of this release, or `None` outside 22.05.0 - 26.05.x
    /// and for 26.05.4, whose layout is not known (26.05.3 and 26.05.5 differ;
    /// see tests/data/abi-offsets-26.05.5.md).
    pub fn layout(self) -> Option<Layout> {
        use Layout::*;
        let r = |a, b, c| Release::new(a, b, c);
        let layout = match self.series() {
            (22, 5) => L22_05_8,
            (23, 2) if self < r(23, 2, 3) => L23_02_2,
            (23, 2) => L23_02_7,
            (23, 11) => L23_11_10,
            (24, 5) => L24_05_8,
            (24, 11) if self.micro == 0 => L24_11_0,
            (24, 11) if self.micro <= 3 => L24_11_3,
            (24, 11) => L24_11_7,
            (25, 5) => L25_05_8,
            (25, 11) => L25_11_7,
            (26, 5) if self.micro <= 3 => L26_05_3,
            (26, 5) if self.micro == 4 => return None,
            (26, 5) => L26_05_5,
            _ => return None,
        };
        Some(layout)
    }
}

impl Release {
    /// The newest micro release of this release's series whose layout was
    /// measured (a Layout's column); `None` outside the supported series.
    pub fn newest_measured(self) -> Option<Release> {
        Layout::ALL.iter().map(|l| l.measured_on()).filter(|m| m.series() == self.series()).max()
    }

    /// True when this release's layout is assumed, not measured: it is newer
    /// than every measured micro release of its series, and `layout()` maps
    /// it to the last known layout (the run-time layout guard checks it).
    pub fn layout_is_assumed(self) -> bool {
        self.layout().is_some() && self.newest_measured().is_some_and(|newest| self > newest)
    }
}

/// The supported release series, oldest first. Each one gets the next protocol
/// version number.
pub const SERIES: [(u8, u8); 8] = [
    (22, 5),
    (23, 2),
    (23, 11),
    (24, 5),
    (24, 11),
    (25, 5),
    (25, 11),
    (26, 5),
];

fn series_index(series: (u8, u8)) -> Option<usize> {
    SERIES.iter().position(|s| *s == series)
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}.{}", self.major, self.minor, self.micro)
    }
}

/// The jobcomp operations slurmctld resolves (plugin-abi.md, "Operations per series").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobcompApi {
    /// 22.05: `set_location(char *loc)`, `log_record`, `get_jobs`.
    LogRecordWithLocation,
    /// 23.02 - 24.11: `set_location(void)`, `log_record`, `get_jobs`.
    LogRecord,
    /// 25.05+: `set_location(void)`, `record_job_end`, `get_jobs`, `record_job_start`.
    StartAndEnd,
}

/// One distinct layout of Slurm's internal structs (abi-offsets.md columns). The
/// name is the release the offsets were measured on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum Layout {
    L22_05_8,
    L23_02_2,
    L23_02_7,
    L23_11_10,
    L24_05_8,
    L24_11_0,
    L24_11_3,
    L24_11_7,
    L25_05_8,
    L25_11_7,
    L26_05_3,
    L26_05_5,
}

impl Layout {
    pub const ALL: [Layout; 12] = [
        Layout::L22_05_8,
        Layout::L23_02_2,
        Layout::L23_02_7,
        Layout::L23_11_10,
        Layout::L24_05_8,
        Layout::L24_11_0,
        Layout::L24_11_3,
        Layout::L24_11_7,
        Layout::L25_05_8,
        Layout::L25_11_7,
        Layout::L26_05_3,
        Layout::L26_05_5,
    ];

    /// "22_05_8": the suffix of slurm-headers/layout_<tag>.h and of the Rust module.
    pub fn tag(self) -> &'static str {
        match self {
            Layout::L22_05_8 => "22_05_8",
            Layout::L23_02_2 => "23_02_2",
            Layout::L23_02_7 => "23_02_7",
            Layout::L23_11_10 => "23_11_10",
            Layout::L24_05_8 => "24_05_8",
            Layout::L24_11_0 => "24_11_0",
            Layout::L24_11_3 => "24_11_3",
            Layout::L24_11_7 => "24_11_7",
            Layout::L25_05_8 => "25_05_8",
            Layout::L25_11_7 => "25_11_7",
            Layout::L26_05_3 => "26_05_3",
            Layout::L26_05_5 => "26_05_5",
        }
    }

    /// The release whose column in abi-offsets.md (or abi-offsets-<release>.md)
    /// this layout is ("24.11.7").
    pub fn measured_on(self) -> Release {
        let mut parts = self.tag().split('_').map(|p| p.parse::<u8>().unwrap_or(0));
        let (a, b, c) = (parts.next(), parts.next(), parts.next());
        Release::new(a.unwrap_or(0), b.unwrap_or(0), c.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_numbers_releases() {
        let r = Release::parse("24.11.5").unwrap();
        assert_eq!(r.version_number(), 0x180b05);
        assert_eq!(Release::parse("22.05.8").unwrap().version_number(), 0x160508);
        assert_eq!(Release::parse("26.05.5-1").unwrap().version_number(), 0x1a0505);
        assert_eq!(Release::parse("24.11"), None);
        assert_eq!(Release::parse("x.y.z"), None);
        assert_eq!(r.to_string(), "24.11.5");
    }

    #[test]
    fn protocol_versions_match_slurm() {
        let pv = |s| Release::parse(s).unwrap().protocol_version();
        assert_eq!(pv("22.05.8"), Some(0x2600));
        assert_eq!(pv("23.02.0"), Some(0x2700));
        assert_eq!(pv("23.11.1"), Some(0x2800));
        assert_eq!(pv("24.05.8"), Some(0x2900));
        assert_eq!(pv("24.11.5"), Some(0x2a00));
        assert_eq!(pv("25.05.0"), Some(0x2b00));
        assert_eq!(pv("25.11.2"), Some(0x2c00));
        assert_eq!(pv("26.05.5"), Some(0x2d00));
        assert_eq!(pv("21.08.8"), None);
    }

    #[test]
    fn layouts_follow_the_table() {
        let l = |s| Release::parse(s).unwrap().layout();
        assert_eq!(l("22.05.0"), Some(Layout::L22_05_8));
        assert_eq!(l("23.02.2"), Some(Layout::L23_02_2));
        assert_eq!(l("23.02.3"), Some(Layout::L23_02_7));
        assert_eq!(l("24.11.0"), Some(Layout::L24_11_0));
        assert_eq!(l("24.11.1"), Some(Layout::L24_11_3));
        assert_eq!(l("24.11.3"), Some(Layout::L24_11_3));
        assert_eq!(l("24.11.4"), Some(Layout::L24_11_7));
        assert_eq!(l("24.11.5"), Some(Layout::L24_11_7));
        assert_eq!(l("25.11.0"), Some(Layout::L25_11_7));
        assert_eq!(l("26.05.0"), Some(Layout::L26_05_3));
        assert_eq!(l("26.05.3"), Some(Layout::L26_05_3));
        // 26.05.4: unknown (the layout changed between 26.05.3 and 26.05.5).
        assert_eq!(l("26.05.4"), None);
        assert_eq!(l("26.05.5"), Some(Layout::L26_05_5));
        assert_eq!(l("26.05.9"), Some(Layout::L26_05_5));
        assert_eq!(l("21.08.8"), None);
        assert_eq!(l("26.11.0"), None);
        for layout in Layout::ALL {
            assert_eq!(layout.measured_on().layout(), Some(layout));
        }
    }

    #[test]
    fn assumed_layouts_are_the_releases_past_the_newest_measured() {
        let r = |s| Release::parse(s).unwrap();
        assert_eq!(r("24.11.5").newest_measured(), Some(r("24.11.7")));
        assert_eq!(r("26.05.1").newest_measured(), Some(r("26.05.5")));
        assert_eq!(r("21.08.8").newest_measured(), None);
        for measured in ["22.05.8", "23.02.2", "23.02.7", "24.11.5", "24.11.7", "25.11.7", "26.05.3", "26.05.5"] {
            assert!(!r(measured).layout_is_assumed(), "{measured}");
        }
        for assumed in ["22.05.9", "23.02.8", "23.11.11", "24.05.9", "24.11.8", "25.05.9", "25.11.8", "26.05.6"] {
            assert!(r(assumed).layout_is_assumed(), "{assumed}");
        }
        // Unknown layouts are refused at build time, not assumed.
        assert!(!r("26.05.4").layout_is_assumed());
        assert!(!r("26.11.0").layout_is_assumed());
    }

    #[test]
    fn api_per_series() {
        let a = |s| Release::parse(s).unwrap().api();
        assert_eq!(a("22.05.8"), JobcompApi::LogRecordWithLocation);
        assert_eq!(a("23.02.0"), JobcompApi::LogRecord);
        assert_eq!(a("24.11.5"), JobcompApi::LogRecord);
        assert_eq!(a("25.05.0"), JobcompApi::StartAndEnd);
        assert_eq!(a("26.05.5"), JobcompApi::StartAndEnd);
    }
}
