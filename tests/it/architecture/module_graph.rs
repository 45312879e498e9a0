//! A crate's modules and which of them import which, read from the source text: a file is a
//! module (src/lib.rs the root, src/a.rs and src/a/mod.rs `a`, src/a/b.rs `a::b`); an edge
//! is a `crate::` path (grouped imports `crate::{a, b::{c, d}}` included) or a `super::` path,
//! resolved to the longest module it names. Comments, string literals and `#[cfg(test)]`
//! items are left out, and so are test-only files (`*tests.rs`, `tests/` directories) and
//! the binary's own root (src/main.rs, src/bin/). Edges into the root are not counted: the
//! root declares every module, and what it re-exports comes from them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// Where an edge was seen first: file (relative to src/) and line.
type Evidence = (String, usize);

pub struct ModuleGraph {
    modules: BTreeSet<String>,
    edges: BTreeMap<String, BTreeMap<String, Evidence>>,
}

impl ModuleGraph {
    /// The module graph of the crate whose sources are under `src`.
    pub fn of(src: &Path) -> ModuleGraph {
        let files: Vec<(String, PathBuf)> = module_files(src);
        let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
        let mut graph = ModuleGraph {
            modules,
            edges: BTreeMap::new(),
        };
        for (module, path) in &files {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let code = without_test_items(&code_only(&text));
            let file = path.strip_prefix(src).unwrap_or(path).display().to_string();
            for (line, base, segments) in references(&code, module) {
                let target = graph.resolve(base, &segments);
                if target.is_empty() || target == *module {
                    continue;
                }
                graph
                    .edges
                    .entry(module.clone())
                    .or_default()
                    .entry(target)
                    .or_insert((file.clone(), line));
            }
        }
        graph
    }

    /// The longest existing module that `base::segments` names.
    fn resolve(&self, base: Vec<String>, segments: &[String]) -> String {
        for k in (0..=segments.len()).rev() {
            let mut path = base.clone();
            path.extend(segments[..k].iter().cloned());
            let name = path.join("::");
            if self.modules.contains(&name) {
                return name;
            }
        }
        String::new()
    }

    /// Every cycle (strongly connected component of more than one module), described: one
    /// shortest cycle through it, then every edge inside it with where it was seen.
    pub fn cycles(&self) -> Vec<String> {
        let mut out = Vec::new();
        for component in self.components() {
            if component.len() < 2 {
                continue;
            }
            let members: BTreeSet<&String> = component.iter().collect();
            let mut inside = Vec::new();
            for from in &component {
                for (to, (file, line)) in self.edges.get(from).into_iter().flatten() {
                    if members.contains(to) {
                        inside.push(format!("    {from} -> {to}  ({file}:{line})"));
                    }
                }
            }
            out.push(format!(
                "cycle {} among {{{}}}\n{}",
                self.shortest_cycle(&component[0], &members).join(" -> "),
                component.join(", "),
                inside.join("\n")
            ));
        }
        out
    }

    /// A shortest path from `start` back to itself inside `members` (breadth first).
    fn shortest_cycle(&self, start: &String, members: &BTreeSet<&String>) -> Vec<String> {
        let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(at) = queue.pop_front() {
            for to in self.edges.get(at).into_iter().flat_map(|e| e.keys()) {
                if !members.contains(to) || came_from.contains_key(to) {
                    continue;
                }
                came_from.insert(to, at);
                if to == start {
                    let mut path = vec![start.clone()];
                    let mut node = at;
                    while node != start {
                        path.push(node.clone());
                        node = came_from[node];
                    }
                    path.push(start.clone());
                    path.reverse();
                    return path;
                }
                queue.push_back(to);
            }
        }
        vec![start.clone()]
    }

    /// Strongly connected components (Tarjan), each sorted.
    fn components(&self) -> Vec<Vec<String>> {
        struct State<'a> {
            graph: &'a ModuleGraph,
            next: usize,
            index: BTreeMap<&'a String, usize>,
            low: BTreeMap<&'a String, usize>,
            stack: Vec<&'a String>,
            on_stack: BTreeSet<&'a String>,
            out: Vec<Vec<String>>,
        }
        fn visit<'a>(s: &mut State<'a>, v: &'a String) {
            s.index.insert(v, s.next);
            s.low.insert(v, s.next);
            s.next += 1;
            s.stack.push(v);
            s.on_stack.insert(v);
            for w in s.graph.edges.get(v).into_iter().flat_map(|e| e.keys()) {
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let low = s.low[v].min(s.low[w]);
                    s.low.insert(v, low);
                } else if s.on_stack.contains(w) {
                    let low = s.low[v].min(s.index[w]);
                    s.low.insert(v, low);
                }
            }
            if s.low[v] == s.index[v] {
                let mut component = Vec::new();
                while let Some(w) = s.stack.pop() {
                    s.on_stack.remove(w);
                    component.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                component.sort();
                s.out.push(component);
            }
        }
        let mut s = State {
            graph: self,
            next: 0,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            out: Vec::new(),
        };
        for v in &self.modules {
            if !s.index.contains_key(v) {
                visit(&mut s, v);
            }
        }
        s.out.sort();
        s.out
    }
}

/// (module path, file) for every library source file under `src`.
fn module_files(src: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut pending = vec![src.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                let binaries = dir == src && name == "bin";
                if name != "tests" && !binaries {
                    pending.push(path);
                }
                continue;
            }
            let Some(stem) = name.strip_suffix(".rs") else {
                continue;
            };
            if stem.ends_with("tests") || (dir == src && stem == "main") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap_or(&path);
            let mut segments: Vec<String> = rel
                .parent()
                .into_iter()
                .flat_map(|p| p.components())
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if !(stem == "mod" || (dir == src && stem == "lib")) {
                segments.push(stem.to_string());
            }
            out.push((segments.join("::"), path));
        }
    }
    out.sort();
    out
}

/// The text with comments, string and char literals blanked out (lines kept in place).
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let prev_ident = i > 0 && ident(c[i - 1]);
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if let Some((quote, hashes)) = raw_string_at(&c, i, prev_ident) {
            // A raw string: r"..", r#".."#, br#".."#.
            let mut j = quote + 1;
            while j < c.len() && !(c[j] == '"' && (1..=hashes).all(|h| c.get(j + h) == Some(&'#')))
            {
                j += 1;
            }
            let end = (j + 1 + hashes).min(c.len());
            for &ch in &c[i..end] {
                blank(&mut out, ch);
            }
            i = end;
        } else if c[i] == '"' {
            blank(&mut out, c[i]);
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' && i + 1 < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
            if i < c.len() {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '\'' && (c.get(i + 1) == Some(&'\\') || c.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\'', '\u{..}'); a lifetime has no closing quote.
            let mut j = if c[i + 1] == '\\' { i + 3 } else { i + 2 };
            while j < c.len() && c[j] != '\'' {
                j += 1;
            }
            let end = (j + 1).min(c.len());
            for &ch in &c[i..end] {
                blank(&mut out, ch);
            }
            i = end;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Where the opening quote of a raw string starting at `i` is, and its number of `#`s.
fn raw_string_at(c: &[char], i: usize, prev_ident: bool) -> Option<(usize, usize)> {
    let mut j = match (c[i], c.get(i + 1)) {
        _ if prev_ident => return None,
        ('r', _) => i + 1,
        ('b', Some('r')) => i + 2,
        _ => return None,
    };
    let mut hashes = 0;
    while c.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (c.get(j) == Some(&'"')).then_some((j, hashes))
}

/// `code` with every item under `#[cfg(test)]` blanked out, or all of it after
/// `#![cfg(test)]`.
fn without_test_items(code: &str) -> String {
    if code.contains("#![cfg(test)]") {
        return code.chars().filter(|&c| c == '\n').collect();
    }
    let c: Vec<char> = code.chars().collect();
    let mut out: Vec<char> = c.clone();
    let attr: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + attr.len() <= c.len() {
        if c[i..i + attr.len()] != attr[..] {
            i += 1;
            continue;
        }
        // The item after the attribute (and any further attributes): up to its `;`, or to
        // the brace that closes its body.
        let mut j = i + attr.len();
        let mut depth = 0usize;
        let mut brackets = 0usize;
        while j < c.len() {
            match c[j] {
                '[' => brackets += 1,
                ']' => brackets = brackets.saturating_sub(1),
                ';' if depth == 0 && brackets == 0 => break,
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        let end = (j + 1).min(c.len());
        for ch in &mut out[i..end] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        i = end;
    }
    out.into_iter().collect()
}

/// Every `crate::` and `super::` path in `code` (of module `module`): (line, the module the
/// path starts from, its segments).
fn references(code: &str, module: &str) -> Vec<(usize, Vec<String>, Vec<String>)> {
    let c: Vec<char> = code.chars().collect();
    let own: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let starts = |at: usize, word: &str| {
        word.chars()
            .enumerate()
            .all(|(k, w)| c.get(at + k) == Some(&w))
    };
    let mut out = Vec::new();
    let (mut line, mut depth) = (1, 0usize);
    // Brace depths of the inline `mod name { .. }` blocks around the current position.
    let mut inline_mods: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let boundary = i == 0 || !ident(c[i - 1]);
        match c[i] {
            '\n' => line += 1,
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                while inline_mods.last().is_some_and(|&d| d > depth) {
                    inline_mods.pop();
                }
            }
            _ => {}
        }
        if boundary && starts(i, "mod ") {
            let mut j = i + 4;
            while c.get(j).is_some_and(|&ch| ident(ch) || ch.is_whitespace()) {
                j += 1;
            }
            if c.get(j) == Some(&'{') {
                inline_mods.push(depth + 1);
            }
        }
        let (base, mut j) = if boundary && starts(i, "crate::") {
            (Some(Vec::new()), i + 7)
        } else if boundary && starts(i, "super::") {
            let mut ups = 0;
            let mut j = i;
            while starts(j, "super::") {
                ups += 1;
                j += 7;
            }
            // Inside an inline module, the first `super`s lead back to this file's module.
            let ups = ups - ups.min(inline_mods.len());
            let keep = own.len().saturating_sub(ups);
            (Some(own[..keep].to_vec()), j)
        } else {
            (None, i)
        };
        if let Some(base) = base {
            let mut paths = Vec::new();
            j = use_tree(&c, j, Vec::new(), &mut paths);
            for segments in paths {
                out.push((line, base.clone(), segments));
            }
            // Newlines inside a grouped import still count.
            line += c[i..j.min(c.len())]
                .iter()
                .filter(|&&ch| ch == '\n')
                .count();
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// Reads a path or use tree at `at` (after `crate::` or `super::`): every full path it names
/// goes to `out`, as segments after `prefix`. Returns where it ends.
fn use_tree(
    c: &[char],
    mut at: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    let skip_ws = |mut at: usize| {
        while c.get(at).is_some_and(|ch| ch.is_whitespace()) {
            at += 1;
        }
        at
    };
    loop {
        at = skip_ws(at);
        match c.get(at) {
            Some('{') => {
                at += 1;
                loop {
                    at = skip_ws(at);
                    match c.get(at) {
                        None => return at,
                        Some('}') => return at + 1,
                        Some(',') => at += 1,
                        Some(_) => {
                            let before = at;
                            at = use_tree(c, at, prefix.clone(), out);
                            if at == before {
                                at += 1;
                            }
                        }
                    }
                }
            }
            Some('*') => {
                out.push(prefix);
                return at + 1;
            }
            _ => {}
        }
        let start = at;
        while c
            .get(at)
            .is_some_and(|&ch| ch.is_alphanumeric() || ch == '_')
        {
            at += 1;
        }
        let segment: String = c[start..at].iter().collect();
        if !segment.is_empty() && segment != "self" {
            prefix.push(segment);
        }
        let after = skip_ws(at);
        if !prefix.is_empty() && c.get(after) == Some(&':') && c.get(after + 1) == Some(&':') {
            at = after + 2;
            continue;
        }
        out.push(prefix);
        // `path as name`: the name is no path.
        if c.get(after) == Some(&'a')
            && c.get(after + 1) == Some(&'s')
            && c.get(after + 2).is_some_and(|ch| ch.is_whitespace())
        {
            at = skip_ws(after + 2);
            while c
                .get(at)
                .is_some_and(|&ch| ch.is_alphanumeric() || ch == '_')
            {
                at += 1;
            }
        }
        return at;
    }
}
