// A small HTTP client for tests of the operations surface: Basic credentials, JSON or raw bodies,
// no redirects followed, the answer as status, headers, text and (when it parses) JSON.
export interface Credentials {
  name: string;
  secret: string;
}

export interface HttpCallOptions {
  as?: Credentials;
  body?: unknown;
  rawBody?: string;
  headers?: Record<string, string>;
}

export interface HttpAnswer {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

export function basicAuth(who: Credentials): string {
  return `Basic ${Buffer.from(`${who.name}:${who.secret}`).toString("base64")}`;
}

export async function httpCall(base: string, method: string, path: string, options: HttpCallOptions = {}): Promise<HttpAnswer> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.as) headers.authorization = basicAuth(options.as);
  let body: string | undefined = options.rawBody;
  if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers["content-type"] ??= "application/json";
  }
  const response = await fetch(`${base}${path}`, { method, headers, ...(body !== undefined ? { body } : {}), redirect: "manual" });
  const text = await response.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}
