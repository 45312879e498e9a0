//! `-w table`: a boxed table, headers upper-case and centred, cells right-aligned.

pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .chain(std::iter::once(h.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rule = format!(
        "+{}+\n",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let heads: Vec<String> = header
        .iter()
        .zip(&widths)
        .map(|(h, w)| {
            let h = h.to_uppercase();
            let pad = w - h.chars().count();
            format!(" {}{h}{} ", " ".repeat(pad / 2), " ".repeat(pad - pad / 2))
        })
        .collect();
    let mut out = rule.clone();
    out.push_str(&format!("|{}|\n", heads.join("|")));
    out.push_str(&rule);
    for r in rows {
        let cells: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(i, w)| format!(" {:>w$} ", r.get(i).map_or("", String::as_str)))
            .collect();
        out.push_str(&format!("|{}|\n", cells.join("|")));
    }
    if !rows.is_empty() {
        out.push_str(&rule);
    }
    out
}
