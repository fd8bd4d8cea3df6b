// Cross-site request forgery guard for every state-changing request. Browsers resend cached Basic
// credentials on any request to this host, so a page elsewhere could otherwise requeue or clean
// jobs in the operator's name. Browsers label cross-site requests (Sec-Fetch-Site, Origin);
// clients without those headers (curl, scripts) are not browsers and are let through. The host the
// browser talked to is req.host: X-Forwarded-Host counts only from a proxy TRUST_PROXY names.
import type { RequestHandler } from "express";
import { isMutating } from "./auth.js";

export function refuseCrossSiteWrites(): RequestHandler {
  return (req, res, next) => {
    if (!isMutating(req.method)) return next();
    const fetchSite = req.get("sec-fetch-site");
    if (fetchSite && fetchSite !== "same-origin" && fetchSite !== "none") {
      res.status(403).json({ error: `cross-site request refused (Sec-Fetch-Site: ${fetchSite})` });
      return;
    }
    const origin = req.get("origin");
    if (origin !== undefined && !sameHost(origin, req.host)) {
      res.status(403).json({ error: "cross-origin request refused (Origin does not match Host)" });
      return;
    }
    next();
  };
}

function sameHost(origin: string, host: string | undefined): boolean {
  if (!host) return false;
  try {
    return new URL(origin).host.toLowerCase() === host.split(",")[0]!.trim().toLowerCase();
  } catch {
    return false; // "null" (sandboxed frames, cross-origin redirects) and garbage
  }
}
