// The package's main entry. Importing it touches no browser global, so it is
// safe under server-side rendering: the custom element class is only created
// when defineQuotaWidget() is called.
export * from "./quota_widget.js";
export { default, default as init } from "./quota_widget.js";
// The Rust widget with submit() and subscribe() (js/widget.js, shipped
// inside element.js); it takes the place of the generated class of the
// same name.
export { QuotaWidget, defineQuotaWidget } from "./element.js";
