// Types of the main entry: the wasm-bindgen API (generated from the Rust
// types), the widget class with submit() and subscribe(), and the custom
// element helper.
export * from "./quota_widget.js";
export { default, default as init } from "./quota_widget.js";
export { QuotaWidget, SubmitResult, SubmitOptions } from "./widget.js";
export { defineQuotaWidget, QuotaWidgetElement } from "./element.js";
