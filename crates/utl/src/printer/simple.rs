//! `-w simple`: one comma-separated line.

pub fn row(cells: &[String]) -> String {
    format!("{}\n", cells.join(", "))
}
