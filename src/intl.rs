//! [`Fmt`] for the browser: numbers and dates in the page's locale, through
//! `Intl` (js-sys), so "12,500" reads "12 500" or "12.500" where it should.

use js_sys::{Array, Date, Function, Intl, Object, Reflect};
use wasm_bindgen::JsValue;

use crate::core::wire::{Millis, Units};
use crate::core::{Fmt, Msg, Table};

pub struct IntlFmt {
    number: Function,
    date: Function,
    time: Function,
    plurals: Intl::PluralRules,
    /// The page's texts for some messages (a language table, or its own
    /// wording) and its names of kinds; the others are English.
    texts: Table,
}

impl IntlFmt {
    /// `locale` is a BCP 47 tag; `None` uses the browser's. `texts`
    /// replace messages' templates and name kinds.
    pub fn new(locale: Option<&str>, texts: Table) -> IntlFmt {
        let locales = Array::new();
        if let Some(l) = locale {
            locales.push(&JsValue::from_str(l));
        }
        let style = |key: &str, value: &str| {
            let o = Object::new();
            let _ = Reflect::set(&o, &key.into(), &value.into());
            o
        };
        IntlFmt {
            number: Intl::NumberFormat::new(&locales, &Object::new()).format(),
            date: Intl::DateTimeFormat::new(&locales, &style("dateStyle", "medium")).format(),
            time: Intl::DateTimeFormat::new(&locales, &style("timeStyle", "short")).format(),
            plurals: Intl::PluralRules::new(&locales, &Object::new()),
            texts,
        }
    }
}

impl IntlFmt {
    fn format(&self, x: f64) -> Option<String> {
        self.number.call1(&JsValue::NULL, &JsValue::from_f64(x)).ok().and_then(|v| v.as_string())
    }
}

impl Fmt for IntlFmt {
    fn number(&self, n: u64) -> String {
        // Counts stay far below 2^53, where f64 is exact.
        self.format(n as f64).unwrap_or_else(|| n.to_string())
    }

    fn units(&self, u: Units) -> String {
        // The nearest double to the decimal; Intl's default of at most three
        // fraction digits writes that decimal back exactly ("0.25").
        self.format(u.to_number()).unwrap_or_else(|| u.to_string())
    }

    fn date(&self, at: Millis) -> String {
        call_date(&self.date, at)
    }

    fn time(&self, at: Millis) -> String {
        call_date(&self.time, at)
    }

    fn template(&self, m: Msg) -> &str {
        // The last text given for a message wins: a page's own wording over
        // a language table it lists first.
        self.texts.template(m).unwrap_or(m.en())
    }

    fn kind(&self, kind: &str) -> Option<&str> {
        self.texts.kind(kind)
    }

    fn plural(&self, n: f64) -> &'static str {
        match String::from(self.plurals.select(n)).as_str() {
            "zero" => "zero",
            "one" => "one",
            "two" => "two",
            "few" => "few",
            "many" => "many",
            _ => "other",
        }
    }
}

fn call_date(format: &Function, at: Millis) -> String {
    let d = Date::new(&JsValue::from_f64(at as f64));
    format.call1(&JsValue::NULL, &d).ok().and_then(|v| v.as_string()).unwrap_or_default()
}
