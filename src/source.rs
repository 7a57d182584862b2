//! The core's state reader over JavaScript values: the browser's parsed
//! JSON (a state, a tab message, the options object) as a
//! [`Source`](crate::core::parse::Source), each member read in one call
//! across the boundary (`js/read.js`), and the browser's `JSON.parse`.

use wasm_bindgen::prelude::*;

use crate::core::parse::Source;

/// The browser's parsed JSON, read by the core's state reader.
impl Source for JsValue {
    fn get(&self, key: &'static str) -> Option<JsValue> {
        // The reader asks objects only; Reflect.get throws on anything else.
        with_js_key(key, |k| js_sys::Reflect::get(self, k).ok())
    }
    fn is_object(&self) -> bool {
        JsValue::is_object(self) && !js_sys::Array::is_array(self)
    }
    fn is_null(&self) -> bool {
        self.is_null_or_undefined()
    }
    fn number(&self) -> Option<f64> {
        self.as_f64()
    }
    fn string(&self) -> Option<String> {
        self.as_string()
    }
    fn boolean(&self) -> Option<bool> {
        self.as_bool()
    }
    fn items(&self) -> Option<Vec<JsValue>> {
        js_sys::Array::is_array(self).then(|| js_sys::Array::from(self).iter().collect())
    }
    fn number_at(&self, key: &'static str) -> Option<f64> {
        // NaN: absent or not a number (a NaN the page put there included,
        // which no JSON text carries).
        Some(with_js_key(key, |k| read_num(self, k))).filter(|n| !n.is_nan())
    }
    fn string_at(&self, key: &'static str) -> Option<String> {
        with_js_key(key, |k| read_str(self, k))
    }
}

#[wasm_bindgen]
extern "C" {
    /// `JSON.parse` of a JavaScript string, which then never has to be
    /// copied into wasm and back.
    #[wasm_bindgen(js_namespace = JSON, js_name = parse, catch)]
    pub(crate) fn json_parse(text: &JsValue) -> Result<JsValue, JsValue>;
}

#[wasm_bindgen(module = "/js/read.js")]
extern "C" {
    #[wasm_bindgen(js_name = num)]
    fn read_num(o: &JsValue, key: &JsValue) -> f64;
    #[wasm_bindgen(js_name = str)]
    fn read_str(o: &JsValue, key: &JsValue) -> Option<String>;
}

/// Field names as JavaScript strings, made once each: a busy state reads
/// about 360 fields, and making each key anew cost a call and a string
/// copy across the boundary every time. Keyed by the literal's address and
/// length in a small open-addressed table (the reader's keys are a few dozen).
fn with_js_key<R>(key: &'static str, f: impl FnOnce(&JsValue) -> R) -> R {
    const SLOTS: usize = 128;
    thread_local! {
        static KEYS: std::cell::RefCell<Vec<((usize, usize), JsValue)>> =
            std::cell::RefCell::new((0..SLOTS).map(|_| ((0, 0), JsValue::UNDEFINED)).collect());
    }
    let id = (key.as_ptr() as usize, key.len());
    let addr = id.0;
    KEYS.with(|keys| {
        let mut keys = keys.borrow_mut();
        let start = addr.wrapping_mul(0x9E37_79B1) >> 7;
        for i in start..start + SLOTS {
            let slot = &mut keys[i % SLOTS];
            if slot.0 == (0, 0) {
                *slot = (id, JsValue::from_str(key));
            }
            if slot.0 == id {
                return f(&slot.1);
            }
        }
        f(&JsValue::from_str(key))
    })
}
