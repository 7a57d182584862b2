import type { NextConfig } from "next";

const nextConfig: NextConfig = {
  // Next's gzip holds back a proxied server-sent event stream (the quota
  // widget's /api/events) until its buffer fills: the widget would never see
  // a state. Compress in the reverse proxy in front instead, if at all.
  compress: false,
};

export default nextConfig;
