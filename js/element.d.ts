import type { WidgetEvent } from "./quota_widget.js";
import type { QuotaWidget } from "./widget.js";

type EventOf<T extends WidgetEvent["type"]> = Extract<WidgetEvent, { type: T }>;

/** The `<quota-widget>` element: attributes in, DOM events out. */
export interface QuotaWidgetElement extends HTMLElement {
  /** The Rust widget, or null before it is ready (see `quota-ready`) or after disconnect. */
  readonly widget: QuotaWidget | null;
  /**
   * The button to gate: an element, or a CSS selector (default: the `button`
   * attribute). A selector that matches nothing yet is gated when its element
   * appears, and again when a re-render replaces it.
   */
  button: HTMLElement | string | null;
  /** The form whose submit takes a hold: an element or a CSS selector. Default: the button's form. */
  form: HTMLFormElement | string | null;
  /**
   * Texts by message name (every name: the package's messages.md), replacing the built-in
   * English ones, with their `{placeholders}`; read when the element connects.
   */
  messages?: Record<string, string>;
}

export interface QuotaWidgetElementEventMap extends HTMLElementEventMap {
  "quota-ready": CustomEvent<{ widget: QuotaWidget }>;
  "quota-change": CustomEvent<EventOf<"change">>;
  "quota-error": CustomEvent<EventOf<"error">>;
  "quota-hold": CustomEvent<EventOf<"hold">>;
  "quota-announce": CustomEvent<EventOf<"announce">>;
  /** A queued request's Cancel button was pressed: send DELETE /api/generations/{taskId}. */
  "quota-cancel": CustomEvent<EventOf<"cancel">>;
}

export interface QuotaWidgetElement {
  addEventListener<K extends keyof QuotaWidgetElementEventMap>(
    type: K,
    listener: (this: QuotaWidgetElement, event: QuotaWidgetElementEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof QuotaWidgetElementEventMap>(
    type: K,
    listener: (this: QuotaWidgetElement, event: QuotaWidgetElementEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | EventListenerOptions): void;
}

/**
 * Defines the custom element under `tagName` (default "quota-widget") and
 * returns its class; returns the existing class when the name is taken.
 * Attributes: button (a CSS selector of the button to gate), form (default:
 * the button's form), reason (a CSS selector of where the blocking reason is
 * written; default: inside the widget), kind ("image"), count (1), endpoint
 * (the quota API's base URL, e.g. "/api"; the page must be signed in),
 * locale (the browser's), expiring-soon-days (7), stale-after-ms (30000).
 */
export function defineQuotaWidget(tagName?: string): { new (): QuotaWidgetElement; prototype: QuotaWidgetElement };

declare global {
  interface HTMLElementTagNameMap {
    "quota-widget": QuotaWidgetElement;
  }
}
