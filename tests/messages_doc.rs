//! `docs/messages.md`, the list of every message a dashboard can replace,
//! is made from the core's table (`core::text`): this test fails when the
//! two differ. `QW_WRITE_DOCS=1 cargo test --test messages_doc` rewrites it.
#![cfg(not(target_arch = "wasm32"))]

use quota_widget::core::Msg;

fn expected() -> String {
    let mut out = String::from(
        "# Messages\n\n\
         Every text the widget shows or announces, by name, with its built-in\n\
         English. Replace any of them with the `messages` option of\n\
         `new QuotaWidget(...)` or the `messages` property of `<quota-widget>`:\n\
         an object of texts by name. `{name}` placeholders are filled with\n\
         values already worded for the page's locale (numbers and dates through\n\
         `Intl`). A text may have plural variants, `one=...|other=...`; the one\n\
         for the count's category (`Intl.PluralRules`) is used, else `other`.\n\
         A name the widget does not have is an error at construction, except\n\
         `kind_<name>`: the name of a kind, shown wherever a text names it\n\
         (`kind_audio: \"audio clip\"`); `kind_image` and `kind_video` are\n\
         built in, and a kind without a name shows as the server names it.\n\n\
         A language table is an array with one text per message, in the order\n\
         below: `quota-widget/locales/zh-CN` (Simplified Chinese) is one, and\n\
         `messages: [table, { name: \"text\" }]` rewords some of its texts.\n\n\
         | name | English |\n| --- | --- |\n",
    );
    for m in Msg::ALL {
        out.push_str(&format!("| `{}` | {} |\n", m.key(), m.en().replace('|', "\\|")));
    }
    out
}

#[test]
fn docs_messages_md_lists_every_message_as_the_core_has_it() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/messages.md");
    let want = expected();
    if std::env::var_os("QW_WRITE_DOCS").is_some() {
        std::fs::write(path, &want).expect("write docs/messages.md");
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "docs/messages.md differs from the message table in src/core/text.rs; rewrite it with QW_WRITE_DOCS=1 cargo test --test messages_doc"
    );
}
