// Passkeys (WebAuthn) for console admins, with @simplewebauthn/server: registration from a
// one-time invitation, login with a discoverable credential (no user name to type). The relying
// party is the host the browser shows: "localhost" when reached through an SSH tunnel
// (http://localhost:PORT is a secure context, so WebAuthn works without TLS), or the server's
// hostname when the console is published over HTTPS.
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { LetterboxError } from '../errors.ts';
import type { Credential } from './store.ts';

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

export function registrationOptions(rp: RelyingParty, admin: { id: string; name: string }, existing: { id: string; transports: string[] }[]) {
  return generateRegistrationOptions({
    rpName: 'Letterbox console',
    rpID: rp.id,
    userName: admin.name,
    userID: new TextEncoder().encode(admin.id),
    attestationType: 'none',
    excludeCredentials: existing.map((c) => ({ id: c.id, transports: c.transports as any })),
    authenticatorSelection: { residentKey: 'required', userVerification: 'required' },
  });
}

/** Checks a registration; the new credential, or a validation_error that says what failed. */
export async function verifyRegistration(rp: RelyingParty, challenge: string, response: unknown, adminId: string): Promise<Credential> {
  let r;
  try {
    r = await verifyRegistrationResponse({ response: response as RegistrationResponseJSON, expectedChallenge: challenge, expectedOrigin: rp.origin, expectedRPID: rp.id, requireUserVerification: true });
  } catch (err: any) {
    throw new LetterboxError('validation_error', `the passkey could not be registered: ${err?.message ?? err}`);
  }
  if (!r.verified || !r.registrationInfo) throw new LetterboxError('validation_error', 'the passkey could not be registered: not verified');
  const c = r.registrationInfo.credential;
  return { id: c.id, adminId, publicKey: c.publicKey, counter: c.counter, transports: c.transports ?? [] };
}

export function authenticationOptions(rp: RelyingParty) {
  return generateAuthenticationOptions({ rpID: rp.id, userVerification: 'required', allowCredentials: [] });
}

/** Checks a login assertion against the stored credential; the new signature counter, or null when it fails. */
export async function verifyLogin(rp: RelyingParty, challenge: string, response: unknown, cred: Credential): Promise<number | null> {
  try {
    const r = await verifyAuthenticationResponse({
      response: response as AuthenticationResponseJSON,
      expectedChallenge: challenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.id,
      credential: { id: cred.id, publicKey: cred.publicKey as any, counter: cred.counter, transports: cred.transports as any },
      requireUserVerification: true,
    });
    return r.verified ? r.authenticationInfo.newCounter : null;
  } catch {
    return null;
  }
}
