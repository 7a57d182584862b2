import type { QuotaWidget, WidgetEvent } from "./quota_widget.js";

type EventOf<T extends WidgetEvent["type"]> = Extract<WidgetEvent, { type: T }>;

/** The `<quota-widget>` element: attributes in, DOM events out. */
export interface QuotaWidgetElement extends HTMLElement {
  /** The Rust widget, or null before it is ready (see `quota-ready`) or after disconnect. */
  readonly widget: QuotaWidget | null;
}

export interface QuotaWidgetElementEventMap extends HTMLElementEventMap {
  "quota-ready": CustomEvent<{ widget: QuotaWidget }>;
  "quota-change": CustomEvent<EventOf<"change">>;
  "quota-error": CustomEvent<EventOf<"error">>;
  "quota-hold": CustomEvent<EventOf<"hold">>;
  "quota-announce": CustomEvent<EventOf<"announce">>;
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
 * Attributes: button (required CSS selector), form, kind ("image"), count (1),
 * endpoint, locale, expiring-soon-days, stale-after-ms.
 */
export function defineQuotaWidget(tagName?: string): { new (): QuotaWidgetElement; prototype: QuotaWidgetElement };

declare global {
  interface HTMLElementTagNameMap {
    "quota-widget": QuotaWidgetElement;
  }
}
