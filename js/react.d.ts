// <quota-widget> in React 19's JSX, attributes and events typed. Add once to
// a TypeScript project, in any file that the compiler sees:
//
//   import type {} from "quota-widget/react";
//
// React 19 passes unknown props of a custom element on as attributes, and an
// `on<event-name>` function prop as a listener of that event: `onquota-change`
// listens to quota-change.
import type { DetailedHTMLProps, HTMLAttributes } from "react";
import type { QuotaWidgetElement } from "./element.js";
import type { QuotaWidgetAttributes, QuotaWidgetEvents } from "./attributes.js";

export type { QuotaWidgetAttributes, QuotaWidgetEvents, QuotaWidgetEventName, NumericAttribute } from "./attributes.js";

/** `onquota-change` and the others: listeners of the element's events. */
export type QuotaWidgetEventProps = {
  [K in keyof QuotaWidgetEvents as `on${K}`]?: (event: QuotaWidgetEvents[K]) => void;
};

/** Props of <quota-widget> in JSX. It renders its own content: no children. */
export type QuotaWidgetProps = Omit<
  DetailedHTMLProps<HTMLAttributes<QuotaWidgetElement>, QuotaWidgetElement>,
  "children" | "dangerouslySetInnerHTML"
> &
  QuotaWidgetAttributes &
  QuotaWidgetEventProps & { children?: never };

declare module "react" {
  namespace JSX {
    interface IntrinsicElements {
      "quota-widget": QuotaWidgetProps;
    }
  }
}
