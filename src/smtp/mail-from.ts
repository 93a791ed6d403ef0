// MAIL FROM checks shared by the MX and submission.

/**
 * RFC 6531 section 3.4: an address with non-ASCII characters may only be used in a transaction
 * opened with the SMTPUTF8 parameter. Postfix answers such a MAIL FROM with 553 5.6.7 (as we do).
 * smtp-server sets envelope.smtpUtf8 when the parameter was given.
 */
export function nonAsciiWithoutSmtpUtf8(address: string | false | undefined, envelope: { smtpUtf8?: boolean } | undefined): boolean {
  // eslint-disable-next-line no-control-regex
  return typeof address === 'string' && /[^\x00-\x7f]/.test(address) && !envelope?.smtpUtf8;
}
