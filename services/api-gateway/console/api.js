// The console's only way to the server: the public API, with the caller's bearer token.
//
// The token lives in sessionStorage only (never a cookie, never localStorage): it is gone when the tab
// closes, and the browser never attaches it to a request by itself.

const TOKEN_KEY = 'hookline.token';

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value.trim());
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/// A TMI-style deep link hands the token over in the URL fragment (`#token=…` or `#access_token=…`): take
/// it, then drop it from the address bar and the history.
export function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.replace(/^#\/?/, ''));
  const handed = params.get('token') || params.get('access_token');
  if (!handed) return false;
  setToken(handed);
  history.replaceState(null, '', location.pathname + location.search + '#/subscriptions');
  return true;
}

/// The token's claims, for display only (who is signed in): the API decides what the caller may see.
export function claims() {
  const t = token();
  if (!t) return null;
  try {
    const part = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part));
  } catch {
    return null;
  }
}

/// An answer that was not 2xx, carrying TMI's `{error, error_description}` when the body had them.
export class ApiError extends Error {
  constructor(status, body) {
    // TMI's handler errors put the sentence in `error` and leave `error_description` empty.
    const error = body && typeof body.error === 'string' ? body.error : '';
    const description = body && typeof body.error_description === 'string' ? body.error_description : '';
    let message = `HTTP ${status}`;
    if (description) message = `${description} (${error}, HTTP ${status})`;
    else if (error) message = `${error} (HTTP ${status})`;
    super(message);
    this.status = status;
    this.code = body && body.error;
  }
}

/// Calls the API; resolves to the JSON body (null for 204), rejects with an ApiError.
export async function api(method, path, body) {
  const headers = { Accept: 'application/json', Authorization: `Bearer ${token() || ''}` };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/// A query string from an object, leaving out empty values.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}
