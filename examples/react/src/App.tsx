import { useState, useSyncExternalStore } from "react";
import { SignIn } from "./SignIn";
import { Dashboard } from "./Dashboard";

// Two routes in the URL's hash: "#/" (Generate, with the widget) and
// "#/usage" (no widget: leaving the dashboard unmounts it).
function subscribe(onChange: () => void) {
  window.addEventListener("hashchange", onChange);
  return () => window.removeEventListener("hashchange", onChange);
}
const useRoute = () => useSyncExternalStore(subscribe, () => (location.hash === "#/usage" ? "usage" : "generate"));

export function App() {
  const [signedIn, setSignedIn] = useState(false);
  const route = useRoute();
  if (!signedIn) return <SignIn onSignedIn={() => setSignedIn(true)} />;
  return (
    <>
      <nav>
        <a href="#/" aria-current={route === "generate" ? "page" : undefined}>Generate</a>
        <a href="#/usage" aria-current={route === "usage" ? "page" : undefined}>Usage</a>
      </nav>
      {route === "usage" ? (
        <main id="usage">
          <h1>Usage</h1>
          <p>Your generations of the month would be listed here.</p>
        </main>
      ) : (
        <Dashboard />
      )}
    </>
  );
}
