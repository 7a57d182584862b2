// `quota-widget/element`: the custom element's entry. Everything lives in
// the main entry's one module (scripts/build-pkg bundles js/index.js with
// js/element.js and the glue); this re-exports from it, so that a page
// that imports both entries loads one copy.
export { QuotaWidget, defineQuotaWidget } from "./index.js";
