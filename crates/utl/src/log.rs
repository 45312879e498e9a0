//! Log lines on stderr as etcdutl's logger writes them (zap's console encoder): time (RFC 3339),
//! level, caller, message, then the fields as one JSON object.

use std::time::{SystemTime, UNIX_EPOCH};

/// An `info` line, newline included.
pub fn info(caller: &str, msg: &str, fields: &[(&str, &str)]) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    line(secs, caller, msg, fields)
}

fn line(unix_secs: u64, caller: &str, msg: &str, fields: &[(&str, &str)]) -> String {
    let fields: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}: {}", json_str(k), json_str(v)))
        .collect();
    let mut out = format!("{}\tinfo\t{caller}\t{msg}", rfc3339(unix_secs));
    if !fields.is_empty() {
        out.push_str(&format!("\t{{{}}}", fields.join(", ")));
    }
    out.push('\n');
    out
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// UTC time in RFC 3339 to the second.
fn rfc3339(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_730_258_166), "2024-10-30T03:16:06Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(
            line(0, "snapshot/restore", "restored snapshot", &[("path", "a\"b")]),
            "1970-01-01T00:00:00Z\tinfo\tsnapshot/restore\trestored snapshot\t{\"path\": \"a\\\"b\"}\n"
        );
    }
}
