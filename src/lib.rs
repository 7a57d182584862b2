//! quota-widget: a quota display and submit gate for generative-AI
//! dashboards.
//!
//! - [`core`]: the quota rules as a pure state machine (no browser, no I/O).
//! - `dom`: writes a view model to the page (wasm only).
//! - `sync`: turns the network into core inputs (wasm only).
//! - `api`: the wasm-bindgen surface, the only file that knows JS types.

pub mod core;

