import { QuotaWidget as RustWidget } from "./quota_widget.js";
import type { Settlement, HeldRequest, WidgetListener } from "./quota_widget.js";

/** What `submit()` resolves to: the outcome, and what the server sent. */
export interface SubmitResult extends Settlement {
  /** The client request id that was sent. */
  requestId: string;
  /** The HTTP status; absent when no answer came. */
  status?: number;
  /** The error code of the server's JSON body (`{"code": 1303, ...}`). */
  code?: number;
  /** The server's own message, for the dashboard; `message` is for people. */
  serverMessage?: string;
  /** The parsed JSON body, when the answer had one. */
  body?: unknown;
  /** The Response the request function returned, its body already read. */
  response?: Response;
  /** What the request function threw, when it threw. */
  error?: unknown;
}

export interface SubmitOptions {
  /** How long to wait for the request's answer. Default: the widget's `holdTimeoutMs` (20000). */
  timeoutMs?: number;
}

/** The quota display and submit gate. */
export declare class QuotaWidget extends RustWidget {
  /**
   * Calls `listener` with every widget event. Returns a function that
   * unsubscribes it; calling that again, or after `destroy()`, does nothing.
   */
  subscribe(listener: WidgetListener): () => void;
  /**
   * Begins a submit without `submit()`: takes the hold (or claims the one
   * the gate just took for a form's submit) and returns its client request
   * id, to send with the request. End it with `submitRefused` or
   * `submitFailed`, or let the server's state confirm it. Throws, with the
   * reason, when submit is blocked.
   */
  beginSubmit(): string;
  /**
   * Runs a whole submit. Takes the hold for the request the widget gates, or
   * rejects with the reason submit is blocked; calls `send` with that request
   * (send its `requestId`, `kind` and `count`: the held request is the one
   * sent); then ends the hold from the answer: a 2xx waits for the server's
   * state to show the task; a refusal (4xx with the API's JSON error), a
   * 401 (signed out), a network error, a timeout, a 5xx or a body that is
   * not JSON end it, not charged, with a reason in words (`message`). A
   * `Retry-After` keeps submit blocked, with the reason, until it passes.
   */
  submit(send: (request: HeldRequest) => Promise<Response>, options?: SubmitOptions): Promise<SubmitResult>;
}
