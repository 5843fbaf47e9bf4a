//! The administrator's tool, `jobcomp-kafka` (src/bin/jobcomp-kafka.rs is its
//! command line): what waits in a StateSaveLocation, read without disturbing a
//! running slurmctld, and the resending of refused records.
//!
//! Also the few facts the plugin's metrics and the tool must state alike (a
//! record's time, the refused records), so that both show the same figures.

use crate::snapshot::{Event, JobSnapshot};
use std::path::Path;

pub mod cli;
pub mod inspect;
pub mod resend;

/// A record's time: the job's end (a finish record) or start (a start record),
/// Unix seconds; the time of reading when the job has none.
pub fn event_time(job: &JobSnapshot, event: Event) -> i64 {
    let time = match event {
        Event::Finish => job.end_time,
        Event::Start => job.start_time,
    };
    if time > 0 && time < i64::from(u32::MAX) {
        time
    } else {
        crate::plugin::unix_now()
    }
}

/// The same time read from a record's JSON text ("@end" or "@start", UTC, as
/// `record` writes them); `None` when absent or "Unknown".
pub fn payload_time(event: Event, json: &[u8]) -> Option<i64> {
    let key = match event {
        Event::Finish => "@end",
        Event::Start => "@start",
    };
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    parse_utc(value.get(key)?.as_str()?)
}

/// "YYYY-MM-DDTHH:MM:SS" (UTC) to Unix seconds.
pub fn parse_utc(text: &str) -> Option<i64> {
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12; // March = 0
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Unix seconds as "YYYY-MM-DDTHH:MM:SSZ" (UTC).
pub fn utc_text(unix: i64) -> String {
    let (days, seconds) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    // Inverse of days_from_civil (March-based years).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

/// Records set aside in a jobcomp_kafka_refused directory (`*.json` files).
pub fn count_refused(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".json")).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_text_is_read_back() {
        // The pairs of record.rs's own test table (glibc strftime of gmtime_r).
        for (unix, text) in [
            (1i64, "1970-01-01T00:00:01"),
            (-1, "1969-12-31T23:59:59"),
            (951_782_400, "2000-02-29T00:00:00"),
            (4_102_444_800, "2100-01-01T00:00:00"),
            (1_714_561_261, "2024-05-01T11:01:01"),
        ] {
            assert_eq!(parse_utc(text), Some(unix), "{text}");
        }
        for (unix, text) in [(1_714_561_261i64, "2024-05-01T11:01:01Z"), (951_782_400, "2000-02-29T00:00:00Z"), (-1, "1969-12-31T23:59:59Z")] {
            assert_eq!(utc_text(unix), text);
        }
        for bad in ["Unknown", "None", "2024-13-01T00:00:00", "2024-05-01 11:01:01", ""] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_payload_time_is_the_event_time() {
        let json = br#"{"jobid":5,"@start":"2024-05-01T10:00:00","@end":"2024-05-01T11:01:01"}"#;
        assert_eq!(payload_time(Event::Finish, json), Some(1_714_561_261));
        assert_eq!(payload_time(Event::Start, json), Some(1_714_557_600));
        assert_eq!(payload_time(Event::Finish, br#"{"@end":"Unknown"}"#), None);
    }
}
