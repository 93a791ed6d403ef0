// Dovecot settings for login protection (issue #16), rendered as one block so that the rest of the
// generated config (src/dovecot/config.ts) can change without touching it. Valid in Dovecot 2.3.
export interface AuthPolicyTarget {
  url: string; // Letterbox's local policy endpoint (src/auth/dovecot-policy.ts)
  apiHeader: string; // "Name: secret", sent with every request
  nonce: string; // required by Dovecot for its (unused here) password-hash attribute
}

/** Pure: the block to include in dovecot.conf. Without a target only the socket restriction is written. */
export function renderLoginProtection(p: AuthPolicyTarget | undefined): string {
  const policy = p
    ? `# Every IMAP login is checked with Letterbox's login guard before and after the password check
# (the same counters as submission AUTH). If Letterbox cannot answer, the login is refused.
auth_policy_server_url = ${p.url}
auth_policy_server_api_header = ${p.apiHeader}
auth_policy_hash_nonce = ${p.nonce}
auth_policy_request_attributes = login=%{requested_username} remote=%{rip} protocol=%s session_id=%{session} app=%{passdb:lb_app}
# app: the device (app) password that logged in, if any (src/dovecot/app-passwords.ts), for "last used".
auth_policy_reject_on_fail = yes
auth_policy_server_timeout_msecs = 5000
`
    : '';
  return `# --- Login protection (Letterbox issue #16; src/dovecot/login-policy.ts) ---
${policy}# auth-userdb answers "does this user exist": only Dovecot's own processes (and root) may ask.
service auth {
  unix_listener auth-userdb {
    mode = 0600
  }
}
# --- end of login protection ---
`;
}
