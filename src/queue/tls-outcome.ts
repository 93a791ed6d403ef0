// The TLS outcome of one outbound SMTP session, in the vocabulary of SMTP TLS Reporting (RFC 8460
// §4.3): which policy applied (MTA-STS, DANE TLSA, or none) and whether TLS succeeded or which
// failure result type stopped it. Recorded per delivery attempt (outbound_attempts.tls_policy,
// tls_result; migration 1100) and summed up in the daily TLS report (src/reports/tls-out.ts).
// DANE (src/queue/dane*.ts) reports through the same type: policy 'tlsa' and the tlsa-* results.

/** RFC 8460 §4.4 policy-type. */
export type TlsPolicyType = 'sts' | 'tlsa' | 'no-policy-found';

/** RFC 8460 §4.3 result types (negotiation failures, policy failures, general failures). */
export const TLS_FAILURE_TYPES = [
  'starttls-not-supported',
  'certificate-host-mismatch',
  'certificate-expired',
  'certificate-not-trusted',
  'validation-failure',
  'tlsa-invalid',
  'dnssec-invalid',
  'dane-required',
  'sts-policy-fetch-error',
  'sts-policy-invalid',
  'sts-webpki-invalid',
] as const;
export type TlsFailureType = (typeof TLS_FAILURE_TYPES)[number];

/** 'success' or the failure result type. */
export type TlsResult = 'success' | TlsFailureType;

export interface TlsOutcome {
  policy: TlsPolicyType;
  result: TlsResult;
}

/**
 * Decide: the failure result type of a TLS error raised while negotiating with a verifying client
 * (nodemailer / node:tls error codes). Pure.
 */
export function tlsFailureOf(err: { code?: unknown; message?: unknown; command?: unknown; response?: unknown }): TlsFailureType {
  const code = String(err?.code ?? '');
  const msg = String(err?.message ?? '');
  // The server answered STARTTLS with an error reply (it does not offer it; nodemailer sends it anyway under requireTLS).
  if (err?.command === 'STARTTLS' && typeof err?.response === 'string' && /^[45]\d\d/.test(err.response)) return 'starttls-not-supported';
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID' || /certificate has expired|not yet valid/i.test(msg)) return 'certificate-expired';
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || /Hostname\/IP does not match|altnames/i.test(msg)) return 'certificate-host-mismatch';
  if (
    ['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_UNTRUSTED', 'CERT_REJECTED'].includes(code) ||
    /self[- ]signed|unable to (verify|get)/i.test(msg)
  ) {
    return 'certificate-not-trusted';
  }
  if (/STARTTLS/i.test(msg) && /not|support|advertis/i.test(msg)) return 'starttls-not-supported';
  return 'validation-failure';
}

/**
 * Decide: the outcome of a session that got as far as a reply after the greeting. `secure`: TLS was
 * negotiated. Without TLS the session counts as a failure 'starttls-not-supported' (RFC 8460 §4.3.1),
 * also when no policy asked for TLS. Pure.
 */
export function sessionOutcome(policy: TlsPolicyType, secure: boolean): TlsOutcome {
  return { policy, result: secure ? 'success' : 'starttls-not-supported' };
}

/** True when the connection error happened during TLS negotiation (so it is a TLS failure, not a network one). Pure. */
export function isTlsError(err: { code?: unknown; message?: unknown }): boolean {
  const code = String(err?.code ?? '');
  return code === 'ETLS' || /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME/.test(code) || /certificate|STARTTLS|TLS/i.test(String(err?.message ?? ''));
}
