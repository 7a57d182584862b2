// <quota-widget>: a thin custom element over the Rust QuotaWidget.
//
// Nothing here runs at import time that needs a browser: the class is created
// inside defineQuotaWidget(), so `import "quota-widget"` works under SSR.
import init, { QuotaWidget } from "./quota_widget.js";

// One wasm instantiation shared by every element on the page. A failed load is
// forgotten so that a later element can try again.
let ready;
function initOnce() {
  if (!ready) {
    ready = init().catch((error) => {
      ready = undefined;
      throw error;
    });
  }
  return ready;
}

// Attributes that only change the request: applied with setRequest().
const REQUEST_ATTRIBUTES = new Set(["kind", "count"]);
// Any other observed attribute re-creates the widget.
const OBSERVED = ["button", "form", "kind", "count", "endpoint", "locale", "expiring-soon-days", "stale-after-ms"];

const DEFAULT_KIND = "image";
const DEFAULT_COUNT = 1;

function messageOf(error) {
  if (error instanceof Error) return error.message;
  return String(error);
}

/** An attribute as a number; undefined when absent; an Error when not a non-negative integer. */
function integerAttribute(element, name) {
  const raw = element.getAttribute(name);
  if (raw === null || raw.trim() === "") return undefined;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Error(`<${element.localName}> attribute ${name}="${raw}" must be a non-negative integer`);
  }
  return value;
}

/**
 * Defines the custom element (once) and returns its class.
 * @param {string} [tagName]
 */
export function defineQuotaWidget(tagName = "quota-widget") {
  if (typeof customElements === "undefined") {
    throw new Error("defineQuotaWidget() needs a browser: call it on the client, not during server-side rendering");
  }
  const existing = customElements.get(tagName);
  if (existing) return existing;

  class QuotaWidgetElement extends HTMLElement {
    static get observedAttributes() {
      return OBSERVED;
    }

    #widget = null;
    // Changes on every connect and disconnect, so that a connect whose wasm
    // load finishes after the element has left the page does nothing.
    #generation = 0;
    // Whether the element's text is an error message that we wrote.
    #showsError = false;

    /** The Rust QuotaWidget, or null before it is ready or after disconnect. */
    get widget() {
      return this.#widget;
    }

    connectedCallback() {
      this.#connect();
    }

    disconnectedCallback() {
      this.#generation += 1;
      this.#teardown();
    }

    attributeChangedCallback(name, oldValue, newValue) {
      if (oldValue === newValue || !this.#widget) return;
      if (REQUEST_ATTRIBUTES.has(name)) {
        try {
          const { kind, count } = this.#request();
          this.#widget.setRequest(kind, count);
        } catch (error) {
          this.#dispatchError(messageOf(error));
        }
      } else {
        this.#teardown();
        this.#connect();
      }
    }

    #request() {
      return {
        kind: this.getAttribute("kind") || DEFAULT_KIND,
        count: integerAttribute(this, "count") ?? DEFAULT_COUNT,
      };
    }

    #options() {
      const button = this.getAttribute("button");
      if (!button) {
        throw new Error(`<${this.localName}> needs a button attribute: a CSS selector of the submit button`);
      }
      const options = { host: this, button, ...this.#request() };
      const optional = {
        form: this.getAttribute("form") || undefined,
        endpoint: this.getAttribute("endpoint") || undefined,
        locale: this.getAttribute("locale") || undefined,
        expiringSoonDays: integerAttribute(this, "expiring-soon-days"),
        staleAfterMs: integerAttribute(this, "stale-after-ms"),
      };
      for (const [key, value] of Object.entries(optional)) {
        if (value !== undefined) options[key] = value;
      }
      return options;
    }

    async #connect() {
      const generation = ++this.#generation;
      try {
        await initOnce();
      } catch (error) {
        if (generation === this.#generation) this.#fail(`quota-widget: could not load its WebAssembly: ${messageOf(error)}`);
        return;
      }
      if (generation !== this.#generation || !this.isConnected || this.#widget) return;

      if (this.#showsError) {
        this.textContent = "";
        this.#showsError = false;
      }
      let widget;
      try {
        widget = new QuotaWidget(this.#options());
      } catch (error) {
        this.#fail(messageOf(error));
        return;
      }
      this.#widget = widget;
      widget.subscribe((event) => {
        this.dispatchEvent(new CustomEvent(`quota-${event.type}`, { detail: event, bubbles: true, composed: true }));
      });
      // Tells scripts that el.widget is there (for pushState, view(), ...).
      this.dispatchEvent(new CustomEvent("quota-ready", { detail: { widget }, bubbles: true, composed: true }));
    }

    #teardown() {
      const widget = this.#widget;
      if (!widget) return;
      this.#widget = null;
      try {
        widget.destroy();
      } finally {
        widget.free();
      }
    }

    #fail(message) {
      // textContent, never innerHTML: the message can quote a selector.
      this.textContent = message;
      this.#showsError = true;
      this.#dispatchError(message);
    }

    #dispatchError(message) {
      this.dispatchEvent(
        new CustomEvent("quota-error", { detail: { type: "error", message }, bubbles: true, composed: true }),
      );
    }
  }

  customElements.define(tagName, QuotaWidgetElement);
  return QuotaWidgetElement;
}
