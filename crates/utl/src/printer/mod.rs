//! etcdutl's output formats for `snapshot status` and `hashkv`, one format a file. Each printer
//! returns the text for stdout.

mod fields;
mod json;
mod simple;
mod table;

use crate::error::UtlError;
use crate::hashkv::HashKv;
use crate::snapshot::SnapshotStatus;

pub use table::table;

/// `-w/--write-out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Simple,
    Json,
    Table,
    Fields,
    Protobuf,
}

impl Format {
    /// The format named by `--write-out`; an unknown name is refused as etcdutl refuses it.
    pub fn parse(name: &str) -> Result<Format, UtlError> {
        Ok(match name {
            "simple" => Format::Simple,
            "json" => Format::Json,
            "table" => Format::Table,
            "fields" => Format::Fields,
            "protobuf" => Format::Protobuf,
            _ => return Err(UtlError::bad_feature("unsupported output format")),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Table => "table",
            Format::Fields => "fields",
            Format::Protobuf => "protobuf",
        }
    }

    fn unsupported(self) -> UtlError {
        UtlError::bad_feature(format!("{} not supported as output format", self.name()))
    }
}

/// The columns of `snapshot status` in simple and table form.
fn status_row(st: &SnapshotStatus) -> (Vec<&'static str>, Vec<String>) {
    (
        vec!["hash", "revision", "total keys", "total size"],
        vec![
            format!("{:x}", st.hash),
            st.revision.get().to_string(),
            st.total_key.to_string(),
            humanize_bytes(st.total_size),
        ],
    )
}

/// The columns of `hashkv` in simple and table form.
fn hashkv_row(h: &HashKv) -> (Vec<&'static str>, Vec<String>) {
    (
        vec!["hash", "hash revision", "compact revision"],
        vec![
            h.hash.to_string(),
            h.hash_revision.get().to_string(),
            h.compact_revision.get().to_string(),
        ],
    )
}

pub fn snapshot_status(format: Format, st: &SnapshotStatus) -> Result<String, UtlError> {
    let (header, row) = status_row(st);
    Ok(match format {
        Format::Simple => simple::row(&row),
        Format::Table => table(&header, &[row]),
        Format::Json => json::snapshot_status(st),
        Format::Fields => fields::snapshot_status(st),
        Format::Protobuf => return Err(format.unsupported()),
    })
}

pub fn hashkv(format: Format, h: &HashKv) -> Result<String, UtlError> {
    let (header, row) = hashkv_row(h);
    Ok(match format {
        Format::Simple => simple::row(&row),
        Format::Table => table(&header, &[row]),
        Format::Json => json::hashkv(h),
        Format::Fields => fields::hashkv(h),
        Format::Protobuf => return Err(format.unsupported()),
    })
}

/// go-humanize's `Bytes`: SI units, one decimal below 10.
pub fn humanize_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor();
    let val = ((n as f64) / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    let unit = UNITS[(e as usize).min(UNITS.len() - 1)];
    if val < 10.0 {
        format!("{val:.1} {unit}")
    } else {
        format!("{val:.0} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st() -> SnapshotStatus {
        SnapshotStatus {
            hash: 0xcf1550fb,
            revision: oxcd_api::Revision(3),
            total_key: 3,
            total_size: 24576,
        }
    }

    #[test]
    fn snapshot_status_in_every_format() {
        let p = |f| snapshot_status(f, &st());
        assert_eq!(p(Format::Simple), Ok("cf1550fb, 3, 3, 25 kB\n".into()));
        assert_eq!(
            p(Format::Json),
            Ok("{\"hash\":3474280699,\"revision\":3,\"totalKey\":3,\"totalSize\":24576}\n".into())
        );
        assert_eq!(
            p(Format::Table),
            Ok("+----------+----------+------------+------------+\n\
                |   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |\n\
                +----------+----------+------------+------------+\n\
                | cf1550fb |        3 |          3 |      25 kB |\n\
                +----------+----------+------------+------------+\n"
                .into())
        );
        assert_eq!(
            p(Format::Fields),
            Ok("\"Hash\" : 3474280699\n\"Revision\" : 3\n\"Keys\" : 3\n\"Size\" : 24576\n".into())
        );
        let err = p(Format::Protobuf).expect_err("unsupported");
        assert_eq!(
            (err.exit.code(), err.msg.as_str()),
            (4, "protobuf not supported as output format")
        );
        assert_eq!(
            Format::parse("yaml").map_err(|e| (e.exit.code(), e.msg)),
            Err((4, "unsupported output format".into()))
        );
    }

    #[test]
    fn hashkv_in_every_format() {
        let h = HashKv {
            hash: 645561629,
            hash_revision: oxcd_api::Revision(2),
            compact_revision: oxcd_api::Revision(-1),
        };
        assert_eq!(hashkv(Format::Simple, &h), Ok("645561629, 2, -1\n".into()));
        assert_eq!(
            hashkv(Format::Json, &h),
            Ok("{\"hash\":645561629,\"hashRevision\":2,\"compactRevision\":-1}\n".into())
        );
        assert_eq!(
            hashkv(Format::Fields, &h),
            Ok("\"Hash\" : 645561629\n\"Hash revision\" : 2\n\"Compact revision\" : -1\n".into())
        );
        let table = hashkv(Format::Table, &h).expect("table");
        assert!(
            table.contains("|   HASH    | HASH REVISION | COMPACT REVISION |"),
            "{table}"
        );
        assert!(
            table.contains("| 645561629 |             2 |               -1 |"),
            "{table}"
        );
    }

    #[test]
    fn bytes_read_as_go_humanize_writes_them() {
        assert_eq!(humanize_bytes(5), "5 B");
        assert_eq!(humanize_bytes(20_480), "20 kB");
        assert_eq!(humanize_bytes(1_500_000), "1.5 MB");
    }
}
