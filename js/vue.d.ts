// <quota-widget> in Vue templates, attributes and events typed (vue-tsc,
// Vue's editor tooling). Add once to a TypeScript project, in any file that
// the compiler sees:
//
//   import type {} from "quota-widget/vue";
//
// Vue must also know the tag is not a Vue component: in vite.config, set
// vue({ template: { compilerOptions: { isCustomElement: (tag) => tag === "quota-widget" } } }).
import type { EmitFn, HTMLAttributes, PublicProps } from "vue";
import type { QuotaWidgetElement } from "./element.js";
import type { QuotaWidgetAttributes, QuotaWidgetEvents } from "./attributes.js";

export type { QuotaWidgetAttributes, QuotaWidgetEvents, QuotaWidgetEventName, NumericAttribute } from "./attributes.js";

type Camelize<S extends string> = S extends `${infer Head}-${infer Tail}` ? `${Head}${Capitalize<Camelize<Tail>>}` : S;

/**
 * The attributes as Vue's type checker looks them up: camel-cased, as it
 * does with every component prop. Write them hyphenated in templates
 * (stale-after-ms="5000"): Vue sets a custom element's attribute under the
 * name written, and HTML attribute names have no capitals.
 */
export type QuotaWidgetVueProps = {
  [K in keyof QuotaWidgetAttributes as Camelize<K>]: QuotaWidgetAttributes[K];
};

/**
 * The element as Vue's type checker reads a component: its props from
 * `$props`, its events from `$emit` (the shape Vue's guide gives for custom
 * elements not built with Vue). Neither exists on the element at run time.
 */
export type QuotaWidgetComponent = new () => QuotaWidgetElement & {
  /** @deprecated For template type checking only; not on the element. */
  $props: HTMLAttributes & QuotaWidgetVueProps & PublicProps;
  /** @deprecated For template type checking only; not on the element. */
  $emit: EmitFn<{ [K in keyof QuotaWidgetEvents]: (event: QuotaWidgetEvents[K]) => void }>;
};

declare module "vue" {
  interface GlobalComponents {
    "quota-widget": QuotaWidgetComponent;
  }
}
