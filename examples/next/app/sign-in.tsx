"use client";

import { useRouter } from "next/navigation";
import { useState, type FormEvent } from "react";

// The quota API authenticates the widget's event stream with a session
// cookie: POST the account's token to /api/session once (docs/api.md), then
// render the page again on the server, now signed in.
export function SignIn() {
  const router = useRouter();
  const [error, setError] = useState("");

  async function signIn(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const token = new FormData(event.currentTarget).get("token");
    const response = await fetch("/api/session", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token }),
    }).catch(() => null);
    if (response?.ok) router.refresh();
    else setError(response ? "Unknown token." : "The server cannot be reached.");
  }

  return (
    <main id="signin">
      <h1>Sign in</h1>
      <form onSubmit={signIn}>
        <label htmlFor="token">Account token</label>
        <input id="token" name="token" autoComplete="off" required />
        <button type="submit">Sign in</button>
        <p role="alert">{error}</p>
      </form>
    </main>
  );
}
