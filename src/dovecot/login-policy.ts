// Dovecot settings for login protection (issue #16), rendered as one block so that the rest of the
// generated config (src/dovecot/config.ts) can change without touching it: renderLoginProtection
// for Dovecot 2.3, renderLoginProtection24 for Dovecot 2.4 (checked against Debian 13's 2.4.1).
export interface AuthPolicyTarget {
  url: string; // Letterbox's local policy endpoint (src/auth/dovecot-policy.ts)
  apiHeader: string; // "Name: secret", sent with every request
  nonce: string; // required by Dovecot for its (unused here) password-hash attribute
}

const HEAD = '# --- Login protection (Letterbox issue #16; src/dovecot/login-policy.ts) ---\n';
const POLICY_COMMENT = `# Every IMAP login is checked with Letterbox's login guard before and after the password check
# (the same counters as submission AUTH). If Letterbox cannot answer, the login is refused.
`;
const TAIL = `# auth-userdb answers "does this user exist": only Dovecot's own processes (and root) may ask.
service auth {
  unix_listener auth-userdb {
    mode = 0600
  }
}
# --- end of login protection ---
`;

/** Pure: the block to include in dovecot.conf (2.3). Without a target only the socket restriction is written. */
export function renderLoginProtection(p: AuthPolicyTarget | undefined): string {
  const policy = p
    ? `${POLICY_COMMENT}auth_policy_server_url = ${p.url}
auth_policy_server_api_header = ${p.apiHeader}
auth_policy_hash_nonce = ${p.nonce}
auth_policy_request_attributes = login=%{requested_username} remote=%{rip} protocol=%s session_id=%{session} app=%{passdb:lb_app}
# app: the device (app) password that logged in, if any (src/dovecot/app-passwords.ts), for "last used".
auth_policy_reject_on_fail = yes
auth_policy_server_timeout_msecs = 5000
`
    : '';
  return `${HEAD}${policy}${TAIL}`;
}

/**
 * Pure: the same block in Dovecot 2.4 syntax. The request attributes became a string list inside the
 * auth_policy filter, whose defaults (which also send a hash of the password, device_id and
 * fail_type) are cleared first so that only what the endpoint reads is sent; the timeout is the
 * policy HTTP client's absolute request timeout; %{rip} and %s are %{remote_ip} and %{protocol}.
 */
export function renderLoginProtection24(p: AuthPolicyTarget | undefined): string {
  const policy = p
    ? `${POLICY_COMMENT}auth_policy_server_url = ${p.url}
auth_policy_server_api_header = ${p.apiHeader}
auth_policy_hash_nonce = ${p.nonce}
auth_policy_reject_on_fail = yes
auth_policy {
  request_attributes =
  request_attributes {
    login = %{requested_username}
    remote = %{remote_ip}
    protocol = %{protocol}
    session_id = %{session}
    app = %{passdb:lb_app}
  }
  http_client_request_absolute_timeout = 5s
}
`
    : '';
  return `${HEAD}${policy}${TAIL}`;
}
