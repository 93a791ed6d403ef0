import { defineRoute, type RouteSpec } from '../route.ts';
import { visibleMailbox } from '../access.ts';
import { IdParams } from '../schemas/common.ts';
import {
  AttachmentParams,
  DeleteQuery,
  DeleteResultSchema,
  FolderQuery,
  FolderSchema,
  GetMessageQuery,
  ListMessagesQuery,
  MailboxUidParams,
  MessageListSchema,
  MessageSchema,
  PatchMessageBody,
  PatchResultSchema,
} from '../schemas/messages.ts';

const tag = 'Messages';
const IMAP = 'Read over IMAP from Dovecot as the master user: the same folders, UIDs and flags mail clients see. 502 imap_error when IMAP fails; 503 when no pooled connection is free in time.';

/** A safe Content-Disposition filename (ASCII fallback + RFC 5987 UTF-8). */
function disposition(kind: 'attachment' | 'inline', name: string | null): string {
  if (!name) return kind;
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `${kind}; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

export const messageRoutes: RouteSpec[] = [
  defineRoute({
    method: 'get', path: '/mailboxes/:id/folders', operationId: 'listFolders', tag, scope: 'messages:read', errors: [502, 503],
    summary: "A mailbox's folders, with message and unseen counts", description: IMAP,
    params: IdParams, response: FolderSchema.array(),
    handler: async (req) => {
      const m = visibleMailbox(req, req.params.id);
      return { data: await req.app.mail.listFolders(m.address) };
    },
  }),
  defineRoute({
    method: 'get', path: '/mailboxes/:id/messages', operationId: 'listMessages', tag, scope: 'messages:read', errors: [502, 503],
    summary: 'List messages of a folder, newest first',
    description: `Paginate with ?before=<nextBefore>. ${IMAP}`,
    params: IdParams, query: ListMessagesQuery, response: MessageListSchema,
    handler: async (req) => {
      const m = visibleMailbox(req, req.params.id);
      const q = req.query;
      return { data: await req.app.mail.listMessages(m.address, { folder: q.folder, limit: q.limit, before: q.before, unseen: q.unseen }) };
    },
  }),
  defineRoute({
    method: 'get', path: '/mailboxes/:id/messages/:uid', operationId: 'getMessage', tag, scope: 'messages:read', errors: [502, 503],
    summary: 'A parsed message: headers, text, html, attachments (metadata), authentication verdicts',
    description: `Reading does not set \\Seen unless ?markSeen=1. ${IMAP}`,
    params: MailboxUidParams, query: GetMessageQuery, response: MessageSchema,
    handler: async (req) => {
      const m = visibleMailbox(req, req.params.id);
      return { data: await req.app.mail.getMessage(m.address, req.query.folder, req.params.uid, !!req.query.markSeen, m.id) };
    },
  }),
  defineRoute({
    method: 'get', path: '/mailboxes/:id/messages/:uid/raw', operationId: 'getRawMessage', tag, scope: 'messages:read', errors: [502, 503], produces: 'message/rfc822',
    summary: 'The message source (message/rfc822), byte for byte', description: IMAP,
    params: MailboxUidParams, query: FolderQuery,
    handler: async (req) => {
      const m = visibleMailbox(req, req.params.id);
      const raw = await req.app.mail.getRaw(m.address, req.query.folder, req.params.uid);
      return { raw, contentType: 'message/rfc822', headers: { 'Content-Disposition': disposition('attachment', `${req.params.uid}.eml`) } };
    },
  }),
  defineRoute({
    method: 'get', path: '/mailboxes/:id/messages/:uid/attachments/:index', operationId: 'getAttachment', tag, scope: 'messages:read', errors: [502, 503], produces: 'application/octet-stream',
    summary: 'The bytes of one attachment (by its index in the message), with its content type', description: IMAP,
    params: AttachmentParams, query: FolderQuery,
    handler: async (req) => {
      const m = visibleMailbox(req, req.params.id);
      const a = await req.app.mail.getAttachment(m.address, req.query.folder, req.params.uid, req.params.index);
      return { raw: a.content, contentType: a.contentType, headers: { 'Content-Disposition': disposition('attachment', a.filename), 'X-Content-Type-Options': 'nosniff' } };
    },
  }),
  defineRoute({
    method: 'patch', path: '/mailboxes/:id/messages/:uid', operationId: 'updateMessage', tag, scope: 'messages:write', errors: [502, 503],
    summary: 'Change flags and/or move to another folder',
    description: `Answers with the message's new location (folder and UID change on a move) and flags. ${IMAP}`,
    params: MailboxUidParams, query: FolderQuery, body: PatchMessageBody, response: PatchResultSchema,
    handler: async (req) => {
      const m = visibleMailbox(req, req.params.id);
      return { data: await req.app.mail.patchMessage(m.address, req.query.folder, req.params.uid, req.body) };
    },
  }),
  defineRoute({
    method: 'delete', path: '/mailboxes/:id/messages/:uid', operationId: 'deleteMessage', tag, scope: 'messages:write', errors: [502, 503],
    summary: 'Move a message to Trash, or expunge it',
    description: `Moves to the Trash folder; ?permanent=1 (or a message already in Trash) expunges it for good. ${IMAP}`,
    params: MailboxUidParams, query: DeleteQuery, response: DeleteResultSchema,
    handler: async (req) => {
      const m = visibleMailbox(req, req.params.id);
      return { data: await req.app.mail.deleteMessage(m.address, req.query.folder, req.params.uid, !!req.query.permanent) };
    },
  }),
];
