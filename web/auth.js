// @ts-check
/**
 * Sign-in through the Cognito hosted UI: OAuth 2.0 authorization code with PKCE for a public
 * app client (no secret in the page). The ID token is what the WebSocket API accepts; it is
 * refreshed with the refresh token at the token endpoint whenever the client library asks for
 * a token near its expiry (its `token` option is `() => auth.token()`).
 *
 * Tokens live in this tab's sessionStorage, like a pasted token: a new tab signs in again
 * (through the hosted UI's own session, usually without a prompt).
 */

import { decodeTokenClaims } from "./sensor-stream-client.js";

const STORAGE_KEY = "sensor-stream.cognito";
const PENDING_KEY = "sensor-stream.cognito.pending";
// A token with less than this left is refreshed before it is handed out: more than the
// client's refreshAheadMs (60 s), so the token it extends the session with is a fresh one.
const REFRESH_MARGIN_MS = 5 * 60_000;

/**
 * @typedef {object} CognitoConfig
 * @property {"cognito"} type
 * @property {string} domain e.g. `https://<prefix>.auth.<region>.amazoncognito.com`
 * @property {string} clientId the public app client (authorization code + PKCE, no secret)
 * @property {string[]} [scopes] default `["openid", "email", "profile"]`
 */

/**
 * @typedef {object} Session
 * @property {string} idToken
 * @property {string | null} refreshToken
 */

/** Signing in is needed: no session, or the refresh token no longer works. */
export class SignInRequired extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "SignInRequired";
  }
}

export class CognitoAuth {
  /** @type {CognitoConfig} */
  #config;
  #redirectUri;
  /** @type {() => number} */
  #now;
  /** @type {Promise<string> | null} */
  #refreshing = null;

  /**
   * @param {CognitoConfig} config
   * @param {{ redirectUri?: string, now?: () => number }} [options] `now`: epoch ms on the
   *   server's clock (the WebSocket client's `serverNow()`), to judge token expiry
   */
  constructor(config, options = {}) {
    this.#config = { ...config, domain: config.domain.replace(/\/+$/, "") };
    this.#redirectUri = options.redirectUri ?? `${location.origin}${location.pathname}`;
    this.#now = options.now ?? Date.now;
  }

  /** @param {() => number} now epoch ms on the server's clock */
  useClock(now) {
    this.#now = now;
  }

  /** @returns {Session | null} */
  get session() {
    try {
      const stored = JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? "null");
      return stored && typeof stored.idToken === "string" ? stored : null;
    } catch {
      return null;
    }
  }

  /** Sends the browser to the hosted UI; it comes back to this page with `?code=&state=`. */
  async signIn() {
    const verifier = randomString(48);
    const state = randomString(24);
    sessionStorage.setItem(PENDING_KEY, JSON.stringify({ verifier, state }));
    const url = new URL(`${this.#config.domain}/oauth2/authorize`);
    url.search = new URLSearchParams({
      response_type: "code",
      client_id: this.#config.clientId,
      redirect_uri: this.#redirectUri,
      scope: (this.#config.scopes ?? ["openid", "email", "profile"]).join(" "),
      state,
      code_challenge: await challengeOf(verifier),
      code_challenge_method: "S256",
    }).toString();
    location.assign(url.toString());
  }

  /** Forgets the tokens here and ends the hosted UI's session, back to this page. */
  signOut() {
    sessionStorage.removeItem(STORAGE_KEY);
    const url = new URL(`${this.#config.domain}/logout`);
    url.search = new URLSearchParams({ client_id: this.#config.clientId, logout_uri: this.#redirectUri }).toString();
    location.assign(url.toString());
  }

  /**
   * On the way back from the hosted UI: trades `?code=` for tokens (checking `state` and
   * proving the PKCE verifier), then takes code and state out of the address bar.
   * @returns {Promise<string | null>} an error to show, or null (signed in, or nothing to do)
   */
  async completeSignIn() {
    const url = new URL(location.href);
    const code = url.searchParams.get("code");
    const error = url.searchParams.get("error");
    if (!code && !error) return null;
    const state = url.searchParams.get("state");
    const description = url.searchParams.get("error_description");
    for (const name of ["code", "state", "error", "error_description"]) url.searchParams.delete(name);
    history.replaceState(null, "", url);
    const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) ?? "null");
    sessionStorage.removeItem(PENDING_KEY);
    if (error) return `Sign-in failed: ${description ?? error}`;
    if (!pending || pending.state !== state) return "Sign-in failed: the answer does not belong to this tab's sign-in. Sign in again.";
    try {
      const tokens = await this.#tokenRequest({
        grant_type: "authorization_code",
        client_id: this.#config.clientId,
        code: /** @type {string} */ (code),
        redirect_uri: this.#redirectUri,
        code_verifier: pending.verifier,
      });
      this.#store(tokens.id_token, tokens.refresh_token ?? null);
      return null;
    } catch (failure) {
      return `Sign-in failed: ${failure instanceof Error ? failure.message : String(failure)}`;
    }
  }

  /**
   * A valid ID token: the stored one, or a fresh one from the refresh token when it expires
   * within a few minutes. Rejects with `SignInRequired` when only signing in again helps.
   * @returns {Promise<string>}
   */
  async token() {
    const session = this.session;
    if (!session) throw new SignInRequired("not signed in");
    const exp = expiryOf(session.idToken);
    if (exp !== null && exp - this.#now() > REFRESH_MARGIN_MS) return session.idToken;
    if (!session.refreshToken) throw new SignInRequired("the session has ended");
    this.#refreshing ??= this.#refresh(session.refreshToken).finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  /** @param {string} refreshToken */
  async #refresh(refreshToken) {
    let tokens;
    try {
      tokens = await this.#tokenRequest({
        grant_type: "refresh_token",
        client_id: this.#config.clientId,
        refresh_token: refreshToken,
      });
    } catch (failure) {
      if (failure instanceof SignInRequired) sessionStorage.removeItem(STORAGE_KEY);
      throw failure;
    }
    // Cognito keeps the refresh token unless rotation is on, when it sends a new one.
    this.#store(tokens.id_token, tokens.refresh_token ?? refreshToken);
    return tokens.id_token;
  }

  /**
   * @param {Record<string, string>} form
   * @returns {Promise<{ id_token: string, refresh_token?: string }>}
   */
  async #tokenRequest(form) {
    const response = await fetch(`${this.#config.domain}/oauth2/token`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(form),
      cache: "no-store",
    });
    const body = await response.json().catch(() => ({}));
    if (response.ok && typeof body.id_token === "string") return body;
    const reason = body.error_description ?? body.error ?? `HTTP ${response.status}`;
    // invalid_grant: the code or refresh token is used up, expired or revoked.
    if (body.error === "invalid_grant") throw new SignInRequired(`the session has ended (${reason})`);
    throw new Error(`the token endpoint answered ${reason}`);
  }

  /**
   * @param {string} idToken
   * @param {string | null} refreshToken
   */
  #store(idToken, refreshToken) {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ idToken, refreshToken }));
  }
}

/**
 * @param {string} token
 * @returns {number | null} epoch ms of `exp`
 */
function expiryOf(token) {
  const exp = decodeTokenClaims(token)?.exp;
  return typeof exp === "number" ? exp * 1000 : null;
}

/** @param {number} bytes */
function randomString(bytes) {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** @param {string} verifier */
async function challengeOf(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

/** @param {Uint8Array} bytes */
function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
}
