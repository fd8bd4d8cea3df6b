// A connection URL as it may be printed (errors, logs): the password hidden, wherever the URL keeps it.

/**
 * `scheme://user:password@host…` → `scheme://user:***@host…`, also with no user part
 * (`redis://:secret@host`) and with `@` or `/` left unencoded in the password (the user info ends
 * at the last `@` before the query); a `password=` query parameter is hidden too.
 */
export function redactUrl(url: string): string {
  const start = url.indexOf("//");
  if (start < 0) return redactQuery(url);
  const authorityStart = start + 2;
  const queryStart = firstIndex(url, ["?", "#"], authorityStart);
  const at = url.lastIndexOf("@", queryStart - 1);
  let redacted = url;
  if (at >= authorityStart) {
    const userInfo = url.slice(authorityStart, at);
    const colon = userInfo.indexOf(":");
    if (colon >= 0) redacted = `${url.slice(0, authorityStart)}${userInfo.slice(0, colon)}:***${url.slice(at)}`;
  }
  return redactQuery(redacted);
}

function redactQuery(url: string): string {
  return url.replace(/([?&;]password=)[^&#]*/gi, "$1***");
}

function firstIndex(text: string, needles: string[], from: number): number {
  const found = needles.map((n) => text.indexOf(n, from)).filter((i) => i >= 0);
  return found.length > 0 ? Math.min(...found) : text.length;
}
