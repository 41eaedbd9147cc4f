// The JSON API, called with the signed-in key as a Bearer token. The key lives in this tab's
// sessionStorage only: never in a URL, a cookie, localStorage or a log.

const KEY_ITEM = "meshanics.console.key";

// The API's root: this module is served from <root>/console/assets/<version>/api.js, so the root
// is three levels up, under API Gateway's stage prefix or at the local platform's root alike.
export const API_ROOT = new URL("../../../", import.meta.url);

export class ApiError extends Error {
  constructor(status, code, message, field = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }

  /** What to tell a person: the API's message, with the field it names. */
  get text() {
    if (this.field && !this.message.startsWith(`${this.field}:`)) return `${this.field}: ${this.message}`;
    return this.message;
  }
}

export const session = {
  key: () => sessionStorage.getItem(KEY_ITEM),
  store: (key) => sessionStorage.setItem(KEY_ITEM, key),
  forget: () => sessionStorage.removeItem(KEY_ITEM),
};

const listeners = { unauthorized: [] };
/** Called when the API refuses the stored key (revoked, expired): the console signs out. */
export function onUnauthorized(listener) {
  listeners.unauthorized.push(listener);
}

function url(path, query) {
  const target = new URL(path.replace(/^\//, ""), API_ROOT);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== null && value !== undefined && value !== "") target.searchParams.set(name, String(value));
  }
  return target;
}

/** One API call. Resolves with the parsed body (null for 204; the text itself with `text: true`);
 * rejects with an ApiError. */
export async function call(method, path, { body, query, key, text: asText = false } = {}) {
  const bearer = key ?? session.key();
  const headers = { Accept: "application/json" };
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
  } catch {
    throw new ApiError(0, "network", "The API could not be reached. Check your connection and try again.");
  }
  const text = await response.text();
  if (response.ok && asText) return text;
  let parsed = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
  }
  if (response.ok) return parsed;
  const detail = parsed && typeof parsed === "object" ? parsed.error || parsed : {};
  const error = new ApiError(
    response.status,
    typeof detail.code === "string" ? detail.code : `http_${response.status}`,
    typeof detail.message === "string" && detail.message ? detail.message : describeStatus(response.status),
    typeof detail.field === "string" ? detail.field : null,
  );
  if (response.status === 401 && key === undefined) listeners.unauthorized.forEach((listener) => listener(error));
  throw error;
}

function describeStatus(status) {
  if (status === 401) return "The API key was not accepted.";
  if (status === 403) return "This API key may not do that.";
  if (status === 404) return "Not found.";
  if (status === 429) return "Too many requests: wait a moment and try again.";
  if (status >= 500) return "The service had a problem; try again in a moment.";
  return `The request failed (HTTP ${status}).`;
}

export const get = (path, query) => call("GET", path, { query });
export const post = (path, body) => call("POST", path, { body });
export const patch = (path, body) => call("PATCH", path, { body });
export const put = (path, body) => call("PUT", path, { body });
export const del = (path) => call("DELETE", path);

/** Every page of a list, up to `max` items. */
export async function all(path, query = {}, max = 500) {
  const items = [];
  let cursor = null;
  do {
    const page = await get(path, { ...query, limit: 100, cursor });
    items.push(...(page.items || []));
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

// -- what this deployment's API offers ---------------------------------------------------------
// Read once from the public OpenAPI document, so the console offers only what the API has (newer
// routes and fields may not be deployed everywhere yet).
let offered = null;

export function features() {
  if (!offered) offered = readFeatures();
  return offered;
}

async function readFeatures() {
  const assumed = { recover: true, replays: true, headers: true, deliverySearch: true };
  let spec;
  try {
    spec = await call("GET", "/v1/openapi.json", { key: "" });
  } catch {
    return assumed;
  }
  const paths = spec?.paths || {};
  const names = Object.keys(paths);
  const schemas = spec?.components?.schemas || {};
  const deliveries = names.find((name) => /^\/v1\/webhooks\/\{[^}]+\}\/deliveries$/.test(name));
  const parameters = (deliveries && paths[deliveries].get?.parameters) || [];
  return {
    recover: names.some((name) => /^\/v1\/webhooks\/\{[^}]+\}\/recover$/.test(name)),
    replays: names.includes("/v1/replays"),
    headers: Boolean(schemas.WebhookCreate?.properties?.headers),
    deliverySearch: parameters.some((parameter) => parameter.name === "since"),
  };
}
