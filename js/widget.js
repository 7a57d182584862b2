// QuotaWidget: the Rust widget, plus the two calls that need JavaScript's
// own machinery (promises, fetch responses, closures): `submit` and
// `subscribe`. What an answer means (statuses, codes, Retry-After, the words
// for people) is decided by the Rust core through settleSubmit().
import { QuotaWidget as RustWidget } from "./quota_widget.js";

const TIMEOUT = Symbol("timeout");

export class QuotaWidget extends RustWidget {
  /**
   * Calls `listener` with every widget event; returns a function that
   * stops it (calling it again, or after destroy(), does nothing).
   */
  subscribe(listener) {
    const id = this.subscribeId(listener);
    return () => {
      try {
        this.unsubscribe(id);
      } catch {
        // Freed meanwhile: nothing is left to unsubscribe from.
      }
    };
  }

  /**
   * Begins a submit without submit(): takes the hold (or claims the one the
   * gate just took for a form's submit) and returns its client request id,
   * to send with the request; end it with submitRefused/submitFailed, or
   * let the server's state confirm it. Throws, with the reason, when blocked.
   */
  beginSubmit() {
    return this.beginHold().requestId;
  }

  /**
   * Runs one submit: takes the hold for the request the widget gates (or
   * rejects with the reason it is blocked), calls `send` with that request,
   * and ends the hold from what `send`'s Response says.
   */
  async submit(send, { timeoutMs } = {}) {
    // Throws, with the blocking reason, before anything is sent.
    const request = this.beginHold();
    const id = request.requestId;
    // With tabs sharing a connection, a follower's request leaves only on
    // the leading tab's grant; a refusal (the last slot went to another
    // tab) ends here, with the reason, and nothing is sent.
    // Without tabs sharing (the `tabs: false` option, or a browser without
    // Web Locks or BroadcastChannel) the answer is null at once.
    const refused = await new Promise((done) => this.awaitGrant(id, done));
    if (refused !== null) return { requestId: id, outcome: "refused", message: refused };
    const wait = timeoutMs ?? this.holdTimeoutMs;
    let timer;
    let response;
    try {
      response = await Promise.race([
        Promise.resolve().then(() => send(request)),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(TIMEOUT), wait);
        }),
      ]);
      if (!(response instanceof Response)) {
        throw new TypeError("quota-widget: submit's request function must resolve to a fetch Response");
      }
    } catch (error) {
      const outcome = this.#settle(id, 0, error === TIMEOUT ? wait : undefined);
      return error === TIMEOUT ? outcome : { ...outcome, error };
    } finally {
      clearTimeout(timer);
    }
    let body;
    let json = false;
    try {
      body = JSON.parse(await response.text());
      json = true;
    } catch {
      // An HTML error page from a proxy, an empty body: not the contract's JSON.
    }
    const object = json && body !== null && typeof body === "object";
    const code = object && Number.isSafeInteger(body.code) && body.code >= 0 ? body.code : undefined;
    const message = object && typeof body.message === "string" ? body.message : undefined;
    const outcome = this.#settle(id, response.status, undefined, response.headers.get("Retry-After"), json, code);
    return { ...outcome, status: response.status, code, serverMessage: message, body, response };
  }

  #settle(id, ...reply) {
    let settled;
    try {
      settled = this.settleSubmit(id, ...reply);
    } catch (error) {
      // Destroyed while the request was out: no hold is left to end.
      settled = { outcome: "failed", message: error instanceof Error ? error.message : String(error) };
    }
    return { requestId: id, ...settled };
  }
}
