//! The language tables shipped in `js/locales/`: one text per message, in
//! the order of the core's table, each with exactly the placeholders of its
//! English template. A table that drifts from `src/core/text.rs` fails here,
//! not on a page.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeSet;

use quota_widget::core::Msg;

/// The `{name}` placeholders of a template, over all its plural variants.
fn placeholders(template: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                out.insert(after[..close].to_owned());
                rest = &after[close + 1..];
            }
            None => break,
        }
    }
    out
}

/// The table's entries: each line `  "text", // name`, the text a JSON
/// string literal.
fn entries(source: &str) -> Vec<(String, String)> {
    source
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let (literal, name) = line.strip_prefix('"').and_then(|_| line.rsplit_once(", // "))?;
            let text: String = serde_json::from_str(literal).unwrap_or_else(|e| panic!("not a JSON string: {literal}: {e}"));
            Some((text, name.to_owned()))
        })
        .collect()
}

#[test]
fn the_chinese_table_has_every_message_in_order_with_its_placeholders() {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/js/locales/zh-CN.js")).expect("js/locales/zh-CN.js");
    let table = entries(&source);
    assert_eq!(table.len(), Msg::ALL.len(), "one text per message");
    for ((text, name), m) in table.iter().zip(Msg::ALL) {
        assert_eq!(name, m.key(), "the table's order must be the core's (messages.md)");
        // Every placeholder of the English text, the details of {error}
        // included, and no other.
        let want = placeholders(m.en());
        let got = placeholders(text);
        assert_eq!(got, want, "{name}: placeholders of {text:?} against {:?}", m.en());
        assert!(!text.trim().is_empty(), "{name} is empty");
    }
}

#[test]
fn placeholders_are_read_from_every_variant() {
    let got = placeholders("one={units} unit|other={units} units · {left}");
    assert_eq!(got, ["left", "units"].iter().map(|s| s.to_string()).collect());
}
