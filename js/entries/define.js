// `quota-widget/define`: registers <quota-widget> on import (an opt-in side
// effect). Use the main entry's defineQuotaWidget() for another tag name or
// to control when it happens. Re-exports from the main entry's one module.
import { defineQuotaWidget } from "./index.js";

defineQuotaWidget();
