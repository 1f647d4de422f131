//! The crate's layout rules (issue 10), checked on its own source so that they hold as it grows:
//!
//! - the top-level modules import one another without cycles, and so do the files of each
//!   directory (`live/`, `payment/`, `payment/signer/`, ...);
//! - `axum` and `StatusCode` appear only in the HTTP edge (`http/`) and the binary;
//! - no file is over [`MAX_FILE_LINES`] lines and no function over [`MAX_FN_LINES`].
//!
//! The source is read as text: comments, string and character literals are blanked first, then
//! every `#[cfg(test)]` item (and every file it declares), since test code may reach anywhere.
//! The crate root (`lib.rs`) and the binary (`main.rs`, `cli/`) compose the modules and are left
//! out of the graphs; a directory's `mod.rs` is likewise the root of that directory's graph.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// No file longer than this (the issue's "about 800"); test-only files are exempt.
const MAX_FILE_LINES: usize = 800;

/// A hard backstop for the issue's "functions under about 80 lines"; test code is exempt.
const MAX_FN_LINES: usize = 100;

/// Functions allowed over [`MAX_FN_LINES`] for now, as (file under `src/`, function name). An
/// entry that no longer needs its exemption fails the test, so the list only shrinks.
const LONG_FN_ALLOWED: &[(&str, &str)] = &[];

/// Where `axum` and `StatusCode` may be named (besides test code and the root's `Router`).
fn http_allowed(rel: &str) -> bool {
    rel.starts_with("http/") || rel.starts_with("cli/") || rel == "main.rs"
}

// ---------------------------------------------------------------------------------------------
// Reading the source

/// One file of `src/`.
struct Source {
    /// Path under `src/`, with `/` separators.
    rel: String,
    /// Module path: `["live", "relay"]` for `live/relay.rs` and `["live"]` for `live/mod.rs`;
    /// empty for `lib.rs`; `["main"]` for the binary's root.
    module: Vec<String>,
    /// Number of lines.
    lines: usize,
    /// Tokens of the code outside comments, literals and `#[cfg(test)]` items.
    tokens: Vec<Token>,
    /// Declared only for tests (e.g. a `tests.rs`).
    test_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

impl Token {
    fn ident(&self) -> Option<&str> {
        match &self.tok {
            Tok::Ident(s) => Some(s),
            _ => None,
        }
    }

    fn is(&self, c: char) -> bool {
        self.tok == Tok::Punct(c)
    }

    fn is_ident(&self, name: &str) -> bool {
        self.ident() == Some(name)
    }
}

fn load_sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &src, &mut files);
    files.sort();
    let mut test_modules: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut sources: Vec<Source> = files
        .into_iter()
        .map(|(rel, raw)| {
            let module = module_path(&rel);
            let (code, test_mods, whole_file_test) =
                strip_test_items(&blank_comments_and_literals(&raw));
            for name in test_mods {
                let mut child = module.clone();
                child.push(name);
                test_modules.insert(child);
            }
            Source {
                rel,
                module,
                lines: raw.lines().count(),
                tokens: tokenize(&code),
                test_only: whole_file_test,
            }
        })
        .collect();
    for s in &mut sources {
        if test_modules.iter().any(|t| s.module.starts_with(t)) {
            s.test_only = true;
        }
    }
    sources
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

fn module_path(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> =
        rel.trim_end_matches(".rs").split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] {
        parts.clear();
    }
    parts
}

/// The text with every comment, string literal and character literal replaced by spaces, line
/// breaks kept, so that what remains is code and line numbers still match.
fn blank_comments_and_literals(raw: &str) -> String {
    let c: Vec<char> = raw.chars().collect();
    let mut out = c.clone();
    let mut i = 0;
    while i < c.len() {
        let Some(end) = skipped_end(&c, i) else {
            i += 1;
            continue;
        };
        let end = end.min(c.len());
        for ch in out[i..end].iter_mut().filter(|ch| **ch != '\n') {
            *ch = ' ';
        }
        i = end.max(i + 1);
    }
    out.into_iter().collect()
}

/// Where the comment or literal starting at `i` ends (exclusive), if one starts there. A `'`
/// that does not close within a character starts a lifetime or a label, which is code.
fn skipped_end(c: &[char], i: usize) -> Option<usize> {
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    let after_ident = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
    match (at(i), at(i + 1)) {
        ('/', '/') => Some(c[i..].iter().position(|&ch| ch == '\n').map_or(c.len(), |p| i + p)),
        ('/', '*') => Some(block_comment_end(c, i)),
        ('"', _) => {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            Some(j + 1)
        }
        ('\'', '\\') => c.iter().skip(i + 3).position(|&ch| ch == '\'').map(|p| i + 4 + p),
        ('\'', _) if at(i + 2) == '\'' => Some(i + 3),
        ('r', _) | ('b', 'r') if !after_ident => {
            raw_string_end(c, if at(i) == 'r' { i + 1 } else { i + 2 })
        }
        _ => None,
    }
}

/// The end of a (nested) block comment opening at `i`.
fn block_comment_end(c: &[char], i: usize) -> usize {
    let mut depth = 0;
    let mut j = i;
    while j + 1 < c.len() {
        match (c[j], c[j + 1]) {
            ('/', '*') => depth += 1,
            ('*', '/') => depth -= 1,
            _ => {
                j += 1;
                continue;
            }
        }
        j += 2;
        if depth == 0 {
            return j;
        }
    }
    c.len()
}

/// The end of a raw string (`r".."`, `r#".."#`) whose hashes start at `start`, if one does.
fn raw_string_end(c: &[char], start: usize) -> Option<usize> {
    let hashes = c.iter().skip(start).take_while(|&&ch| ch == '#').count();
    if c.get(start + hashes) != Some(&'"') {
        return None;
    }
    let closes = |j: usize| c[j] == '"' && (1..=hashes).all(|h| c.get(j + h) == Some(&'#'));
    let close = (start + hashes + 1..c.len()).find(|&j| closes(j))?;
    Some(close + 1 + hashes)
}

/// The code with every `#[cfg(test)]` item blanked (line breaks kept); also the names of the
/// modules declared that way in other files (`#[cfg(test)] mod tests;`), and whether the whole
/// file is test code (`#![cfg(test)]`).
fn strip_test_items(code: &str) -> (String, Vec<String>, bool) {
    let c: Vec<char> = code.chars().collect();
    let mut out = c.clone();
    let mut test_mods = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if c[i] != '#' {
            i += 1;
            continue;
        }
        let Some(close) = matching(&c, i + 1 + usize::from(c.get(i + 1) == Some(&'!')), '[', ']')
        else {
            i += 1;
            continue;
        };
        let attr: String = c[i..=close].iter().filter(|ch| !ch.is_whitespace()).collect();
        if attr == "#![cfg(test)]" {
            return (String::new(), test_mods, true);
        }
        if attr != "#[cfg(test)]" {
            i = close + 1;
            continue;
        }
        let end = item_end(&c, close + 1);
        let item: String = c[close + 1..end].iter().collect();
        if let Some(name) = declared_module(&item) {
            test_mods.push(name);
        }
        for ch in &mut out[i..end] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        i = end;
    }
    (out.into_iter().collect(), test_mods, false)
}

/// The name of the module an item declares without a body (`pub(crate) mod name;`).
fn declared_module(item: &str) -> Option<String> {
    let tokens = tokenize(item);
    let mut t = tokens.iter().map(|t| &t.tok).peekable();
    if t.next_if(|t| **t == Tok::Ident("pub".into())).is_some()
        && t.next_if(|t| **t == Tok::Punct('(')).is_some()
    {
        t.find(|t| **t == Tok::Punct(')'))?;
    }
    match (t.next(), t.next(), t.next(), t.next()) {
        (Some(Tok::Ident(m)), Some(Tok::Ident(name)), Some(Tok::Punct(';')), None)
            if m == "mod" =>
        {
            Some(name.clone())
        }
        _ => None,
    }
}

/// The index of the bracket closing the one at `open` (which must be `left`).
fn matching(c: &[char], open: usize, left: char, right: char) -> Option<usize> {
    if c.get(open) != Some(&left) {
        return None;
    }
    let mut depth = 0usize;
    for (k, &ch) in c.iter().enumerate().skip(open) {
        if ch == left {
            depth += 1;
        } else if ch == right {
            depth -= 1;
            if depth == 0 {
                return Some(k);
            }
        }
    }
    None
}

/// Where the item starting at `from` ends (exclusive): after its `;` or its closing `}` at
/// depth zero, or before the `,` or `}` that ends the list it is a member of.
fn item_end(c: &[char], from: usize) -> usize {
    let mut depth = 0i32;
    for (k, &ch) in c.iter().enumerate().skip(from) {
        match ch {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth < 0 {
                    return k;
                }
                if depth == 0 && ch == '}' {
                    return k + 1;
                }
            }
            ';' if depth == 0 => return k + 1,
            ',' if depth == 0 => return k,
            _ => {}
        }
    }
    c.len()
}

fn tokenize(code: &str) -> Vec<Token> {
    let c: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let mut word: String = c[start..i].iter().collect();
            if word == "r" && c.get(i) == Some(&'#') {
                // A raw identifier, r#type.
                let rest = i + 1;
                i = rest;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                word = c[rest..i].iter().collect();
            }
            tokens.push(Token { tok: Tok::Ident(word), line });
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            tokens.push(Token { tok: Tok::PathSep, line });
            i += 2;
        } else {
            tokens.push(Token { tok: Tok::Punct(ch), line });
            i += 1;
        }
    }
    tokens
}

// ---------------------------------------------------------------------------------------------
// Paths named by the code

/// A path a file names, made absolute from the crate root, with the line naming it.
struct Named {
    path: Vec<String>,
    line: usize,
}

/// Every path in a use tree starting at `tokens[i]` under `prefix`: `a::b`, `a::{b, c::d}`,
/// `{self, x}`; with the name each is bound to when it is imported (`as` or its last segment).
/// Returns the index after the tree.
fn use_tree(
    tokens: &[Token],
    mut i: usize,
    prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>)>,
) -> usize {
    let Some(t) = tokens.get(i) else {
        out.push((prefix, None));
        return i;
    };
    if t.is('{') {
        i += 1;
        while let Some(t) = tokens.get(i) {
            if t.is('}') {
                return i + 1;
            }
            if t.is(',') {
                i += 1;
                continue;
            }
            let next = use_tree(tokens, i, prefix.clone(), out);
            if next == i {
                i += 1;
            } else {
                i = next;
            }
        }
        return i;
    }
    let Some(name) = t.ident() else {
        // `*`, or generic arguments (`Type::<T>`): the path so far.
        let star = t.is('*');
        out.push((prefix, None));
        return if star { i + 1 } else { i };
    };
    let mut path = prefix;
    if name != "self" {
        path.push(name.to_owned());
    }
    i += 1;
    if tokens.get(i).is_some_and(|t| t.tok == Tok::PathSep) {
        return use_tree(tokens, i + 1, path, out);
    }
    let mut bound = path.last().cloned();
    if tokens.get(i).is_some_and(|t| t.is_ident("as")) {
        bound = tokens.get(i + 1).and_then(Token::ident).map(str::to_owned);
        i += 2;
    }
    out.push((path, bound));
    i
}

/// The paths a file names through `crate::` and `super::`, made absolute; `super::` counts
/// from the inline module (`mod name { .. }`) it is written in, if any.
fn named_paths(source: &Source) -> Vec<Named> {
    let t = &source.tokens;
    let mut out = Vec::new();
    let mut depth = 0usize;
    // The inline modules open at this point, with the brace depth inside each.
    let mut inline: Vec<(usize, String)> = Vec::new();
    for i in 0..t.len() {
        if t[i].is('{') {
            depth += 1;
            if let (Some(m), Some(name)) = (i.checked_sub(2).map(|k| &t[k]), t[i - 1].ident())
                && m.is_ident("mod")
            {
                inline.push((depth, name.to_owned()));
            }
        } else if t[i].is('}') {
            if inline.last().is_some_and(|(d, _)| *d == depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
        }
        let starts_path = i == 0 || t[i - 1].tok != Tok::PathSep;
        if !starts_path || t.get(i + 1).is_none_or(|n| n.tok != Tok::PathSep) {
            continue;
        }
        let (base, rest) = if t[i].is_ident("crate") {
            (Vec::new(), i + 2)
        } else if t[i].is_ident("super") {
            let mut base = source.module.clone();
            base.extend(inline.iter().map(|(_, name)| name.clone()));
            let mut k = i;
            while t.get(k).is_some_and(|x| x.is_ident("super"))
                && t.get(k + 1).is_some_and(|x| x.tok == Tok::PathSep)
            {
                base.pop();
                k += 2;
            }
            (base, k)
        } else {
            continue;
        };
        let mut paths = Vec::new();
        use_tree(t, rest, base, &mut paths);
        out.extend(paths.into_iter().map(|(path, _)| Named { path, line: t[i].line }));
    }
    out
}

/// The names a root file (`lib.rs`, a `mod.rs`) imports from its child modules, mapped to the
/// child: a child file that names `super::Item` really depends on the child `Item` is from.
fn reexports(root: &Source, children: &BTreeSet<String>) -> BTreeMap<String, String> {
    let t = &root.tokens;
    let mut map = BTreeMap::new();
    for i in 0..t.len() {
        if !t[i].is_ident("use") {
            continue;
        }
        let mut paths = Vec::new();
        use_tree(t, i + 1, Vec::new(), &mut paths);
        for (mut path, bound) in paths {
            // `crate::` paths count only under the root; others are relative to it.
            if path.first().is_some_and(|p| p == "crate") {
                path.remove(0);
                if !path.starts_with(&root.module) {
                    continue;
                }
                path.drain(..root.module.len());
            } else if path.first().is_some_and(|p| p == "self") {
                path.remove(0);
            }
            if let (Some(child), Some(bound)) = (path.first(), bound)
                && children.contains(child)
                && path.len() > 1
            {
                map.insert(bound, child.clone());
            }
        }
    }
    map
}

// ---------------------------------------------------------------------------------------------
// Graphs

/// Module graph: edges with the first place each was seen.
#[derive(Default)]
struct Graph {
    edges: BTreeMap<String, BTreeMap<String, String>>,
}

impl Graph {
    fn add(&mut self, from: &str, to: &str, at: String) {
        if from != to {
            self.edges.entry(from.to_owned()).or_default().entry(to.to_owned()).or_insert(at);
        }
    }

    /// Each cycle found, written out with the place of each edge; empty if acyclic.
    fn cycles(&self) -> Vec<String> {
        let mut reported = Vec::new();
        let mut seen_sets: BTreeSet<BTreeSet<String>> = BTreeSet::new();
        for start in self.edges.keys() {
            if let Some(cycle) = self.path(start, start) {
                let set: BTreeSet<String> = cycle.iter().cloned().collect();
                if !seen_sets.insert(set) {
                    continue;
                }
                let mut text = start.clone();
                for pair in std::iter::once(start).chain(&cycle).collect::<Vec<_>>().windows(2) {
                    let at = &self.edges[pair[0]][pair[1]];
                    let _ = write!(text, " -> {} ({at})", pair[1]);
                }
                reported.push(text);
            }
        }
        reported
    }

    /// The shortest path from `from` to `to` (one edge at least), as the nodes after `from`.
    fn path(&self, from: &str, to: &str) -> Option<Vec<String>> {
        let mut prev: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([from.to_owned()]);
        while let Some(node) = queue.pop_front() {
            for next in self.edges.get(&node).into_iter().flat_map(|e| e.keys()) {
                if prev.contains_key(next) {
                    continue;
                }
                prev.insert(next.clone(), node.clone());
                if next == to {
                    let mut path = vec![next.clone()];
                    let mut at = node.clone();
                    while at != from {
                        path.push(at.clone());
                        at = prev[&at].clone();
                    }
                    path.reverse();
                    return Some(path);
                }
                queue.push_back(next.clone());
            }
        }
        None
    }
}

/// The library's files, without the binary and test code.
fn library(sources: &[Source]) -> impl Iterator<Item = &Source> {
    sources
        .iter()
        .filter(|s| !s.test_only && !s.module.first().is_some_and(|m| m == "main" || m == "cli"))
}

/// Edges between the children of the module at `root` (the crate root when empty).
fn graph_under(sources: &[Source], root: &[String]) -> Graph {
    let depth = root.len();
    let children: BTreeSet<String> = library(sources)
        .filter(|s| s.module.len() > depth && s.module.starts_with(root))
        .map(|s| s.module[depth].clone())
        .collect();
    let root_file = sources.iter().find(|s| s.module == root).expect("the root file");
    let reexported = reexports(root_file, &children);
    let mut graph = Graph::default();
    for s in library(sources).filter(|s| s.module.len() > depth && s.module.starts_with(root)) {
        let from = &s.module[depth];
        for named in named_paths(s) {
            if named.path.len() <= depth || !named.path.starts_with(root) {
                continue;
            }
            let head = &named.path[depth];
            let to = if children.contains(head) && named.path.len() > depth {
                head
            } else if let Some(child) = reexported.get(head) {
                child
            } else {
                continue;
            };
            graph.add(from, to, format!("{}:{}", s.rel, named.line));
        }
    }
    graph
}

// ---------------------------------------------------------------------------------------------
// The rules

#[test]
fn top_level_modules_import_without_cycles() {
    let sources = load_sources();
    let graph = graph_under(&sources, &[]);
    assert!(graph.edges.len() > 3, "the graph looks empty: {:?}", graph.edges.keys());
    let cycles = graph.cycles();
    assert!(cycles.is_empty(), "import cycles between top-level modules:\n{}", cycles.join("\n"));
}

#[test]
fn the_files_of_each_directory_import_without_cycles() {
    let sources = load_sources();
    // Every module with children of its own (`live`, `payment`, `payment::signer`, ...).
    let dirs: BTreeSet<&[String]> =
        library(&sources).flat_map(|s| (1..s.module.len()).map(|k| &s.module[..k])).collect();
    assert!(dirs.len() > 3, "few directories found: {dirs:?}");
    let mut found = Vec::new();
    for dir in dirs {
        let graph = graph_under(&sources, dir);
        let name = dir.join("/");
        found.extend(graph.cycles().into_iter().map(|c| format!("{name}/: {c}")));
    }
    assert!(found.is_empty(), "import cycles inside a module:\n{}", found.join("\n"));
}

#[test]
fn axum_and_status_codes_stay_in_the_http_edge() {
    let sources = load_sources();
    let mut found = Vec::new();
    for s in sources.iter().filter(|s| !s.test_only && !http_allowed(&s.rel)) {
        for (i, t) in s.tokens.iter().enumerate() {
            let Some(name @ ("axum" | "StatusCode")) = t.ident() else { continue };
            // The crate root hands out its routers (`Gateway::public_router`).
            let root_router = s.module.is_empty()
                && name == "axum"
                && s.tokens.get(i + 1).is_some_and(|t| t.tok == Tok::PathSep)
                && s.tokens.get(i + 2).is_some_and(|t| t.is_ident("Router"));
            if !root_router {
                found.push(format!("{}:{}: {name}", s.rel, t.line));
            }
        }
    }
    assert!(found.is_empty(), "HTTP types outside src/http/:\n{}", found.join("\n"));
}

#[test]
fn no_file_is_too_long() {
    let sources = load_sources();
    // Guards the scanner: the unit-test files are found to be test code.
    for s in sources.iter().filter(|s| s.rel.ends_with("tests.rs")) {
        assert!(s.test_only, "{} is not declared under #[cfg(test)]", s.rel);
    }
    let long: Vec<String> = sources
        .iter()
        .filter(|s| !s.test_only && s.lines > MAX_FILE_LINES)
        .map(|s| format!("{}: {} lines", s.rel, s.lines))
        .collect();
    assert!(long.is_empty(), "files over {MAX_FILE_LINES} lines:\n{}", long.join("\n"));
}

/// Every function with a body: (name, first line, number of lines).
fn functions(tokens: &[Token]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for i in 0..tokens.len() {
        let (true, Some(name)) =
            (tokens[i].is_ident("fn"), tokens.get(i + 1).and_then(Token::ident))
        else {
            continue;
        };
        // The body is the first `{` outside the parameters and types; a `;` first means none.
        let mut depth = 0i32;
        let mut body = None;
        for (k, t) in tokens.iter().enumerate().skip(i + 2) {
            match t.tok {
                Tok::Punct('(' | '[') => depth += 1,
                Tok::Punct(')' | ']') => depth -= 1,
                Tok::Punct('{') if depth == 0 => {
                    body = Some(k);
                    break;
                }
                Tok::Punct(';') if depth == 0 => break,
                _ => {}
            }
        }
        let Some(open) = body else { continue };
        let mut braces = 0i32;
        for t in &tokens[open..] {
            if t.is('{') {
                braces += 1;
            } else if t.is('}') {
                braces -= 1;
                if braces == 0 {
                    out.push((name.to_owned(), tokens[i].line, t.line - tokens[i].line + 1));
                    break;
                }
            }
        }
    }
    out
}

#[test]
fn no_function_is_too_long() {
    let sources = load_sources();
    let mut long = Vec::new();
    let mut exempt_used = BTreeSet::new();
    for s in sources.iter().filter(|s| !s.test_only) {
        for (name, line, lines) in functions(&s.tokens) {
            if lines <= MAX_FN_LINES {
                continue;
            }
            if LONG_FN_ALLOWED.contains(&(s.rel.as_str(), name.as_str())) {
                exempt_used.insert((s.rel.clone(), name));
                continue;
            }
            long.push(format!("{}:{line}: fn {name}: {lines} lines", s.rel));
        }
    }
    assert!(long.is_empty(), "functions over {MAX_FN_LINES} lines:\n{}", long.join("\n"));
    for (file, name) in LONG_FN_ALLOWED {
        assert!(
            exempt_used.contains(&((*file).to_owned(), (*name).to_owned())),
            "{file}: fn {name} is no longer over {MAX_FN_LINES} lines: remove it from LONG_FN_ALLOWED"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The scanner itself

fn source(rel: &str, text: &str) -> Source {
    let (code, _, test_only) = strip_test_items(&blank_comments_and_literals(text));
    Source {
        rel: rel.to_owned(),
        module: module_path(rel),
        lines: text.lines().count(),
        tokens: tokenize(&code),
        test_only,
    }
}

#[test]
fn the_scanner_ignores_comments_literals_and_tests() {
    let text = r##"
// crate::a::x
/* crate::b /* nested */ crate::c */
const S: &str = "crate::d \" crate::e";
const R: &str = r#"crate::f "# ;
const C: char = '"'; fn f<'a>(x: &'a str) {} const Q: (char, &[u8]) = ('\'', b"crate::q");
use crate::{g::{self, h}, i as j};
use super::k;
mod inner { fn f() { super::super::z(); } }
#[cfg(test)]
mod tests { use crate::l; }
#[cfg(test)]
mod more;
"##;
    let s = source("m/n.rs", text);
    let paths: Vec<Vec<String>> = named_paths(&s).into_iter().map(|n| n.path).collect();
    let want: Vec<Vec<String>> = [&["g"][..], &["g", "h"], &["i"], &["m", "k"], &["m", "z"]]
        .iter()
        .map(|p| p.iter().map(|s| (*s).to_owned()).collect())
        .collect();
    assert_eq!(paths, want);
    let (_, test_mods, _) = strip_test_items(&blank_comments_and_literals(text));
    assert_eq!(test_mods, ["more"]);
}

#[test]
fn the_scanner_measures_functions_and_finds_cycles() {
    let text = "fn short() { let x = [0u8; 4]; }\nfn long(\n  a: u32,\n) -> u32 {\n  a\n}\ntrait T { fn decl(&self); }\n";
    let s = source("x.rs", text);
    let fns: Vec<(String, usize, usize)> = functions(&s.tokens);
    assert_eq!(fns, [("short".to_owned(), 1, 1), ("long".to_owned(), 2, 5)]);

    let mut g = Graph::default();
    g.add("a", "b", "a.rs:1".into());
    g.add("b", "c", "b.rs:2".into());
    assert!(g.cycles().is_empty());
    g.add("c", "a", "c.rs:3".into());
    assert_eq!(g.cycles(), ["a -> b (a.rs:1) -> c (b.rs:2) -> a (c.rs:3)"]);
}
