// The attributes and events of <quota-widget>, without any framework: the
// React (./react.d.ts) and Vue (./vue.d.ts) typings are built from these.
import type { QuotaWidgetElementEventMap } from "./element.js";

/** A number, written as a number or as the text of one. */
export type NumericAttribute = number | `${number}`;

/** The element's attributes, as the element reads them (see defineQuotaWidget). */
export interface QuotaWidgetAttributes {
  /**
   * The dashboard's submit button, which the widget gates: a CSS selector, or
   * the element itself (React 19 sets it as a property). A selector that
   * matches nothing yet is gated when its element appears.
   */
  button: string | HTMLElement;
  /** The form whose submit takes a hold (a selector or the element); by default the button's form. */
  form?: string | HTMLFormElement;
  /** CSS selector of where the blocking reason is written (next to the button, say); inside the widget by default. */
  reason?: string;
  /** The pool of the request being prepared: "image" by default. */
  kind?: string;
  /** Items in the request being prepared: 1 by default. */
  count?: NumericAttribute;
  /** Base URL of the quota API ("/api"); without it, push states yourself. */
  endpoint?: string;
  /** BCP 47 locale of numbers and dates; the page's by default. */
  locale?: string;
  /** Packages expiring within this many days are highlighted: 7 by default. */
  "expiring-soon-days"?: NumericAttribute;
  /** A state older than this, in milliseconds, blocks submit (fail closed): 30000 by default. */
  "stale-after-ms"?: NumericAttribute;
  /**
   * The signed-in account's id, not a secret; tabs share a connection only
   * with tabs of the same endpoint and account. None by default.
   */
  account?: string;
  /** "off" gives this tab a connection of its own. Shared by default. */
  tabs?: "on" | "off";
  /**
   * Present: a request whose slots are all busy waits in the server's queue
   * instead of being blocked (the button says "Queue · starts when a slot
   * frees, 2 ahead"), and queued requests are listed with a Cancel button,
   * which dispatches quota-cancel. Absent, "off" or "false": off.
   */
  queue?: boolean | "" | "on" | "off";
}

/** Names of the DOM events that the element dispatches. */
export type QuotaWidgetEventName = Exclude<keyof QuotaWidgetElementEventMap, keyof HTMLElementEventMap>;

/** The element's own events by name: quota-ready, quota-change, quota-error, quota-hold, quota-announce, quota-cancel. */
export type QuotaWidgetEvents = { [K in QuotaWidgetEventName]: QuotaWidgetElementEventMap[K] };
