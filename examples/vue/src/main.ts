import { createApp } from "vue";
// Registers <quota-widget> once; the element loads its wasm when first connected.
import "quota-widget/define";
import "quota-widget/quota-widget.css";
// Types <quota-widget> in templates (vue-tsc): its attributes and its events.
import type {} from "quota-widget/vue";
import "./app.css";
import App from "./App.vue";

createApp(App).mount("#app");
