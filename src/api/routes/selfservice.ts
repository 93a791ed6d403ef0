// Mailbox self-service over the API: the Apple configuration profile, Sieve scripts and the vacation
// reply. Scopes: within `mailboxes:*` (read to look, write to change), like the mailbox itself.
import { z } from 'zod';
import { LetterboxError } from '../../errors.ts';
import { clientSettings, mobileconfig } from '../../autoconfig/index.ts';
import { mailboxPasswordMatches } from '../../services/mailbox-credentials.ts';
import { defineRoute, type RouteSpec } from '../route.ts';
import { visibleMailbox } from '../access.ts';
import { IdParams } from '../schemas/common.ts';
import type { ApiRequest } from '../types.ts';
import type { ThreadContext } from '../../context.ts';
import { VacationBody } from '../../sieve/vacation.ts';
import { readVacation, removeVacation, setVacation } from '../../sieve/vacation-service.ts';
import { ForwardingBody, readForwarding, removeForwarding, setForwarding } from '../../forwarding/service.ts';
import { createAppPassword, listMailboxAppPasswords, revokeAppPassword, setRequireAppPasswords } from '../../services/app-passwords.ts';
import { activateScript, checkLimits, checkScriptName, deactivateScripts, deleteScript, getScript, listScripts, putScript, type SieveTarget } from '../../sieve/scripts.ts';

const tag = 'Mailbox self-service';
const MOBILECONFIG = 'application/x-apple-aspen-config';

function profileReply(req: ApiRequest<any, any, any, ThreadContext>, m: { id: string; address: string }, password?: string) {
  const body = mobileconfig({ address: m.address, mailboxId: m.id, settings: clientSettings(req.app.config), password });
  return {
    raw: body,
    contentType: MOBILECONFIG,
    headers: { 'Content-Disposition': `attachment; filename="${m.address.replace(/[^\w.@-]/g, '_')}.mobileconfig"`, 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' },
  };
}

/** Dovecot must be up for doveadm to find the user; the mailbox must be visible to the key. */
function sieveTarget(req: ApiRequest<any, any, any>): SieveTarget {
  const m = visibleMailbox(req, req.params.id);
  if (req.app.supervisor && !req.app.supervisor.running) throw new LetterboxError('unavailable', 'Dovecot is not running; Sieve scripts are unavailable (see the log)');
  return { doveadm: req.runtime.doveadm, config: req.app.dovecot.paths.config, user: m.address };
}

const ScriptParams = z.strictObject({ id: IdParams.shape.id, name: z.string().min(1).max(64).describe('The script name: 1-64 letters, digits, space . _ + -') });
const ScriptInfoSchema = z.object({ name: z.string(), active: z.boolean() }).meta({ id: 'SieveScriptInfo' });
const ScriptSchema = z.object({ name: z.string(), active: z.boolean(), script: z.string() }).meta({ id: 'SieveScript' });
const SIEVE_DOC =
  'Stored and compiled by Dovecot (Pigeonhole), the same storage ManageSieve clients use. Extensions: fileinto (folders are created on demand), redirect (through Letterbox\'s outbound queue like forwarding: the original sender rewritten with SRS, ARC-sealed, counted against the mailbox\'s caps; over them the message is kept in the mailbox), reject, vacation, imap4flags, envelope, body, date, relational and the rest of Pigeonhole\'s standard set; programs (extprograms) are never available.';

const VacationSchema = z
  .object({
    enabled: z.boolean(),
    subject: z.string(),
    text: z.string(),
    html: z.string().nullable(),
    from: z.string(),
    start: z.string().nullable().describe('UTC'),
    end: z.string().nullable().describe('UTC'),
    days: z.number().int(),
    active: z.boolean().describe('Replies are being sent now (enabled, and now is between start and end).'),
    updatedAt: z.string(),
  })
  .meta({ id: 'Vacation' });
const VACATION_DOC =
  "Letterbox turns the object into a Sieve script (RFC 5230) that runs before the mailbox's own active script: at most one reply per sender per `days`; never to the null sender, mailing lists (List-Id and friends), Precedence bulk/list/junk or Auto-Submitted mail, or the mailbox's own addresses. Replies carry `Auto-Submitted: auto-replied`, are DKIM-signed and leave through the outbound queue (counted against the mailbox's sending caps). Needs listen.inject.";

const ForwardingSchema = z
  .object({ targets: z.array(z.string()), keepCopy: z.boolean(), updatedAt: z.string() })
  .meta({ id: 'Forwarding' });
const FORWARDING_DOC =
  "Mail to the mailbox (and to aliases and plus-addresses that reach it) is forwarded to the targets, by the MX, through the same path as alias forwards: an SRS envelope sender and an ARC seal in the mailbox's domain, through the outbound queue. With keepCopy (default) a copy also stays in the mailbox. Each forwarded message counts against the mailbox's sending caps; over them, or with the domain's outbound mail suspended, the message is kept in the mailbox instead of forwarded. Loop guard: targets in our domains must exist and not lead back to the mailbox (400); a message that comes back already forwarded by us for this mailbox (our `Delivered-To` header) is stored, not forwarded again. At most sieve.max_forward_targets targets (default 10).";

const AppPasswordSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    createdAt: z.string(),
    lastUsed: z.object({ at: z.string(), ip: z.string().nullable(), protocol: z.string().nullable() }).nullable().describe('Last successful login (recorded at most once a minute), or null.'),
  })
  .meta({ id: 'AppPassword' });
const AppPasswordsSchema = z.object({ requireAppPasswords: z.boolean(), appPasswords: z.array(AppPasswordSchema) }).meta({ id: 'AppPasswords' });
const APP_PASSWORD_DOC =
  "Device (app) passwords log in to IMAP, ManageSieve and SMTP submission like the main password, one per device, each revocable on its own. Generated by Letterbox (140 random bits, `xxxx-xxxx-xxxx-xxxx-xxxx-xxxx-xxxx`), shown once, stored only as a SHA-256 hash that Dovecot and Letterbox both check. With requireAppPasswords the main password is refused on IMAP, ManageSieve and SMTP.";
const AppPasswordParams = z.strictObject({ id: IdParams.shape.id, appId: z.string().min(1).max(64).describe('The app password id (or its name)') });

export const selfServiceRoutes: RouteSpec[] = [
  defineRoute({
    method: 'get', path: '/mailboxes/:id/app-passwords', operationId: 'listAppPasswords', anyThread: true, tag, scope: 'mailboxes:read', errors: [404],
    summary: "The mailbox's device (app) passwords (never the passwords themselves)", description: APP_PASSWORD_DOC,
    params: IdParams, response: AppPasswordsSchema,
    handler: (req) => ({ data: listMailboxAppPasswords(req.app, visibleMailbox(req, req.params.id)) }),
  }),
  defineRoute({
    method: 'post', path: '/mailboxes/:id/app-passwords', operationId: 'createAppPassword', tag, scope: 'mailboxes:write', status: 201, errors: [404, 409],
    summary: 'Create a device (app) password; the answer holds the password, shown this once', description: `${APP_PASSWORD_DOC} At most 50 per mailbox (409 beyond).`,
    params: IdParams, body: z.strictObject({ name: z.string().min(1).max(64).describe('The device, e.g. "Alice\'s phone"') }),
    response: AppPasswordSchema.extend({ password: z.string().describe('The app password: shown once, never again.') }).meta({ id: 'NewAppPassword' }),
    handler: (req) => ({ status: 201, data: createAppPassword(req.app, visibleMailbox(req, req.params.id), req.body.name) }),
  }),
  defineRoute({
    method: 'delete', path: '/mailboxes/:id/app-passwords/:appId', operationId: 'revokeAppPassword', tag, scope: 'mailboxes:write', errors: [404],
    summary: 'Revoke a device (app) password and end the open IMAP sessions',
    description: "Dovecot ends sessions per mailbox, not per password: every open IMAP and ManageSieve session of the mailbox is ended; the other devices' mail apps log in again by themselves, the revoked one cannot.",
    params: AppPasswordParams, response: AppPasswordSchema,
    handler: (req) => ({ data: revokeAppPassword(req.app, visibleMailbox(req, req.params.id), req.params.appId) }),
  }),
  defineRoute({
    method: 'put', path: '/mailboxes/:id/require-app-passwords', operationId: 'setRequireAppPasswords', tag, scope: 'mailboxes:write', errors: [404],
    summary: 'Refuse (or allow again) the main password on IMAP, ManageSieve and SMTP',
    description: 'With `enabled: true` only device (app) passwords log in; open sessions are ended. The API and the admin keep working.',
    params: IdParams, body: z.strictObject({ enabled: z.boolean() }), response: z.object({ requireAppPasswords: z.boolean() }),
    handler: (req) => ({ data: setRequireAppPasswords(req.app, visibleMailbox(req, req.params.id), req.body.enabled) }),
  }),
  defineRoute({
    method: 'get', path: '/mailboxes/:id/forwarding', operationId: 'getForwarding', anyThread: true, tag, scope: 'mailboxes:read', errors: [404],
    summary: "The mailbox's forwarding (404 when none is set)", description: FORWARDING_DOC,
    params: IdParams, response: ForwardingSchema,
    handler: (req) => ({ data: readForwarding(req.app, visibleMailbox(req, req.params.id)) }),
  }),
  defineRoute({
    method: 'put', path: '/mailboxes/:id/forwarding', operationId: 'setForwarding', tag, scope: 'mailboxes:write', errors: [404],
    summary: 'Set (create or replace) the forwarding of the mailbox', description: FORWARDING_DOC,
    params: IdParams, body: ForwardingBody, response: ForwardingSchema,
    handler: (req) => ({ data: setForwarding(req.app, visibleMailbox(req, req.params.id), req.body) }),
  }),
  defineRoute({
    method: 'delete', path: '/mailboxes/:id/forwarding', operationId: 'deleteForwarding', tag, scope: 'mailboxes:write', errors: [404],
    summary: 'Stop forwarding', description: 'Answers with the settings that were removed.',
    params: IdParams, response: ForwardingSchema,
    handler: (req) => ({ data: removeForwarding(req.app, visibleMailbox(req, req.params.id)) }),
  }),
  defineRoute({
    method: 'get', path: '/mailboxes/:id/vacation', operationId: 'getVacation', anyThread: true, tag, scope: 'mailboxes:read', errors: [404],
    summary: "The mailbox's vacation reply (404 when none is set)", description: VACATION_DOC,
    params: IdParams, response: VacationSchema,
    handler: (req) => ({ data: readVacation(req.app, visibleMailbox(req, req.params.id)) }),
  }),
  defineRoute({
    method: 'put', path: '/mailboxes/:id/vacation', operationId: 'setVacation', tag, scope: 'mailboxes:write', errors: [404],
    summary: 'Set (create or replace) the vacation reply', description: VACATION_DOC,
    params: IdParams, body: VacationBody, response: VacationSchema,
    handler: (req) => ({ data: setVacation(req.app, visibleMailbox(req, req.params.id), req.body) }),
  }),
  defineRoute({
    method: 'delete', path: '/mailboxes/:id/vacation', operationId: 'deleteVacation', tag, scope: 'mailboxes:write', errors: [404],
    summary: 'Remove the vacation reply', description: 'Answers with the settings that were removed.',
    params: IdParams, response: VacationSchema,
    handler: (req) => ({ data: removeVacation(req.app, visibleMailbox(req, req.params.id)) }),
  }),
  defineRoute({
    method: 'get', path: '/mailboxes/:id/sieve/scripts', operationId: 'listSieveScripts', tag, scope: 'mailboxes:read', errors: [404, 503],
    summary: "The mailbox's Sieve scripts (at most one active)", description: SIEVE_DOC,
    params: IdParams, response: z.array(ScriptInfoSchema),
    handler: async (req) => ({ data: await listScripts(sieveTarget(req)) }),
  }),
  defineRoute({
    method: 'get', path: '/mailboxes/:id/sieve/scripts/:name', operationId: 'getSieveScript', tag, scope: 'mailboxes:read', errors: [404, 503],
    summary: 'One Sieve script, with its source',
    params: ScriptParams, response: ScriptSchema,
    handler: async (req) => {
      const t = sieveTarget(req);
      const name = checkScriptName(req.params.name);
      const script = await getScript(t, name);
      const active = (await listScripts(t)).some((s) => s.name === name && s.active);
      return { data: { name, active, script } };
    },
  }),
  defineRoute({
    method: 'put', path: '/mailboxes/:id/sieve/scripts/:name', operationId: 'putSieveScript', tag, scope: 'mailboxes:write', errors: [404, 409, 413, 503],
    summary: 'Create or replace a Sieve script (compiled first; refused with the line of the error)',
    description: `${SIEVE_DOC} A script that does not compile answers 400 with the compiler's messages (\`details.issues[].path\` is \`script:<line>\`) and changes nothing. Limits: sieve.max_script_size bytes, sieve.max_scripts scripts (409 beyond).`,
    params: ScriptParams, body: z.strictObject({ script: z.string().max(1024 * 1024), activate: z.boolean().optional().describe('Make it the active script.') }), response: ScriptSchema,
    handler: async (req) => {
      const t = sieveTarget(req);
      const name = checkScriptName(req.params.name);
      const limits = req.app.config.sieve;
      await checkLimits(t, name, req.body.script, { maxSize: limits.max_script_size, maxScripts: limits.max_scripts });
      await putScript(t, name, req.body.script, { activate: req.body.activate });
      const active = (await listScripts(t)).some((s) => s.name === name && s.active);
      req.log.info({ mailbox: t.user, script: name, active }, 'Sieve script stored');
      return { data: { name, active, script: req.body.script } };
    },
  }),
  defineRoute({
    method: 'delete', path: '/mailboxes/:id/sieve/scripts/:name', operationId: 'deleteSieveScript', tag, scope: 'mailboxes:write', errors: [404, 503],
    summary: 'Delete a Sieve script (the active one too: then no script runs)',
    params: ScriptParams, response: ScriptInfoSchema,
    handler: async (req) => {
      const t = sieveTarget(req);
      const name = checkScriptName(req.params.name);
      const was = (await listScripts(t)).find((s) => s.name === name);
      if (!was) throw new LetterboxError('not_found', `no Sieve script "${name}" for ${t.user}`);
      // Dovecot refuses to delete the active script: deactivate it first.
      if (was.active) await deactivateScripts(t);
      await deleteScript(t, name);
      return { data: { name, active: false } };
    },
  }),
  defineRoute({
    method: 'post', path: '/mailboxes/:id/sieve/scripts/:name/activate', operationId: 'activateSieveScript', tag, scope: 'mailboxes:write', errors: [404, 503],
    summary: 'Make this script the active one (the one that runs on delivery)',
    params: ScriptParams, response: ScriptInfoSchema,
    handler: async (req) => {
      const t = sieveTarget(req);
      const name = checkScriptName(req.params.name);
      await activateScript(t, name);
      return { data: { name, active: true } };
    },
  }),
  defineRoute({
    method: 'post', path: '/mailboxes/:id/sieve/deactivate', operationId: 'deactivateSieveScripts', tag, scope: 'mailboxes:write', errors: [404, 503],
    summary: 'No active script: mail is kept in INBOX (the vacation reply still runs)',
    params: IdParams, response: z.array(ScriptInfoSchema),
    handler: async (req) => {
      const t = sieveTarget(req);
      await deactivateScripts(t);
      return { data: await listScripts(t) };
    },
  }),
  defineRoute({
    method: 'get', path: '/mailboxes/:id/mobileconfig', operationId: 'getMobileconfig', anyThread: true, tag, scope: 'mailboxes:read', produces: MOBILECONFIG,
    summary: 'Apple configuration profile (.mobileconfig) for the mailbox, without its password',
    description: 'An unsigned profile with one IMAP account (IMAP over TLS, submission over TLS). iOS and macOS ask for the password when it is installed. To embed the password, POST it to this path.',
    params: IdParams,
    handler: (req) => profileReply(req, visibleMailbox(req, req.params.id)),
  }),
  defineRoute({
    method: 'post', path: '/mailboxes/:id/mobileconfig', operationId: 'createMobileconfigWithPassword', tag, scope: 'mailboxes:read', produces: MOBILECONFIG,
    summary: 'Apple configuration profile with the password embedded',
    description: "The password must be the mailbox's current password (checked; 400 otherwise): the profile then installs without asking. It is never stored or logged; treat the file like the password.",
    params: IdParams, body: z.strictObject({ password: z.string().min(1).max(1024) }),
    handler: async (req) => {
      const m = visibleMailbox(req, req.params.id);
      if (!(await mailboxPasswordMatches(req.app, m.id, req.body.password))) throw new LetterboxError('validation_error', "body.password: not the mailbox's current password");
      return profileReply(req, m, req.body.password);
    },
  }),
];
