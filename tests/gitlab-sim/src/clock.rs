//! Wall-clock time for the simulator: "now" at GitLab's millisecond
//! precision, and the two text forms GitLab puts on the wire (ISO 8601 /
//! RFC 3339 in JSON bodies, RFC 1123 "HTTP dates" in rate-limit headers).

use std::time::Duration;

use time::OffsetDateTime;

/// The current UTC time, truncated to milliseconds (what GitLab stores and shows).
pub(crate) fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    let millis = t.millisecond();
    t.replace_millisecond(millis).unwrap_or(t)
}

/// `t + d`, saturating instead of overflowing on absurd durations.
pub(crate) fn add(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    let d = time::Duration::try_from(d).unwrap_or(time::Duration::MAX);
    t.checked_add(d).unwrap_or(t)
}

/// `t - d`, saturating instead of overflowing on absurd durations.
pub(crate) fn sub(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    let d = time::Duration::try_from(d).unwrap_or(time::Duration::MAX);
    t.checked_sub(d).unwrap_or(t)
}

/// GitLab's JSON timestamp form, e.g. `2024-05-01T12:00:00.123Z`.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// An HTTP date (RFC 1123, always GMT), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn http_date(t: OffsetDateTime) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = t.to_offset(time::UtcOffset::UTC);
    let day = DAYS[usize::from(t.weekday().number_days_from_monday())];
    let month = MONTHS[usize::from(u8::from(t.month()) - 1)];
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        day,
        t.day(),
        month,
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let t = OffsetDateTime::from_unix_timestamp(784111777).unwrap();
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(rfc3339(t), "1994-11-06T08:49:37.000Z");
    }
}
