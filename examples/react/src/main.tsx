import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
// Registers <quota-widget> once; the element loads its wasm when first connected.
import "quota-widget/define";
import "quota-widget/quota-widget.css";
import "./app.css";
import { App } from "./App";

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
