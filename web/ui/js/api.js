// graced's REST API (/api/v1, described at /api/v1/openapi.json). Reads are open; changes send
// the bearer token typed into the header's token field (kept for this browser tab only).

const TOKEN_KEY = 'grace.api_token';

export function apiToken() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setApiToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// An error answer: the server's message, the field it names (400) and the HTTP status.
export class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field || '';
  }
}

async function parse(response, path) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.error ? body.error : `${path}: HTTP ${response.status}`;
    throw new ApiError(response.status, message, body && body.field);
  }
  return body;
}

export async function get(path, params = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) query.set(k, v);
  const url = query.size ? `${path}?${query}` : path;
  return parse(await fetch(url, { headers: { Accept: 'application/json' } }), path);
}

export async function send(method, path, body) {
  const headers = { Accept: 'application/json' };
  const token = apiToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  return parse(response, path);
}
