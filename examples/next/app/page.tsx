import { cookies } from "next/headers";
import { API_ORIGIN } from "../api-origin";
import { Dashboard } from "./dashboard";
import { SignIn } from "./sign-in";

// Rendered on the server for each request: the dashboard for a valid
// session, else the sign-in form. Nothing here touches a browser global.
export default async function Page() {
  const session = (await cookies()).get("qw_session");
  const signedIn =
    session !== undefined &&
    (await fetch(`${API_ORIGIN}/api/state`, {
      headers: { Cookie: `qw_session=${session.value}` },
      cache: "no-store",
    }).then((response) => response.ok, () => false));
  return signedIn ? <Dashboard /> : <SignIn />;
}
