// Mail reading and changing for the API, over IMAP as the master user (through the pool): folders,
// message lists, parsed messages, raw source, attachments, flags, moves, deletion, and APPEND.
import type { ImapFlow, FetchMessageObject, MessageStructureObject, MessageEnvelopeObject } from 'imapflow';
// mailparser (~26 MB RSS) is imported where a message is parsed, on the first API read of a message.
import type { ParsedMail, SimpleParserOptions } from 'mailparser';
import { LetterboxError } from '../errors.ts';
import type { AppContext } from '../context.ts';

/** What reading mail over IMAP needs of the context. */
export type MailHost = Pick<AppContext, 'imapPool' | 'imapAppender' | 'config' | 'db'>;
import { imapMessage } from './pool.ts';
import { SENT_FOLDER } from '../dovecot/config.ts';
import { VERDICT_ID_HEADER, getVerdicts, type AuthVerdicts as StoredAuth, type StoredVerdicts } from '../verdicts/store.ts';
import { canonicalAuthservId, parseAuthResults, resultOf } from '../verdicts/auth-results.ts';

export interface FolderInfo {
  path: string;
  name: string;
  delimiter: string;
  specialUse: string | null;
  subscribed: boolean;
  messages: number | null;
  unseen: number | null;
}

export interface MessageSummary {
  uid: number;
  messageId: string | null;
  subject: string | null;
  from: Addr[];
  to: Addr[];
  cc: Addr[];
  date: string | null;
  flags: string[];
  size: number;
  seen: boolean;
  hasAttachments: boolean;
}

export interface Addr {
  name: string;
  address: string;
}

/** Opens `folder` (read-write); a folder that does not exist is a 404. */
export async function openFolder(c: ImapFlow, folder: string, readOnly = false) {
  // A pooled connection often has this folder selected already, in the same mode: a NOOP then
  // brings its message count up to date (EXISTS/EXPUNGE, which imapflow applies to c.mailbox) at
  // a fraction of what re-selecting costs Dovecot on a big folder (measured: EXAMINE of a
  // 10,000-message INBOX took ~5.6 ms of a ~12 ms list).
  const open = c.mailbox;
  if (open && !!open.readOnly === readOnly && (open.path === folder || (folder.toUpperCase() === 'INBOX' && open.path.toUpperCase() === 'INBOX'))) {
    await c.noop();
    if (c.mailbox === open) return open;
  }
  try {
    return await c.mailboxOpen(folder, { readOnly });
  } catch (err: any) {
    const text = imapMessage(err);
    if (/doesn't exist|does not exist|NONEXISTENT|Mailbox not found/i.test(text) || err?.serverResponseCode === 'NONEXISTENT') {
      throw new LetterboxError('not_found', `no folder "${folder}" in this mailbox; see GET /api/v1/mailboxes/{id}/folders`);
    }
    throw err;
  }
}

function addrs(list: { name?: string; address?: string }[] | undefined): Addr[] {
  return (list ?? []).filter((a) => a.address).map((a) => ({ name: a.name ?? '', address: a.address! }));
}

function hasAttachment(node: MessageStructureObject | undefined): boolean {
  if (!node) return false;
  if (node.childNodes?.length) return node.childNodes.some(hasAttachment);
  if (node.disposition === 'attachment') return true;
  if (node.dispositionParameters?.filename || node.parameters?.name) return true;
  return false;
}

function summary(m: FetchMessageObject): MessageSummary {
  const e: MessageEnvelopeObject | undefined = m.envelope;
  const flags = [...(m.flags ?? [])];
  const date = e?.date ? new Date(e.date as any) : m.internalDate ? new Date(m.internalDate as any) : null;
  return {
    uid: m.uid,
    messageId: e?.messageId ?? null,
    subject: e?.subject ?? null,
    from: addrs(e?.from),
    to: addrs(e?.to),
    cc: addrs(e?.cc),
    date: date && !Number.isNaN(date.getTime()) ? date.toISOString() : null,
    flags,
    size: m.size ?? 0,
    seen: flags.includes('\\Seen'),
    hasAttachments: hasAttachment(m.bodyStructure),
  };
}

export async function listFolders(app: MailHost, address: string): Promise<FolderInfo[]> {
  return app.imapPool.with(address, async (c) => {
    const list = await c.list({ statusQuery: { messages: true, unseen: true } });
    return list.map((f) => ({
      path: f.path,
      name: f.name,
      delimiter: f.delimiter,
      specialUse: f.specialUse ?? null,
      subscribed: f.subscribed,
      messages: f.status?.messages ?? null,
      unseen: f.status?.unseen ?? null,
    }));
  });
}

export interface ListInput {
  folder: string;
  limit: number;
  before?: number;
  unseen?: boolean;
}

/** Newest first (by UID). `before`: only UIDs below it (the previous page's nextBefore). */
export async function listMessages(app: MailHost, address: string, q: ListInput): Promise<{ folder: string; total: number; messages: MessageSummary[]; nextBefore: number | null }> {
  return app.imapPool.with(address, async (c) => {
    const box = await openFolder(c, q.folder, true);
    const total = box.exists;
    if (total === 0) return { folder: box.path, total, messages: [], nextBefore: null };
    let uids: number[];
    if (!q.unseen && !q.before) {
      // The newest `limit + 1` messages by sequence number: no full UID search.
      const from = Math.max(1, total - q.limit);
      const r = (await c.search({ seq: `${from}:*` } as any, { uid: true })) || [];
      uids = r;
    } else {
      if (q.before !== undefined && q.before <= 1) return { folder: box.path, total, messages: [], nextBefore: null };
      uids = await newestMatching(c, total, q.limit + 1, q.unseen ? { seen: false } : {}, q.before);
    }
    uids.sort((a, b) => b - a);
    const more = uids.length > q.limit;
    const pageUids = uids.slice(0, q.limit);
    if (pageUids.length === 0) return { folder: box.path, total, messages: [], nextBefore: null };
    const fetched = await c.fetchAll(pageUids.join(','), { uid: true, flags: true, envelope: true, size: true, bodyStructure: true, internalDate: true }, { uid: true });
    const messages = fetched.map(summary).sort((a, b) => b.uid - a.uid);
    return { folder: box.path, total, messages, nextBefore: more ? pageUids[pageUids.length - 1] : null };
  });
}

/**
 * The UIDs of the newest `want` messages (or fewer) that match `criteria` and have a UID below
 * `before`, newest first, found by searching windows of sequence numbers from the top down.
 *
 * Why not one UID SEARCH: on a big folder its answer lists every match (thousands of UIDs for
 * "unseen" or a deep "before" page), which imapflow parses and compiles token by token: ~8-12 ms
 * of a list on 10,000 messages. Here the answers stay near `want`: a message's UID < before means
 * its sequence number is below the first message with UID >= before (ESEARCH MIN); the windows
 * then double in size until enough matches are found. Every window also carries the criteria and
 * the UID bound, so the result is exact even if messages are expunged meanwhile (sequence numbers
 * only move down, so a message not yet searched stays below the windows searched; the first
 * window is open-ended upwards, and a message seen twice is counted once).
 */
async function newestMatching(c: ImapFlow, total: number, want: number, criteria: Record<string, unknown>, before?: number): Promise<number[]> {
  const query = before !== undefined ? { ...criteria, uid: `1:${before - 1}` } : criteria;
  let hi = total;
  if (before !== undefined) {
    const r = (await c.search({ uid: `${before}:*` } as any, { returnOptions: ['MIN'] } as any)) as unknown as { min?: number } | number[] | false;
    if (r && !Array.isArray(r) && typeof r.min === 'number') hi = r.min - 1;
  }
  const found = new Set<number>();
  let size = Object.keys(criteria).length ? want * 4 : want;
  for (let first = true; hi >= 1 && found.size < want; first = false) {
    const lo = Math.max(1, hi - size + 1);
    const r = (await c.search({ ...query, seq: first ? `${lo}:*` : `${lo}:${hi}` } as any, { uid: true })) || [];
    for (const u of r.sort((a, b) => b - a)) if (found.size < want) found.add(u);
    hi = lo - 1;
    size *= 2;
  }
  return [...found];
}

/** The raw message (404 when the UID is not in the folder). */
async function fetchSource(c: ImapFlow, folder: string, uid: number): Promise<{ source: Buffer; flags: string[]; size: number; internalDate: string | null; path: string }> {
  const box = await openFolder(c, folder, true);
  const m = await c.fetchOne(String(uid), { uid: true, source: true, flags: true, size: true, internalDate: true }, { uid: true });
  if (!m || !m.source) throw new LetterboxError('not_found', `no message with UID ${uid} in folder "${folder}"`);
  const d = m.internalDate ? new Date(m.internalDate as any) : null;
  return { source: m.source, flags: [...(m.flags ?? [])], size: m.size ?? m.source.length, internalDate: d ? d.toISOString() : null, path: box.path };
}

export async function getRaw(app: MailHost, address: string, folder: string, uid: number): Promise<Buffer> {
  return app.imapPool.with(address, async (c) => (await fetchSource(c, folder, uid)).source);
}

export interface AuthVerdicts {
  authservId: string;
  spf: string | null;
  dkim: string | null;
  dmarc: string | null;
  arc: string | null;
  raw: string;
  /** 'stored': what our MX recorded at delivery; 'header': read from our own Authentication-Results (mail stored before verdicts were kept). */
  source: 'stored' | 'header';
  /** The stored verdicts with their domains (source 'stored' only). */
  details: StoredAuth | null;
}

/**
 * What our MX concluded about a message. Served from the verdicts stored at delivery
 * (src/verdicts/store.ts), found by the X-Letterbox-Id header our MX adds (a copy that came with
 * the message is removed on receipt; a row is trusted only for the mailboxes it was delivered to).
 * Mail without a row (stored before verdicts were kept) falls back to our own
 * Authentication-Results header: parsed per RFC 8601, and only a field above the Received header
 * our MX added (anything below it came with the message, whatever authserv-id it claims).
 */
export function authVerdicts(parsed: ParsedMail, hostname: string, stored: (id: string) => StoredVerdicts | null = () => null, mailboxId?: string): AuthVerdicts[] {
  const lines = parsed.headerLines ?? [];
  const valueOf = (line: { line: string }) => line.line.slice(line.line.indexOf(':') + 1).replace(/\r?\n[ \t]+/g, ' ').trim();
  const idLine = lines.find((l) => l.key === VERDICT_ID_HEADER.toLowerCase());
  const row = idLine ? stored(valueOf(idLine)) : null;
  if (row && mailboxId && row.mailboxIds.includes(mailboxId)) {
    const a = row.auth;
    const dkim = a.dkim.find((d) => d.result === 'pass')?.result ?? a.dkim[0]?.result ?? 'none';
    return [{ authservId: a.authservId, spf: a.spf.result, dkim, dmarc: a.dmarc.result, arc: a.arc.result, raw: a.header, source: 'stored', details: a }];
  }
  const ours = canonicalAuthservId(hostname);
  const out: AuthVerdicts[] = [];
  for (const line of lines) {
    if (line.key === 'received' && /\(Letterbox\)/.test(line.line)) break;
    if (line.key !== 'authentication-results') continue;
    const value = valueOf(line);
    const p = parseAuthResults(value);
    if (p.authservId !== ours) continue;
    const dkimResults = p.results.filter((r) => r.method === 'dkim');
    const dkim = dkimResults.find((r) => r.result === 'pass')?.result ?? dkimResults[0]?.result ?? null;
    out.push({ authservId: p.authservId, spf: resultOf(p, 'spf'), dkim, dmarc: resultOf(p, 'dmarc'), arc: resultOf(p, 'arc'), raw: value, source: 'header', details: null });
  }
  return out;
}

export interface SpamVerdictView {
  verdict: string;
  score: number | null;
  action: string;
}

/**
 * The spam verdict our MX stored for this message at delivery (src/verdicts/store.ts), for the
 * mailboxes it was delivered to; null otherwise. X-Spam headers in the message are never read: a
 * sender could have written them (they are stripped on receipt, but mail may come from elsewhere).
 */
export function spamVerdict(parsed: ParsedMail, stored: (id: string) => StoredVerdicts | null, mailboxId?: string): SpamVerdictView | null {
  const idLine = (parsed.headerLines ?? []).find((l) => l.key === VERDICT_ID_HEADER.toLowerCase());
  if (!idLine || !mailboxId) return null;
  const row = stored(idLine.line.slice(idLine.line.indexOf(':') + 1).replace(/\r?\n[ \t]+/g, ' ').trim());
  if (!row || !row.mailboxIds.includes(mailboxId) || !row.spam) return null;
  const s = row.spam as Partial<SpamVerdictView>;
  return { verdict: String(s.verdict ?? 'unknown'), score: typeof s.score === 'number' ? s.score : null, action: String(s.action ?? 'accept') };
}

function parsedAddrs(v: any): Addr[] {
  if (!v) return [];
  const list = Array.isArray(v) ? v : [v];
  const out: Addr[] = [];
  const walk = (a: any) => {
    if (a.group) a.group.forEach(walk);
    else if (a.address) out.push({ name: a.name ?? '', address: a.address });
  };
  for (const x of list) (x.value ?? []).forEach(walk);
  return out;
}

export async function getMessage(app: MailHost, address: string, folder: string, uid: number, markSeen: boolean, mailboxId?: string) {
  return app.imapPool.with(address, async (c) => {
    const s = await fetchSource(c, folder, uid);
    let flags = s.flags;
    if (markSeen && !flags.includes('\\Seen')) {
      await openFolder(c, folder);
      await c.messageFlagsAdd(String(uid), ['\\Seen'], { uid: true });
      flags = [...flags, '\\Seen'];
    }
    const parsed = await (await import('mailparser')).simpleParser(s.source, { skipImageLinks: true, skipTextToHtml: true } as SimpleParserOptions);
    return {
      uid,
      folder: s.path,
      messageId: parsed.messageId ?? null,
      subject: parsed.subject ?? null,
      from: parsedAddrs(parsed.from),
      to: parsedAddrs(parsed.to),
      cc: parsedAddrs(parsed.cc),
      replyTo: parsedAddrs(parsed.replyTo),
      date: parsed.date ? parsed.date.toISOString() : null,
      internalDate: s.internalDate,
      flags,
      seen: flags.includes('\\Seen'),
      size: s.size,
      headers: (parsed.headerLines ?? []).map((h) => ({ name: h.line.slice(0, h.line.indexOf(':')), value: h.line.slice(h.line.indexOf(':') + 1).replace(/\r?\n[ \t]+/g, ' ').trim() })),
      text: parsed.text ?? null,
      html: typeof parsed.html === 'string' ? parsed.html : null,
      attachments: parsed.attachments.map((a, index) => ({
        index,
        filename: a.filename ?? null,
        contentType: a.contentType,
        size: a.size,
        contentId: a.cid ?? null,
        disposition: a.contentDisposition ?? null,
        checksum: a.checksum,
      })),
      authentication: authVerdicts(parsed, app.config.hostname, (id) => getVerdicts(app.db, id), mailboxId),
      spam: spamVerdict(parsed, (id) => getVerdicts(app.db, id), mailboxId),
    };
  });
}

export async function getAttachment(app: MailHost, address: string, folder: string, uid: number, index: number) {
  const raw = await getRaw(app, address, folder, uid);
  const parsed = await (await import('mailparser')).simpleParser(raw, { skipImageLinks: true, skipTextToHtml: true, skipHtmlToText: true } as SimpleParserOptions);
  const a = parsed.attachments[index];
  if (!a) throw new LetterboxError('not_found', `message ${uid} has ${parsed.attachments.length} attachment(s); there is no index ${index}`);
  return { content: a.content, contentType: a.contentType || 'application/octet-stream', filename: a.filename ?? null };
}

export interface PatchInput {
  seen?: boolean;
  flagged?: boolean;
  answered?: boolean;
  addFlags?: string[];
  removeFlags?: string[];
  folder?: string; // move destination
}

export async function patchMessage(app: MailHost, address: string, folder: string, uid: number, p: PatchInput) {
  return app.imapPool.with(address, async (c) => {
    await openFolder(c, folder);
    const exists = await c.search({ uid: String(uid) } as any, { uid: true });
    if (!exists || !exists.length) throw new LetterboxError('not_found', `no message with UID ${uid} in folder "${folder}"`);
    const add = [...(p.addFlags ?? [])];
    const remove = [...(p.removeFlags ?? [])];
    const sys = (v: boolean | undefined, flag: string) => {
      if (v === true) add.push(flag);
      else if (v === false) remove.push(flag);
    };
    sys(p.seen, '\\Seen');
    sys(p.flagged, '\\Flagged');
    sys(p.answered, '\\Answered');
    if (add.length) await c.messageFlagsAdd(String(uid), add, { uid: true });
    if (remove.length) await c.messageFlagsRemove(String(uid), remove, { uid: true });
    let where = { folder: c.mailbox ? (c.mailbox as any).path : folder, uid };
    if (p.folder && p.folder !== where.folder) {
      await ensureFolderExists(c, p.folder);
      const r = await c.messageMove(String(uid), p.folder, { uid: true });
      if (!r) throw new LetterboxError('imap_error', `moving message ${uid} to "${p.folder}" failed`);
      const newUid = r.uidMap?.get(uid);
      where = { folder: r.destination, uid: newUid ?? 0 };
      await openFolder(c, where.folder, true);
    }
    const m = where.uid ? await c.fetchOne(String(where.uid), { uid: true, flags: true }, { uid: true }) : null;
    return { folder: where.folder, uid: where.uid || null, flags: m ? [...(m.flags ?? [])] : null };
  });
}

async function ensureFolderExists(c: ImapFlow, folder: string): Promise<void> {
  const st = await c.status(folder, { messages: true }).catch(() => false);
  if (!st) throw new LetterboxError('not_found', `no folder "${folder}" in this mailbox; see GET /api/v1/mailboxes/{id}/folders`);
}

async function trashFolder(c: ImapFlow): Promise<string | null> {
  const list = await c.list();
  return list.find((f) => f.specialUse === '\\Trash')?.path ?? list.find((f) => f.path.toLowerCase() === 'trash')?.path ?? null;
}

/** Moves to Trash, or expunges (`permanent`, or when the message is already in Trash / there is no Trash). */
export async function deleteMessage(app: MailHost, address: string, folder: string, uid: number, permanent: boolean) {
  return app.imapPool.with(address, async (c) => {
    const trash = permanent ? null : await trashFolder(c);
    const box = await openFolder(c, folder);
    const exists = await c.search({ uid: String(uid) } as any, { uid: true });
    if (!exists || !exists.length) throw new LetterboxError('not_found', `no message with UID ${uid} in folder "${folder}"`);
    if (trash && trash !== box.path) {
      const r = await c.messageMove(String(uid), trash, { uid: true });
      if (!r) throw new LetterboxError('imap_error', `moving message ${uid} to ${trash} failed`);
      return { deleted: false, movedTo: { folder: r.destination, uid: r.uidMap?.get(uid) ?? null } };
    }
    const ok = await c.messageDelete(String(uid), { uid: true });
    if (!ok) throw new LetterboxError('imap_error', `deleting message ${uid} failed`);
    return { deleted: true, movedTo: null };
  });
}

/**
 * Stores a sent message in the mailbox's Sent folder, marked \Seen. The folder is the \Sent
 * special-use mailbox of the Dovecot configuration Letterbox writes (auto-created when missing).
 */
export async function appendToSent(app: MailHost, address: string, message: Buffer): Promise<{ folder: string; uid: number | null }> {
  const r = await app.imapAppender.append(address, SENT_FOLDER, message, ['\\Seen']);
  return { folder: SENT_FOLDER, uid: r.uid };
}

/**
 * The mailboxes' mail as the API reads and changes it (AppContext.mail): the functions above bound
 * to the context, so the API reaches IMAP through the context and never imports this adapter.
 */
export function imapMailstore(app: MailHost) {
  return {
    listFolders: (address: string) => listFolders(app, address),
    listMessages: (address: string, q: ListInput) => listMessages(app, address, q),
    getRaw: (address: string, folder: string, uid: number) => getRaw(app, address, folder, uid),
    getMessage: (address: string, folder: string, uid: number, markSeen: boolean, mailboxId?: string) => getMessage(app, address, folder, uid, markSeen, mailboxId),
    getAttachment: (address: string, folder: string, uid: number, index: number) => getAttachment(app, address, folder, uid, index),
    patchMessage: (address: string, folder: string, uid: number, p: PatchInput) => patchMessage(app, address, folder, uid, p),
    deleteMessage: (address: string, folder: string, uid: number, permanent: boolean) => deleteMessage(app, address, folder, uid, permanent),
    appendToSent: (address: string, message: Buffer) => appendToSent(app, address, message),
  };
}

export type Mailstore = ReturnType<typeof imapMailstore>;
