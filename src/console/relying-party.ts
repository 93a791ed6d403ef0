// The WebAuthn relying party of a console request. It is the host the browser shows: "localhost"
// when reached through an SSH tunnel (http://localhost:PORT is a secure context, so WebAuthn works
// without TLS), or the server's hostname when the console is published over HTTPS.
import { LetterboxError } from '../errors.ts';

export interface RelyingParty {
  id: string;
  origin: string;
}

/**
 * Decide: the relying party for a request, from its Host header and scheme. Only localhost (any
 * port: the local end of `ssh -L` is the admin's choice) or the configured hostname are accepted;
 * anything else is refused with what to open instead. Pure.
 */
export function relyingParty(host: string, protocol: string, hostname: string): RelyingParty {
  const name = host.replace(/:\d+$/, '').toLowerCase();
  if (name === 'localhost' || name === hostname.toLowerCase()) return { id: name, origin: `${protocol}://${host.toLowerCase()}` };
  throw new LetterboxError(
    'validation_error',
    `open the console as http://localhost:PORT (through an SSH tunnel, e.g. ssh -L 8025:127.0.0.1:8025 this server) or as https://${hostname}; passkeys are bound to that name, not to "${name}"`,
  );
}
