//! Messages in words: a message's template (from a [`Fmt`], so that a page
//! can replace it), the variant for a count, and its placeholders filled.

use super::fmt::Fmt;
use super::text::Msg;
use super::wire::Millis;

/// Why the server refused the state, from its HTTP status: 401 and 403
/// mean the session is not accepted (sign in again).
pub fn refused(f: &dyn Fmt, status: u16) -> String {
    let m = if matches!(status, 401 | 403) { Msg::ErrorSession } else { Msg::ErrorStatus };
    say(f, m, None, &[("status", &f.number(u64::from(status)))])
}

/// A kind's name in the page's language: the table's `kind_<name>` entry
/// (built in for `image` and `video`, the page's own for any other kind),
/// else the kind as the server names it.
pub fn kind_name(f: &dyn Fmt, kind: &str) -> String {
    let builtin = match kind {
        "image" => Some(Msg::KindImage),
        "video" => Some(Msg::KindVideo),
        _ => None,
    };
    match (f.kind(kind), builtin) {
        (Some(name), _) => name.to_owned(),
        (None, Some(m)) => f.template(m).to_owned(),
        (None, None) => kind.to_owned(),
    }
}

/// A kind's name at the start of a text: its first letter capitalized
/// ("Image generation slots").
pub fn kind_title(f: &dyn Fmt, kind: &str) -> String {
    super::fmt::title(&kind_name(f, kind))
}

/// `m` in words: its template from `f`, the variant for `count` (when the
/// template has variants), and the placeholders filled from `args`.
pub fn say(f: &dyn Fmt, m: Msg, count: Option<f64>, args: &[(&str, &str)]) -> String {
    // The plural category is asked only of a template with variants: in the
    // browser each question is a call into `Intl.PluralRules`.
    fill(variant(f.template(m), || count.map(|n| f.plural(n))), args)
}

/// The variant of `template` for a plural category: `one=...|other=...`.
/// Without variants, the template itself; without the category, `other`.
fn variant(template: &str, category: impl FnOnce() -> Option<&'static str>) -> &str {
    // Only a template whose first part is `word=` has variants.
    let Some((first, _)) = cut(template, b'=') else { return template };
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_lowercase()) {
        return template;
    }
    let category = category();
    let mut other = None;
    let mut rest = Some(template);
    while let Some(part) = rest {
        let (this, next) = cut(part, b'|').map_or((part, None), |(a, b)| (a, Some(b)));
        rest = next;
        let Some((cat, text)) = cut(this, b'=') else { continue };
        if Some(cat) == category {
            return text;
        }
        if cat == "other" {
            other = Some(text);
        }
    }
    other.unwrap_or(template)
}

/// `s` split around its first `byte` (an ASCII delimiter), which is not
/// kept. By bytes, with `get`: char patterns and index slicing would bring
/// their searchers and panic messages into the wasm.
fn cut(s: &str, byte: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|b| b == byte)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// `template` with each `{name}` replaced by its value in `args`. An
/// unknown name stays as written, so a mistake in a replacement text shows
/// instead of vanishing.
fn fill(template: &str, args: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some((before, after)) = cut(rest, b'{') {
        out.push_str(before);
        let found = cut(after, b'}').and_then(|(name, tail)| Some((args.iter().find(|(k, _)| *k == name)?.1, tail)));
        match found {
            Some((value, tail)) => {
                out.push_str(value);
                rest = tail;
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// How long ago, in words ("3 s ago", "5 min ago").
pub fn age(f: &dyn Fmt, ms: Millis) -> String {
    let s = ms.max(0) / 1000;
    let (m, n) = if s < 60 {
        (Msg::AgeSeconds, s)
    } else if s < 3600 {
        (Msg::AgeMinutes, s / 60)
    } else {
        (Msg::AgeHours, s / 3600)
    };
    say(f, m, Some(n as f64), &[("n", &f.number(n as u64))])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::PlainFmt;

    #[test]
    fn fills_placeholders_and_keeps_unknown_ones() {
        assert_eq!(fill("{a} of {b}", &[("a", "1"), ("b", "2")]), "1 of 2");
        assert_eq!(fill("{a} {x} {", &[("a", "1")]), "1 {x} {");
        assert_eq!(fill("no placeholders", &[]), "no placeholders");
        assert_eq!(fill("{a}{a}", &[("a", "é")]), "éé");
    }

    #[test]
    fn picks_plural_variants() {
        let t = "one={n} unit|other={n} units";
        assert_eq!(variant(t, || Some("one")), "{n} unit");
        assert_eq!(variant(t, || Some("other")), "{n} units");
        assert_eq!(variant(t, || Some("few")), "{n} units");
        assert_eq!(variant(t, || None), "{n} units");
        // Without variants the category is never asked for.
        assert_eq!(variant("剩余 {n} 点", || unreachable!()), "剩余 {n} 点");
        // An "=" inside a plain message is not a variant.
        assert_eq!(variant("a = b", || unreachable!()), "a = b");
        let f = PlainFmt;
        assert_eq!(say(&f, Msg::UnitsRemaining, Some(1.0), &[("units", "1")]), "1 unit remaining");
        assert_eq!(say(&f, Msg::UnitsRemaining, Some(1.5), &[("units", "1.5")]), "1.5 units remaining");
    }

    #[test]
    fn ages_read_short() {
        assert_eq!(age(&PlainFmt, 3_400), "3 s ago");
        assert_eq!(age(&PlainFmt, 125_000), "2 min ago");
        assert_eq!(age(&PlainFmt, 7_200_000), "2 h ago");
    }
}
