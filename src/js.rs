//! What the widget hands to JavaScript: every value goes through
//! serde-wasm-bindgen, the one serializer on this side of the boundary
//! (events, view models, tab messages, results).

use serde::Serialize;
use wasm_bindgen::JsValue;

/// A Rust value as a plain JavaScript value: `None` as `null`, as the
/// TypeScript declarations say.
pub fn to_js<T: Serialize>(value: &T) -> JsValue {
    // Serializing plain structs of strings, numbers and lists cannot fail.
    value.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).unwrap_or(JsValue::NULL)
}
