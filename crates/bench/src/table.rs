//! The comparison table every side-by-side load prints: each figure for both products and
//! the ratio oxcd/etcd.

pub struct Row {
    pub name: String,
    pub unit: &'static str,
    pub oxcd: f64,
    pub etcd: f64,
    pub higher_is_better: bool,
}

/// The comparison table: each figure for both products and the ratio oxcd/etcd.
pub fn print_rows(first: &str, second: &str, rows: Vec<Row>) {
    println!(
        "{:<34} {:>12} {:>12} {:>10}  unit",
        "load", first, second, "oxcd/etcd"
    );
    for r in rows {
        let ratio = if r.etcd > 0.0 {
            r.oxcd / r.etcd
        } else {
            f64::NAN
        };
        let mark = if (r.higher_is_better && ratio >= 1.0) || (!r.higher_is_better && ratio <= 1.0)
        {
            ""
        } else {
            "  (worse)"
        };
        println!(
            "{:<34} {:>12.1} {:>12.1} {:>10.2}  {}{mark}",
            r.name, r.oxcd, r.etcd, ratio, r.unit
        );
    }
}
