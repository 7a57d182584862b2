//! How the core turns numbers, times and messages into words. The browser
//! shell implements [`Fmt`] with `Intl`; tests and the host use [`PlainFmt`].

use std::cell::RefCell;

use super::text::Msg;
use super::wire::{Millis, Units};

pub trait Fmt {
    /// A count of slots or items, grouped for the locale ("12,500").
    fn number(&self, n: u64) -> String;
    /// An amount of units, with its decimals ("12,500", "0.25").
    fn units(&self, u: Units) -> String;
    /// A calendar date ("Dec 3, 2026").
    fn date(&self, at: Millis) -> String;
    /// A time of day ("14:03").
    fn time(&self, at: Millis) -> String;
    /// The CLDR plural category of `n` ("one", "other", ...).
    fn plural(&self, n: f64) -> &'static str {
        if n == 1.0 {
            "one"
        } else {
            "other"
        }
    }
    /// The template of message `m` (see [`super::text`]): English unless
    /// the page gave its own.
    fn template(&self, m: Msg) -> &str {
        m.en()
    }
    /// The page's name for a kind that the message table does not name
    /// (its `kind_<name>` entries); see [`super::words::kind_name`].
    fn kind(&self, _kind: &str) -> Option<&str> {
        None
    }
}

impl<T: Fmt + ?Sized> Fmt for &T {
    fn number(&self, n: u64) -> String {
        (**self).number(n)
    }

    fn units(&self, u: Units) -> String {
        (**self).units(u)
    }

    fn date(&self, at: Millis) -> String {
        (**self).date(at)
    }

    fn time(&self, at: Millis) -> String {
        (**self).time(at)
    }

    fn plural(&self, n: f64) -> &'static str {
        (**self).plural(n)
    }

    fn template(&self, m: Msg) -> &str {
        (**self).template(m)
    }

    fn kind(&self, kind: &str) -> Option<&str> {
        (**self).kind(kind)
    }
}

/// Remembers what `F` made of the most recent numbers and dates, so that a
/// view that shows the same figure again (a package's total, a limit, an
/// expiry date) does not ask the formatter twice. In the browser every
/// question crosses into JavaScript's `Intl`, which costs more than the
/// rest of a row. Answers are the formatter's own, so a `Memo` formats
/// exactly as `F` does.
pub struct Memo<F> {
    inner: F,
    recent: RefCell<Recent>,
}

/// What was formatted: a count, units (in thousandths) or a date.
#[derive(Clone, Copy, PartialEq)]
enum Asked {
    Number(u64),
    Units(u64),
    Date(Millis),
}

/// The last `N` answers, oldest replaced first. One list for the three
/// kinds of question, with the formatter passed as a `&dyn`: one copy of
/// this code in the wasm, not one per kind.
#[derive(Default)]
struct Recent {
    entries: Vec<(Asked, String)>,
    next: usize,
}

impl Recent {
    const N: usize = 96;

    fn get_or(&mut self, key: Asked, make: &dyn Fn() -> String) -> String {
        if let Some((_, s)) = self.entries.iter().find(|(k, _)| *k == key) {
            return s.clone();
        }
        let s = make();
        if self.entries.len() < Self::N {
            self.entries.push((key, s.clone()));
        } else {
            self.entries[self.next] = (key, s.clone());
            self.next = (self.next + 1) % Self::N;
        }
        s
    }
}

impl<F> Memo<F> {
    pub fn new(inner: F) -> Self {
        Memo { inner, recent: RefCell::new(Recent::default()) }
    }
}

impl<F: Fmt> Fmt for Memo<F> {
    fn number(&self, n: u64) -> String {
        self.recent.borrow_mut().get_or(Asked::Number(n), &|| self.inner.number(n))
    }

    fn units(&self, u: Units) -> String {
        self.recent.borrow_mut().get_or(Asked::Units(u.milli()), &|| self.inner.units(u))
    }

    fn date(&self, at: Millis) -> String {
        self.recent.borrow_mut().get_or(Asked::Date(at), &|| self.inner.date(at))
    }

    fn time(&self, at: Millis) -> String {
        self.inner.time(at)
    }

    fn plural(&self, n: f64) -> &'static str {
        self.inner.plural(n)
    }

    fn template(&self, m: Msg) -> &str {
        self.inner.template(m)
    }

    fn kind(&self, kind: &str) -> Option<&str> {
        self.inner.kind(kind)
    }
}

/// A page's own texts: messages it words its way (a language table, its
/// own wording) and the names it gives kinds (`kind_<name>` entries that
/// the built-in table does not have). Later entries win.
#[derive(Default)]
pub struct Table {
    texts: Vec<(Msg, String)>,
    kinds: Vec<(String, String)>,
}

impl Table {
    /// The text named `key`: a message's name, or `kind_` and a kind.
    /// Any other name is an error that says so.
    pub fn add(&mut self, key: &str, text: String) -> Result<(), String> {
        if let Some(m) = Msg::by_key(key) {
            self.texts.push((m, text));
            return Ok(());
        }
        match key.strip_prefix("kind_") {
            Some(kind) if !kind.is_empty() => {
                self.kinds.push((kind.to_owned(), text));
                Ok(())
            }
            _ => Err(format!("no message is named \"{key}\"")),
        }
    }

    /// A whole language table: one text per message, in table order.
    pub fn add_all(&mut self, texts: Vec<String>) {
        for (m, t) in Msg::ALL.iter().zip(texts) {
            self.texts.push((*m, t));
        }
    }

    pub fn template(&self, m: Msg) -> Option<&str> {
        self.texts.iter().rev().find(|(k, _)| *k == m).map(|(_, t)| &**t)
    }

    pub fn kind(&self, kind: &str) -> Option<&str> {
        self.kinds.iter().rev().find(|(k, _)| k == kind).map(|(_, t)| &**t)
    }
}

/// Digits grouped by commas, dates as ISO `YYYY-MM-DD` (UTC).
pub struct PlainFmt;

impl Fmt for PlainFmt {
    fn units(&self, u: Units) -> String {
        let mut s = self.number(u.split().0);
        let decimals = u.decimals();
        if !decimals.is_empty() {
            s.push('.');
            s.push_str(&decimals);
        }
        s
    }

    fn number(&self, n: u64) -> String {
        let digits = n.to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    }

    fn date(&self, at: Millis) -> String {
        let (y, m, d) = civil_from_days(at.div_euclid(86_400_000));
        format!("{y:04}-{m:02}-{d:02}")
    }

    fn time(&self, at: Millis) -> String {
        let minutes = at.rem_euclid(86_400_000) / 60_000;
        format!("{:02}:{:02}", minutes / 60, minutes % 60)
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm), so the host needs no date crate.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// "image" -> "Image". ASCII only: kinds are identifiers, and full Unicode
/// case mapping would bring its tables (about 10 kB) into the wasm.
pub fn title(kind: &str) -> String {
    let mut s = kind.to_owned();
    if let Some(first) = s.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_digits() {
        assert_eq!(PlainFmt.number(0), "0");
        assert_eq!(PlainFmt.number(999), "999");
        assert_eq!(PlainFmt.number(1000), "1,000");
        assert_eq!(PlainFmt.number(1234567), "1,234,567");
    }

    #[test]
    fn units_keep_their_decimals() {
        assert_eq!(PlainFmt.units(Units::whole(12_500)), "12,500");
        assert_eq!(PlainFmt.units(Units::from_milli(250)), "0.25");
        assert_eq!(PlainFmt.units(Units::from_milli(1_234_500)), "1,234.5");
        assert_eq!(PlainFmt.units(Units::from_milli(7)), "0.007");
    }

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(PlainFmt.date(0), "1970-01-01");
        assert_eq!(PlainFmt.date(1_795_478_400_000), "2026-11-24");
        assert_eq!(PlainFmt.date(951_782_400_000), "2000-02-29");
    }

    #[test]
    fn titles_capitalize_ascii_kinds() {
        assert_eq!(title("image"), "Image");
        assert_eq!(title(""), "");
        assert_eq!(title("élan"), "élan");
    }

    /// Counts the questions it is asked.
    struct Counting(std::cell::Cell<u32>);

    impl Fmt for Counting {
        fn number(&self, n: u64) -> String {
            self.0.set(self.0.get() + 1);
            PlainFmt.number(n)
        }
        fn units(&self, u: Units) -> String {
            self.0.set(self.0.get() + 1);
            PlainFmt.units(u)
        }
        fn date(&self, at: Millis) -> String {
            self.0.set(self.0.get() + 1);
            PlainFmt.date(at)
        }
        fn time(&self, at: Millis) -> String {
            PlainFmt.time(at)
        }
    }

    #[test]
    fn memo_answers_as_its_formatter_and_asks_once_per_recent_value() {
        let memo = Memo::new(Counting(std::cell::Cell::new(0)));
        assert_eq!(memo.number(12_500), "12,500");
        assert_eq!(memo.number(12_500), "12,500");
        assert_eq!(memo.date(0), "1970-01-01");
        assert_eq!(memo.date(0), "1970-01-01");
        assert_eq!(memo.inner.0.get(), 2);
        // Past its capacity the oldest answers go, and are asked again.
        for n in 0..100 {
            assert_eq!(memo.number(n), PlainFmt.number(n));
        }
        assert_eq!(memo.number(12_500), "12,500");
        assert_eq!(memo.inner.0.get(), 2 + 100 + 1);
    }
}
