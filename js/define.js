// Opt-in side effect entry: `import "quota-widget/define"` registers
// <quota-widget>. Use the main entry's defineQuotaWidget() for another tag
// name or to control when it happens.
import { defineQuotaWidget } from "./element.js";

defineQuotaWidget();
