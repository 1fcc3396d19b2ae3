//! Timestamps, once for the workspace: parsing what people and files write (RFC 3339 with offsets
//! and fractional seconds, plain dates, the TIFF/EXIF layout) into unix milliseconds UTC, and
//! writing RFC 3339 back. Calendar checks are chrono's: 2020-02-31 is refused, not rolled over.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

/// The forms [`parse`] accepts, for error messages.
pub const ACCEPTED: &str =
    "RFC 3339 (2020-09-13T12:26:40Z, 2020-09-13T14:26:40.5+02:00) or a date (2020-09-13, UTC midnight)";

/// Parses an RFC 3339 date-time (`T` or a space between date and time; `Z` or an offset; any
/// fractional seconds) or a plain date (UTC midnight) into unix milliseconds UTC. A date-time
/// without an offset is refused: it would be read in some zone nobody chose.
pub fn parse(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_millis());
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_millis());
    }
    let hint = if NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f").is_ok() {
        ": add the offset (Z for UTC)"
    } else {
        ""
    };
    Err(format!(
        "time {s:?} is not a valid date or date-time{hint}; use {ACCEPTED}"
    ))
}

/// Parses what rasters record as acquisition time: everything [`parse`] takes, the TIFF/EXIF
/// layout `YYYY:MM:DD HH:MM:SS` and ISO date-times without an offset (both read as UTC, as
/// TIFF does not say). `None` for anything else, invalid dates included.
pub fn parse_recorded(s: &str) -> Option<i64> {
    let t = s.trim();
    if let Ok(ms) = parse(t) {
        return Some(ms);
    }
    // Offsets as ISO 8601 also writes them (+0200), and minutes without seconds.
    let with_offset = [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
    ];
    if let Some(dt) = with_offset
        .iter()
        .find_map(|f| DateTime::parse_from_str(t, f).ok())
    {
        return Some(dt.timestamp_millis());
    }
    [
        "%Y:%m:%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y/%m/%d %H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
    .map(|dt| dt.and_utc().timestamp_millis())
}

/// Unix milliseconds as RFC 3339 in UTC (`Z`), with milliseconds only when there are some.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(
        || format!("(out of range: {ms} ms)"),
        |dt| {
            if ms.rem_euclid(1000) == 0 {
                dt.to_rfc3339_opts(SecondsFormat::Secs, true)
            } else {
                dt.to_rfc3339_opts(SecondsFormat::Millis, true)
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_offsets_and_fractions_parses() {
        assert_eq!(parse("1970-01-01").unwrap(), 0);
        assert_eq!(parse("2020-09-13T12:26:40Z").unwrap(), 1_600_000_000_000);
        assert_eq!(parse("2020-09-13T14:26:40+02:00").unwrap(), 1_600_000_000_000);
        assert_eq!(parse("2020-09-13t12:26:40.25z").unwrap(), 1_600_000_000_250);
        assert_eq!(parse("2020-09-13 07:26:40.5-05:00").unwrap(), 1_600_000_000_500);
    }

    #[test]
    fn invalid_dates_and_zone_less_times_are_refused() {
        for bad in [
            "2020-02-31",
            "2021-02-29",
            "2020-13-01",
            "2020-09-13T24:00:01Z",
            "13/09/2020",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("2020-02-29").is_ok(), "a leap day");
        let e = parse("2020-09-13T12:26:40").unwrap_err();
        assert!(e.contains("offset"), "{e}");
        assert!(parse_recorded("2020:02:31 10:00:00").is_none());
    }

    #[test]
    fn recorded_layouts_parse_as_utc() {
        assert_eq!(parse_recorded("2020:09:13 12:26:40"), Some(1_600_000_000_000));
        assert_eq!(parse_recorded("2020-09-13T12:26:40"), Some(1_600_000_000_000));
        assert_eq!(
            parse_recorded("2020-09-13T12:26:40+0000"),
            Some(1_600_000_000_000)
        );
        assert_eq!(parse_recorded("2019-06-01T10:30-0200"), Some(1_559_392_200_000));
        assert_eq!(parse_recorded("soon"), None);
    }

    #[test]
    fn writes_back_what_it_reads() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_600_000_000_000), "2020-09-13T12:26:40Z");
        assert_eq!(rfc3339(1_600_000_000_250), "2020-09-13T12:26:40.250Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        for ms in [0, 1_600_000_000_250, -86_400_001, 4_102_444_800_000] {
            assert_eq!(parse(&rfc3339(ms)).unwrap(), ms);
        }
    }
}
