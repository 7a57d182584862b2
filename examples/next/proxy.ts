import { NextResponse, type NextRequest } from "next/server";
import { API_ORIGIN } from "./api-origin";

// The quota API on this site's origin, as the widget expects (/api): the
// session cookie and the event stream then stay same-origin. A rewrite in
// next.config would do the same, but its destination is fixed at build time.
export function proxy(request: NextRequest) {
  return NextResponse.rewrite(new URL(request.nextUrl.pathname + request.nextUrl.search, API_ORIGIN));
}

export const config = { matcher: "/api/:path*" };
