// The browser talks only to this Next.js origin. Every /api/* request (the gateway's own endpoints
// and the /api/rest/proxy/* calls) is forwarded to bffgate, so the gateway's HttpOnly cookies are
// first-party cookies of this origin and fetch() needs no CORS.
//
// Next.js writes rewrites into .next/routes-manifest.json at build time: set BFFGATE_URL when you
// run `npm run build` (changing it later needs a new build).
const gateway = (process.env.BFFGATE_URL ?? "http://127.0.0.1:8000").replace(/\/+$/, "");

/** @type {import("next").NextConfig} */
const nextConfig = {
  reactStrictMode: true,
  poweredByHeader: false,
  async rewrites() {
    return [{ source: "/api/:path*", destination: `${gateway}/api/:path*` }];
  },
};

export default nextConfig;
