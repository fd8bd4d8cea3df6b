// The one script this service adds to Bull Board's page (served from our origin: CSP script-src
// 'self'). Bull Board's Retry on a retrigger job would send a reason-less PUT; this opens the
// retry's confirmation instead (the story page's requeue form: the obligation, its amount, a
// required reason). Without the script the PUT is refused with the same link (bullBoardRetry.ts).

/** Where the script is served, under Bull Board's base path. */
export const RETRY_SCRIPT_PATH = "/dispersal/retry-confirmation.js";

// Bull Board's UI calls its API with axios, which uses XMLHttpRequest in a browser; "retry all" is
// PUT …/retry/<status> and does not match (it keeps its own confirmation dialog).
export const RETRY_SCRIPT = `(() => {
  "use strict";
  const script = document.currentScript;
  const queue = script && script.dataset.retriggerQueue;
  const base = (document.head.querySelector("base") || {}).href || location.origin + "/";
  const retryOfJob = /\\/api\\/queues\\/([^/]+)\\/([^/]+)\\/retry$/;
  const open = XMLHttpRequest.prototype.open;
  const send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.open = function (method, url) {
    const match = String(method).toUpperCase() === "PUT" ? retryOfJob.exec(new URL(url, base).pathname) : null;
    this.retryConfirmation = match && decodeURIComponent(match[1]) === queue ? new URL("retry/" + match[1] + "/" + match[2], base).href : null;
    return open.apply(this, arguments);
  };
  XMLHttpRequest.prototype.send = function () {
    if (this.retryConfirmation) return void location.assign(this.retryConfirmation);
    return send.apply(this, arguments);
  };
})();
`;
