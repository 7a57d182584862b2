//! The server's modules form layers: HTTP (`routes`, `openapi`, `dev`,
//! `http`, `answers`) over the service (`service`, with `sse`, `worker` and
//! the upstream client `upstream`) over the storage (`storage`, `store`,
//! `hub`, `ids`, `error`). Imports run one way only: this reads the sources
//! and fails on an import circle or an import of a higher layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each module (`store/pg` for a file in a folder) and the modules it uses.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&src).expect("src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            for inner in std::fs::read_dir(&path).expect("folder") {
                files.push(inner.expect("entry").path());
            }
        } else {
            files.push(path);
        }
    }
    let name = |path: &Path| {
        let rel = path.strip_prefix(&src).expect("under src").with_extension("");
        let rel = rel.to_string_lossy().replace('\\', "/");
        rel.strip_suffix("/mod").map(str::to_owned).unwrap_or(rel)
    };
    let modules: BTreeSet<String> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| name(p))
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut graph = BTreeMap::new();
    for path in &files {
        let module = name(path);
        if !modules.contains(&module) {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("source");
        // Unit tests may reach anywhere; comments are not imports.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        let code: String = text.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n");
        let mut uses = BTreeSet::new();
        let mut rest = code.as_str();
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                group.split('}').next().unwrap_or_default().split(',').collect()
            } else {
                vec![rest]
            };
            for n in names {
                // Each segment's leading identifier (`service as _` is `service`).
                let ident = |p: &str| -> String { p.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect() };
                let path: Vec<String> = n.split("::").map(ident).collect();
                let nested = path.get(1).map(|b| format!("{}/{b}", path[0]));
                match nested {
                    Some(m) if modules.contains(&m) => uses.insert(m),
                    _ if modules.contains(&path[0]) => uses.insert(path[0].clone()),
                    _ => false,
                };
            }
        }
        if let Some((parent, _)) = module.split_once('/') {
            if code.contains("super::") {
                uses.insert(parent.to_owned());
            }
        }
        uses.remove(&module);
        graph.insert(module, uses);
    }
    graph
}

/// A circle through `from`, if any (depth-first search).
fn circle(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    fn walk(g: &BTreeMap<String, BTreeSet<String>>, at: &str, goal: &str, path: &mut Vec<String>, seen: &mut BTreeSet<String>) -> bool {
        for next in g.get(at).into_iter().flatten() {
            if next == goal {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(g, next, goal, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![from.to_owned()];
    walk(graph, from, from, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_module_imports_one_that_imports_it() {
    let graph = imports();
    assert!(graph.contains_key("http") && graph.contains_key("store/pg"), "the modules were read: {graph:?}");
    for module in graph.keys() {
        assert_eq!(circle(&graph, module), None, "an import circle through {module}");
    }
}

#[test]
fn layers_import_downwards_only() {
    let graph = imports();
    let http = ["routes", "openapi", "dev", "http", "answers"];
    let service = ["service", "sse", "worker", "upstream", "upstream/kling", "outcome", "limits", "config"];
    let storage = ["storage", "store", "store/pg", "store/sqlite", "hub", "ids", "error"];
    for module in storage {
        let above: Vec<_> = graph[module].iter().filter(|m| http.contains(&m.as_str()) || service.contains(&m.as_str())).collect();
        assert!(above.is_empty(), "{module}, of the storage, imports {above:?}");
    }
    for module in service {
        let above: Vec<_> = graph[module].iter().filter(|m| http.contains(&m.as_str())).collect();
        assert!(above.is_empty(), "{module}, of the service, imports {above:?}");
    }
    for module in http.iter().chain(&service).chain(&storage) {
        assert!(graph.contains_key(*module), "{module} is gone: update this test");
    }
    for module in graph.keys() {
        assert!(
            http.contains(&module.as_str()) || service.contains(&module.as_str()) || storage.contains(&module.as_str()),
            "{module} belongs to no layer: add it to this test"
        );
    }
}
