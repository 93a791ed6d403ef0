// Passkeys (WebAuthn) for console admins, with @simplewebauthn/server: registration from a
// one-time invitation, login with a discoverable credential (no user name to type). Loaded on the
// first passkey request only (src/console/app.ts): the library and its ASN.1 parsers cost ~20 MB
// of memory that an appliance whose console is never opened should not pay.
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
import type { RelyingParty } from './relying-party.ts';

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
