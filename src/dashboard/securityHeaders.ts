// The HTTP hardening headers of every answer (helmet), the Content-Security-Policy the /ops pages
// and the story pass, the looser one Bull Board's single-page app needs, and no caching anywhere.
import helmet from "helmet";
import type { RequestHandler } from "express";

type Directives = Record<string, string[]>;

/** Server-rendered pages: inline styles, no inline script, forms posting to this host only. */
const PAGE_DIRECTIVES: Directives = {
  "default-src": ["'none'"],
  "script-src": ["'self'"],
  "style-src": ["'self'", "'unsafe-inline'"],
  "img-src": ["'self'", "data:"],
  "font-src": ["'self'"],
  "connect-src": ["'self'"],
  "form-action": ["'self'"],
  "frame-ancestors": ["'none'"],
  "base-uri": ["'none'"],
  "object-src": ["'none'"],
};

// @bull-board/ui's index.ejs sets <base href>, has inline style attributes and a <style>, and links
// its fonts' stylesheet from Google Fonts: allowed here, on Bull Board's path only.
const BULL_BOARD_DIRECTIVES: Directives = {
  ...PAGE_DIRECTIVES,
  "style-src": ["'self'", "'unsafe-inline'", "https://fonts.googleapis.com"],
  "font-src": ["'self'", "data:", "https://fonts.gstatic.com"],
  "base-uri": ["'self'"],
};

export function securityHeaders(): RequestHandler[] {
  return [
    helmet({
      // Not upgrade-insecure-requests: the service listens on plain HTTP (127.0.0.1, or behind a TLS proxy).
      contentSecurityPolicy: { useDefaults: false, directives: PAGE_DIRECTIVES },
      frameguard: { action: "deny" }, // the buttons must not be clickable through someone else's frame
      referrerPolicy: { policy: "same-origin" },
    }),
    (_req, res, next) => {
      // Answers carry money and people's names (API, CSV, pages, Bull Board, metrics): no cache,
      // browser or proxy, keeps a copy.
      res.setHeader("Cache-Control", "no-store");
      next();
    },
  ];
}

/** Replaces the pages' policy for everything under Bull Board's base path. */
export function bullBoardContentSecurityPolicy(): RequestHandler {
  return helmet.contentSecurityPolicy({ useDefaults: false, directives: BULL_BOARD_DIRECTIVES });
}
