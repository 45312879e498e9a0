//! `--auto-compaction-mode` and `--auto-compaction-retention`, as etcd reads them.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum AutoCompaction {
    Off,
    Periodic(Duration),
    Revision(i64),
}

/// The flags as etcd reads them: a bare number is hours in periodic mode.
pub fn parse(mode: &str, retention: &str) -> Result<AutoCompaction, String> {
    let bad = || format!("invalid auto compaction retention {retention:?} for mode {mode:?}");
    match mode {
        "periodic" => {
            let d = match retention.parse::<u64>() {
                Ok(hours) => Duration::from_secs(hours * 3600),
                Err(_) => crate::duration::parse_go_duration(retention).ok_or_else(bad)?,
            };
            Ok(if d.is_zero() {
                AutoCompaction::Off
            } else {
                AutoCompaction::Periodic(d)
            })
        }
        "revision" => {
            let n: i64 = retention.parse().map_err(|_| bad())?;
            Ok(if n <= 0 {
                AutoCompaction::Off
            } else {
                AutoCompaction::Revision(n)
            })
        }
        other => Err(format!("unknown auto-compaction-mode {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_reads_as_etcd_reads_it() {
        assert_eq!(parse("periodic", "0"), Ok(AutoCompaction::Off));
        assert_eq!(
            parse("periodic", "1"),
            Ok(AutoCompaction::Periodic(Duration::from_secs(3600)))
        );
        assert_eq!(
            parse("periodic", "30m"),
            Ok(AutoCompaction::Periodic(Duration::from_secs(1800)))
        );
        assert_eq!(
            parse("revision", "1000"),
            Ok(AutoCompaction::Revision(1000))
        );
        assert!(parse("revision", "1h").is_err());
        assert!(parse("weekly", "1").is_err());
    }
}
