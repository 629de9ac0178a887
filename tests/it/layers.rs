//! The library's module graph against the layer table of `docs/architecture.md`: no module
//! imports from its own layer or above, no two files of a folder import each other in a cycle,
//! and every module has its layer. The table is parsed from the document, so the document and
//! the code cannot drift apart silently.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module importing from another module (each a module path).
type Edge = (Vec<String>, Vec<String>);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `module → layer` from the table under "## The layers" in docs/architecture.md.
fn layer_table() -> BTreeMap<String, u32> {
    let doc =
        std::fs::read_to_string(root().join("docs/architecture.md")).expect("architecture.md");
    let section = doc
        .split("## The layers")
        .nth(1)
        .expect("a '## The layers' section");
    let mut table = BTreeMap::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(layer) = cells.get(1).and_then(|c| c.parse::<u32>().ok()) else {
            continue;
        };
        for name in cells[2].split(',') {
            let name = name.trim().trim_matches('`');
            assert!(!name.is_empty(), "empty module name in {line:?}");
            assert!(
                table.insert(name.to_string(), layer).is_none(),
                "{name} is listed twice"
            );
        }
    }
    assert!(table.len() > 5, "the layer table was not found: {table:?}");
    table
}

/// A source file: its path under `src/` and its module path (`index::files`; `lib` is empty).
struct SourceFile {
    rel: String,
    module: Vec<String>,
    text: String,
}

fn source_files() -> Vec<SourceFile> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read src") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = root().join("src");
    let mut paths = Vec::new();
    walk(&src, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            let mut module: Vec<String> = rel
                .trim_end_matches(".rs")
                .split('/')
                .map(str::to_owned)
                .collect();
            if module.last().is_some_and(|m| m == "mod" || m == "lib") {
                module.pop();
            }
            let text = strip(&std::fs::read_to_string(&p).expect("read source"));
            SourceFile { rel, module, text }
        })
        .collect()
}

/// The text without comments and without `#[cfg(test)]` modules: only what the library builds.
fn strip(text: &str) -> String {
    let no_comments: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = String::new();
    let mut rest = no_comments.as_str();
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let is_mod = after["#[cfg(test)]".len()..]
            .trim_start()
            .starts_with("mod ");
        match (is_mod, after.find('{')) {
            (true, Some(open)) if !after[..open].contains(';') => {
                let mut depth = 0usize;
                let mut end = after.len();
                for (j, c) in after[open..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = open + j + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &after[end..];
            }
            _ => {
                out.push_str("#[cfg(test)]");
                rest = &after["#[cfg(test)]".len()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The paths named in `text`: every `use` tree expanded, and every `crate::`, `$crate::`,
/// `super::` and `self::` path in code. Each with whether it is a `pub` re-export.
fn named_paths(text: &str) -> Vec<(Vec<String>, bool)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("use ") {
        let at = i + pos;
        i = at + 4;
        // A `use` item starts its line, after an optional visibility.
        let line_start = text[..at].rfind('\n').map_or(0, |n| n + 1);
        let before = text[line_start..at].trim();
        if !(before.is_empty() || before.starts_with("pub")) {
            continue;
        }
        let public = !before.is_empty();
        let Some(end) = text[at..].find(';') else {
            break;
        };
        let tree = normalise(&text[at + 4..at + end]);
        let mut paths = Vec::new();
        expand(&tree, &mut Vec::new(), &mut paths);
        out.extend(paths.into_iter().map(|p| (p, public)));
        i = at + end;
    }
    for prefix in ["$crate::", "crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(pos) = text[from..].find(prefix) {
            let at = from + pos;
            from = at + prefix.len();
            if at > 0 {
                let b = bytes[at - 1];
                if b.is_ascii_alphanumeric() || b == b'_' || (b == b'$' && prefix != "$crate::") {
                    continue;
                }
                if b == b':' {
                    continue;
                }
            }
            let mut path = vec![prefix
                .trim_end_matches("::")
                .trim_start_matches('$')
                .to_string()];
            let mut rest = &text[at + prefix.len()..];
            loop {
                let n = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                if n == 0 {
                    break;
                }
                path.push(rest[..n].to_string());
                rest = &rest[n..];
                match rest.strip_prefix("::") {
                    Some(r) => rest = r,
                    None => break,
                }
            }
            if path.len() > 1 {
                out.push((path, false));
            }
        }
    }
    out
}

/// A `use` tree with single spaces only where they separate words (`f as g`).
fn normalise(tree: &str) -> String {
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut out = String::new();
    for w in words {
        let glue = out.ends_with(|c: char| "{},:".contains(c))
            || w.starts_with(|c: char| "{},:".contains(c));
        if !out.is_empty() && !glue {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

/// Expands a `use` tree (`a::b::{c, d::{e}, f as g}`) into its paths.
fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim_start_matches("::");
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let inner = &tree[open + 1..tree.rfind('}').expect("balanced use tree")];
        let mut depth = 0;
        let mut start = 0;
        let mut parts = Vec::new();
        for (j, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&inner[start..j]);
                    start = j + 1;
                }
                _ => {}
            }
        }
        parts.push(&inner[start..]);
        let n = prefix.len();
        prefix.extend(head);
        for p in parts.into_iter().filter(|p| !p.is_empty()) {
            expand(p, prefix, out);
        }
        prefix.truncate(n);
    } else {
        let mut p = prefix.clone();
        let path = tree.split(" as ").next().unwrap_or(tree);
        p.extend(
            path.split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
        out.push(p);
    }
}

/// The modules a file declares (`mod x;`, `pub mod x;`, ...).
fn declared_children(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let l = line.trim();
        let l = l
            .strip_prefix("pub(crate) ")
            .or_else(|| l.strip_prefix("pub "))
            .unwrap_or(l);
        if let Some(rest) = l.strip_prefix("mod ") {
            if let Some(name) = rest.strip_suffix(';') {
                out.insert(name.trim().to_string());
            }
        }
    }
    out
}

#[test]
fn layers_reach_only_downward_and_folders_have_no_cycles() {
    let table = layer_table();
    let files = source_files();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    let top = |m: &[String]| m.first().cloned().unwrap_or_else(|| "lib".to_string());
    let mut faults = Vec::new();
    for f in &files {
        if !table.contains_key(&top(&f.module)) {
            faults.push(format!(
                "src/{}: module {} has no layer in docs/architecture.md",
                f.rel,
                top(&f.module)
            ));
        }
    }
    // (from module, to module) edges between files of one folder.
    let mut folder_edges: BTreeMap<String, BTreeSet<Edge>> = BTreeMap::new();
    for f in &files {
        let children = declared_children(&f.text);
        let is_root_of_folder = f.rel.ends_with("mod.rs") || f.rel == "lib.rs";
        for (path, public) in named_paths(&f.text) {
            let abs: Vec<String> = match path[0].as_str() {
                "crate" => path[1..].to_vec(),
                "super" => {
                    let mut m = f.module.clone();
                    let mut rest = &path[..];
                    while rest.first().is_some_and(|s| s == "super") {
                        m.pop();
                        rest = &rest[1..];
                    }
                    m.extend(rest.iter().cloned());
                    m
                }
                "self" => {
                    let mut m = f.module.clone();
                    m.extend(path[1..].iter().cloned());
                    m
                }
                first if children.contains(first) => {
                    // A re-export of a child's item by its folder's root is naming, not use.
                    if public && is_root_of_folder {
                        continue;
                    }
                    let mut m = f.module.clone();
                    m.extend(path.iter().cloned());
                    m
                }
                _ => continue,
            };
            if abs.is_empty() {
                continue;
            }
            // The deepest module file the path names.
            let target = (1..=abs.len())
                .rev()
                .map(|n| abs[..n].to_vec())
                .find(|m| modules.contains(m))
                .unwrap_or_default();
            let (from, to) = (top(&f.module), top(&target));
            if from != to {
                let (lf, lt) = (table.get(&from), table.get(&to));
                if let (Some(lf), Some(lt)) = (lf, lt) {
                    if lt >= lf {
                        faults.push(format!(
                            "src/{}: {from} (layer {lf}) uses {} of {to} (layer {lt})",
                            f.rel,
                            path.join("::")
                        ));
                    }
                }
            } else if target != f.module && !target.is_empty() {
                folder_edges
                    .entry(from)
                    .or_default()
                    .insert((f.module.clone(), target));
            }
        }
    }
    for (folder, edges) in &folder_edges {
        if let Some(cycle) = find_cycle(edges) {
            faults.push(format!(
                "files of {folder}/ import each other in a cycle: {}",
                cycle
                    .iter()
                    .map(|m| m.join("::"))
                    .collect::<Vec<_>>()
                    .join(" -> ")
            ));
        }
    }
    assert!(
        faults.is_empty(),
        "layer violations:\n{}",
        faults.join("\n")
    );
}

fn find_cycle(edges: &BTreeSet<Edge>) -> Option<Vec<Vec<String>>> {
    let mut next: BTreeMap<&Vec<String>, Vec<&Vec<String>>> = BTreeMap::new();
    for (a, b) in edges {
        next.entry(a).or_default().push(b);
    }
    fn visit<'a>(
        n: &'a Vec<String>,
        next: &BTreeMap<&'a Vec<String>, Vec<&'a Vec<String>>>,
        stack: &mut Vec<&'a Vec<String>>,
        done: &mut BTreeSet<&'a Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        if let Some(i) = stack.iter().position(|s| *s == n) {
            let mut c: Vec<Vec<String>> = stack[i..].iter().map(|s| (*s).clone()).collect();
            c.push(n.clone());
            return Some(c);
        }
        if !done.insert(n) {
            return None;
        }
        stack.push(n);
        for m in next.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, next, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for n in next.keys() {
        if let Some(c) = visit(n, &next, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

/// The checker itself catches what it is for: an upward import, a same-layer import, a cycle
/// inside a folder, and a module without a layer.
#[test]
fn the_layer_checker_sees_upward_imports_and_cycles() {
    let paths = named_paths(&strip(
        "use crate::{engine::Engine, index::{Index, tables::FILES}};\n\
         // use crate::store::Store;\n\
         fn f() { super::x::y(); crate::id::hex(b\"\"); }\n\
         #[cfg(test)]\nmod tests { use crate::store::Store; }\n\
         pub(crate) use files::Row;",
    ));
    let names: Vec<String> = paths.iter().map(|(p, _)| p.join("::")).collect();
    assert_eq!(
        names,
        [
            "crate::engine::Engine",
            "crate::index::Index",
            "crate::index::tables::FILES",
            "files::Row",
            "crate::id::hex",
            "super::x::y",
        ]
    );
    assert!(paths[3].1, "a pub(crate) use is a re-export");
    let e = |a: &str, b: &str| {
        (
            a.split("::").map(str::to_owned).collect::<Vec<_>>(),
            b.split("::").map(str::to_owned).collect::<Vec<_>>(),
        )
    };
    let cyclic: BTreeSet<_> = [e("x::a", "x::b"), e("x::b", "x::c"), e("x::c", "x::a")].into();
    assert!(find_cycle(&cyclic).is_some());
    let acyclic: BTreeSet<_> = [e("x::a", "x::b"), e("x::b", "x::c"), e("x::a", "x::c")].into();
    assert!(find_cycle(&acyclic).is_none());
    assert_eq!(
        declared_children("mod a;\npub mod b;\npub(crate) mod c;\nmod d {"),
        ["a", "b", "c"].map(String::from).into()
    );
}

/// The README's layout block names every module of `src/` (a new module must be placed there).
#[test]
fn the_readme_layout_names_every_module() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let layout = readme
        .split("## Layout")
        .nth(1)
        .and_then(|s| s.split("```text").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("a text block under '## Layout'");
    let mut missing = Vec::new();
    for e in std::fs::read_dir(root().join("src")).expect("src") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        let shown = if name.ends_with(".rs") {
            name.clone()
        } else {
            format!("{name}/")
        };
        if !layout.contains(&shown) {
            missing.push(shown);
        }
    }
    assert!(missing.is_empty(), "README layout lacks {missing:?}");
}
