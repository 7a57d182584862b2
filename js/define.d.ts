// Side effect only: registers <quota-widget>. Its types come with it, so
// that document.querySelector("quota-widget") is a QuotaWidgetElement.
import type {} from "./element.js";
export {};
