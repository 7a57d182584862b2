//! What the tabs shell and the widget say to each other: `src/tabs.rs`
//! produces these and `src/api.rs` takes them to the session.

use js_sys::Function;
use wasm_bindgen::JsValue;

/// What carrying out a command left to do outside the widget's borrow.
pub enum Carried {
    Done,
    /// Call this waiting submit with its word: `null` to send, or why not.
    Answer(Function, JsValue),
    /// This tab stepped back from leading: its connection closes.
    Yielded,
}

/// What happened among the tabs, for the widget.
pub enum TabEvent {
    /// A message from another tab, as the channel carried it.
    Message(JsValue),
    /// This tab took the leadership lock.
    Lead,
    /// The page was shown or hidden: whether it is visible now.
    Visible(bool),
    /// The page goes away, or into the back/forward cache.
    Hide,
    /// The page was shown (`pageshow`): first, or back from the
    /// back/forward cache.
    PageShow,
    /// The deadline the widget asked for came.
    Wake,
}
