// <quota-widget>: a thin custom element over the Rust QuotaWidget.
//
// Nothing here runs at import time that needs a browser: the class is created
// inside defineQuotaWidget(), so `import "quota-widget"` works under SSR.
import init from "./quota_widget.js";
import { QuotaWidget } from "./widget.js";

// The package's main entry takes QuotaWidget from here: both modules ship as
// one file (scripts/build-pkg).
export { QuotaWidget };

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
// Attributes that only change which button is gated: applied with setButton().
const TARGET_ATTRIBUTES = new Set(["button", "form"]);
// Any other observed attribute re-creates the widget.
const OBSERVED = ["button", "form", "reason", "kind", "count", "endpoint", "locale", "expiring-soon-days", "stale-after-ms", "account", "tabs", "queue"];

const DEFAULT_KIND = "image";
const DEFAULT_COUNT = 1;

const messageOf = (error) => (error instanceof Error ? error.message : String(error));

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
    // Set as properties: an element or a selector; else the attributes.
    #button = null;
    #form = null;
    // What is gated now, and the missing target last reported.
    #gated = { button: null, form: null };
    #missing = "";
    #observer = null;

    /** Texts by message name, replacing the built-in English ones; read when the element connects. */
    messages = undefined;

    /** The Rust widget, or null before it is ready or after disconnect. */
    get widget() {
      return this.#widget;
    }

    /** The gated button: an element, or a CSS selector (else the `button` attribute). */
    get button() {
      return this.#button ?? this.getAttribute("button");
    }
    set button(value) {
      this.#button = value ?? null;
      this.#retarget();
    }

    /** The form whose submit takes a hold: an element or a CSS selector; default the button's form. */
    get form() {
      return this.#form ?? this.getAttribute("form");
    }
    set form(value) {
      this.#form = value ?? null;
      this.#retarget();
    }

    connectedCallback() {
      this.#connect();
    }

    disconnectedCallback() {
      this.#generation += 1;
      this.#teardown();
    }

    /** An element, or the element a selector matches now (null if none). */
    #find(value, what) {
      if (!value) return null;
      if (typeof value !== "string") return value;
      try {
        return document.querySelector(value);
      } catch {
        throw new Error(`<${this.localName}> ${what}="${value}" is not a valid CSS selector`);
      }
    }

    /**
     * Gates the button and form that match now. A selector that matches
     * nothing yet is watched for: a sidebar rendered before its form, a
     * button replaced by a re-render. Until it matches, the developer is told
     * (console and a quota-error event); the page shows nothing of it.
     */
    #retarget() {
      const widget = this.#widget;
      if (!widget) return;
      let button;
      let form;
      try {
        button = this.#find(this.button, "button");
        form = this.#find(this.form, "form");
      } catch (error) {
        this.#developerError(messageOf(error));
        return;
      }
      const gated = this.#gated;
      if (button !== gated.button || form !== gated.form) {
        widget.setButton(button, form);
        this.#gated = { button, form };
      }
      const what = !this.button || !button ? "button" : this.form && !form ? "form" : "";
      const missing = what && `<${this.localName}>: no element matches ${what}="${this[what] ?? ""}" yet; it is gated when it appears`;
      if (missing && missing !== this.#missing) this.#developerError(missing);
      this.#missing = missing;
      // Watch while a selector is in use: its element can appear or be replaced.
      const watch = typeof this.button === "string" || typeof this.form === "string";
      if (watch && !this.#observer) {
        // The widget's own writes (its text every second) cannot move the
        // button: only changes elsewhere on the page are worth a look.
        this.#observer = new MutationObserver((records) => {
          if (records.some((r) => !this.contains(r.target))) this.#retarget();
        });
        this.#observer.observe(document, { childList: true, subtree: true });
      } else if (!watch && this.#observer) {
        this.#observer.disconnect();
        this.#observer = null;
      }
    }

    attributeChangedCallback(name, oldValue, newValue) {
      if (oldValue === newValue || !this.#widget) return;
      if (name === "queue") {
        this.#widget.setQueue(this.#queue());
      } else if (REQUEST_ATTRIBUTES.has(name)) {
        try {
          const { kind, count } = this.#request();
          this.#widget.setRequest(kind, count);
        } catch (error) {
          this.#developerError(messageOf(error));
        }
      } else if (TARGET_ATTRIBUTES.has(name)) {
        this.#retarget();
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

    /** A boolean attribute: present, and not "false" or "off", queues. */
    #queue() {
      return this.hasAttribute("queue") && !/^(off|false)$/i.test(this.getAttribute("queue"));
    }

    /** The locale attribute, else the nearest lang: the page's language. */
    #locale() {
      return this.getAttribute("locale") || this.closest("[lang]")?.lang || undefined;
    }

    #options(table) {
      // The button and form are gated by #retarget(), once they exist.
      const options = { host: this, ...this.#request() };
      const optional = {
        reason: this.getAttribute("reason") || undefined,
        // The page's own wording wins over the language table.
        messages: table ? [table, this.messages ?? {}] : this.messages,
        endpoint: this.getAttribute("endpoint") || undefined,
        locale: this.#locale(),
        expiringSoonDays: integerAttribute(this, "expiring-soon-days"),
        staleAfterMs: integerAttribute(this, "stale-after-ms"),
        account: this.getAttribute("account") || undefined,
        tabs: /^(off|false)$/i.test(this.getAttribute("tabs") ?? "") ? false : undefined,
        queue: this.#queue() || undefined,
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
      // Chinese pages get the Chinese texts; the table is fetched only for them.
      let table;
      if (/^zh\b/i.test(this.#locale() ?? "")) {
        try {
          table = (await import("./locales/zh-CN.js")).default;
        } catch (error) {
          this.#developerError(`quota-widget: could not load its Chinese texts, showing English: ${messageOf(error)}`);
        }
      }
      if (generation !== this.#generation || !this.isConnected || this.#widget) return;

      let widget;
      try {
        widget = new QuotaWidget(this.#options(table));
      } catch (error) {
        this.#fail(messageOf(error));
        return;
      }
      this.#widget = widget;
      this.#gated = { button: null, form: null };
      this.#missing = "";
      widget.subscribe((event) => {
        this.dispatchEvent(new CustomEvent(`quota-${event.type}`, { detail: event, bubbles: true, composed: true }));
      });
      this.#retarget();
      // Tells scripts that el.widget is there (for pushState, view(), ...).
      this.dispatchEvent(new CustomEvent("quota-ready", { detail: { widget }, bubbles: true, composed: true }));
    }

    #teardown() {
      this.#observer?.disconnect();
      this.#observer = null;
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
      console.error(message);
      this.#dispatchError(message);
    }

    /** A mistake of the page's code: for its developer, never for the person using it. */
    #developerError(message) {
      console.warn(message);
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
