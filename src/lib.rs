//! quota-widget: a quota display and submit gate for generative-AI
//! dashboards.
//!
//! - [`core`]: the quota rules as a pure state machine (no browser, no I/O).
//! - `dom`: writes a view model to the page (wasm only).
//! - `intl`: numbers and dates in the page's locale (wasm only).
//! - `sync`: turns the network into core inputs (wasm only).
//! - `tabs`: the lock and channel that let tabs share one connection (wasm
//!   only); `tab_events`: what it and the widget say to each other.
//! - `js`: what the widget hands to JavaScript (serde-wasm-bindgen);
//!   `source`: the core's reader over what JavaScript hands the widget.
//! - `api`: the wasm-bindgen surface: translates between JavaScript and the
//!   core's session, and carries out its commands through the shells.

pub mod core;

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod dom;
#[cfg(target_arch = "wasm32")]
mod intl;
#[cfg(target_arch = "wasm32")]
mod js;
#[cfg(target_arch = "wasm32")]
mod source;
#[cfg(target_arch = "wasm32")]
mod sync;
#[cfg(target_arch = "wasm32")]
mod tab_events;
#[cfg(target_arch = "wasm32")]
mod tabs;

#[cfg(target_arch = "wasm32")]
pub use api::{QuotaWidget, WidgetEvent, WidgetOptions};

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
