import { z } from 'zod';
import { Flag, decimal } from './common.ts';

// A folder path as IMAP clients see it ("INBOX", "Archive/2026"). Refused: control characters,
// the IMAP LIST wildcards * and %, and anything that reads as a file path rather than a folder
// name (leading / or ~, a . or .. segment), which Dovecot would refuse anyway (502 before).
const FolderName = z
  .string()
  .min(1)
  .max(500)
  .refine((f) => !/[\u0000-\u001f\u007f*%]/.test(f), 'no control characters, * or %')
  .refine((f) => !/^[/~.]/.test(f) && !f.includes('..') && !f.split('/').some((seg) => seg === '' || seg === '.'), 'a folder name, not a path: no leading / ~ or ., no empty, . or .. segment');
const Folder = FolderName.default('INBOX').describe('Folder path (default INBOX).');
const Uid = decimal(1, 4294967295);
// IMAP keywords and system flags: \Seen, \Flagged..., or atoms such as $Label1.
const ImapFlag = z.string().regex(/^\\?[A-Za-z0-9$_.-]{1,64}$/, 'an IMAP flag such as \\Flagged or a keyword such as $Label1');

export const MailboxUidParams = z.strictObject({ id: z.string().min(1).max(320), uid: Uid });
export const AttachmentParams = z.strictObject({ id: z.string().min(1).max(320), uid: Uid, index: decimal(0, 10000) });

export const FolderQuery = z.strictObject({ folder: Folder });
export const GetMessageQuery = z.strictObject({ folder: Folder, markSeen: Flag.optional().describe('1 to set \\Seen (fetching never sets it otherwise).') });
export const DeleteQuery = z.strictObject({ folder: Folder, permanent: Flag.optional().describe('1 to expunge at once instead of moving to Trash.') });

export const ListMessagesQuery = z.strictObject({
  folder: Folder,
  limit: decimal(1, 200).default(25),
  before: Uid.optional().describe('Only messages with a UID below this one: the nextBefore of the previous page.'),
  unseen: Flag.optional().describe('1 for messages without \\Seen only.'),
});

export const PatchMessageBody = z.strictObject({
  seen: z.boolean().optional(),
  flagged: z.boolean().optional(),
  answered: z.boolean().optional(),
  addFlags: z.array(ImapFlag).max(20).optional(),
  removeFlags: z.array(ImapFlag).max(20).optional(),
  folder: FolderName.optional().describe('Move the message to this folder.'),
});

const AddrSchema = z.object({ name: z.string(), address: z.string() });

export const FolderSchema = z
  .object({
    path: z.string(),
    name: z.string(),
    delimiter: z.string(),
    specialUse: z.string().nullable(),
    subscribed: z.boolean(),
    messages: z.number().int().nullable(),
    unseen: z.number().int().nullable(),
  })
  .meta({ id: 'Folder' });

export const MessageSummarySchema = z
  .object({
    uid: z.number().int(),
    messageId: z.string().nullable(),
    subject: z.string().nullable(),
    from: z.array(AddrSchema),
    to: z.array(AddrSchema),
    cc: z.array(AddrSchema),
    date: z.string().nullable(),
    flags: z.array(z.string()),
    size: z.number().int(),
    seen: z.boolean(),
    hasAttachments: z.boolean(),
  })
  .meta({ id: 'MessageSummary' });

export const MessageListSchema = z
  .object({
    folder: z.string(),
    total: z.number().int().describe('Messages in the folder.'),
    messages: z.array(MessageSummarySchema).describe('Newest (highest UID) first.'),
    nextBefore: z.number().int().nullable().describe('Pass as ?before= for the next page; null on the last page.'),
  })
  .meta({ id: 'MessageList' });

export const MessageSchema = z
  .object({
    uid: z.number().int(),
    folder: z.string(),
    messageId: z.string().nullable(),
    subject: z.string().nullable(),
    from: z.array(AddrSchema),
    to: z.array(AddrSchema),
    cc: z.array(AddrSchema),
    replyTo: z.array(AddrSchema),
    date: z.string().nullable(),
    internalDate: z.string().nullable(),
    flags: z.array(z.string()),
    seen: z.boolean(),
    size: z.number().int(),
    headers: z.array(z.object({ name: z.string(), value: z.string() })),
    text: z.string().nullable(),
    html: z.string().nullable(),
    attachments: z.array(
      z.object({
        index: z.number().int().describe('For GET …/attachments/{index}.'),
        filename: z.string().nullable(),
        contentType: z.string(),
        size: z.number().int(),
        contentId: z.string().nullable(),
        disposition: z.string().nullable(),
        checksum: z.string().describe('MD5 of the decoded content.'),
      }),
    ),
    authentication: z
      .array(
        z.object({
          authservId: z.string(),
          spf: z.string().nullable(),
          dkim: z.string().nullable(),
          dmarc: z.string().nullable(),
          arc: z.string().nullable(),
          raw: z.string().describe('The Authentication-Results header this server wrote.'),
          source: z.enum(['stored', 'header']).describe('stored: recorded by the MX at delivery; header: read from our own Authentication-Results (mail stored before verdicts were kept).'),
          details: z
            .object({
              authservId: z.string(),
              spf: z.object({ result: z.string(), domain: z.string().nullable() }),
              dkim: z.array(z.object({ result: z.string(), domain: z.string().nullable(), selector: z.string().nullable() })),
              dmarc: z.object({ result: z.string(), domain: z.string().nullable(), policy: z.string().nullable() }),
              arc: z.object({ result: z.string() }),
              header: z.string(),
            })
            .nullable()
            .describe('The stored verdicts with their domains (source stored), else null.'),
        }),
      )
      .describe('What this server concluded at delivery (never headers that came with the message); empty for mail that did not arrive over our MX.'),
    spam: z
      .object({
        verdict: z.string().describe('ham, junk, reject, greylist, off, unscanned or failed.'),
        score: z.number().nullable().describe("rspamd's score (null when not scanned)."),
        action: z.string(),
      })
      .nullable()
      .describe('The spam verdict our MX stored at delivery (never an X-Spam header); null when the message was not scanned here or predates stored verdicts.'),
  })
  .meta({ id: 'Message' });

export const PatchResultSchema = z.object({ folder: z.string(), uid: z.number().int().nullable(), flags: z.array(z.string()).nullable() }).meta({ id: 'MessageLocation' });
export const DeleteResultSchema = z
  .object({ deleted: z.boolean().describe('true: expunged; false: moved to Trash.'), movedTo: z.object({ folder: z.string(), uid: z.number().int().nullable() }).nullable() })
  .meta({ id: 'MessageDeleted' });
