// The SMTP reply type lives in src/mail/reply.ts (below the protocol adapters); this re-export keeps
// the MX listener's import path (src/smtp/inbound/server.ts) working.
export { SmtpReply, reply, newRef, internalFailure } from '../../mail/reply.ts';
