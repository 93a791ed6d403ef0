import { z } from 'zod';

// No CR, LF or NUL anywhere a value can end up in a header: that is how header injection works.
const NO_CRLF = /^[^\r\n\0]*$/;
const headerSafe = (max: number) => z.string().max(max).regex(NO_CRLF, 'must not contain line breaks (CR/LF) or NUL');

const AddressField = headerSafe(998).min(3).describe('"user@example.com" or "Name <user@example.com>".');
const AddressList = z.union([AddressField, z.array(AddressField).min(1).max(100)]);

/**
 * Extra headers an API send may set. Everything else (From, To, Subject, Date, Message-ID, MIME,
 * DKIM, Received...) is built by Letterbox from the typed fields.
 */
export const ALLOWED_HEADER = /^(X-(?!Letterbox-)[A-Za-z0-9-]{1,70}|List-Unsubscribe|List-Unsubscribe-Post|List-Id|List-Help|In-Reply-To|References|Auto-Submitted|Precedence|Keywords)$/i;

export const Attachment = z.strictObject({
  filename: headerSafe(255).min(1),
  contentType: z
    .string()
    .max(255)
    .regex(/^[\w.+-]+\/[\w.+-]+$/, 'a MIME type such as application/pdf (no parameters)')
    .optional()
    .describe('Guessed from the filename when omitted.'),
  content: z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'base64 (standard alphabet, no line breaks)').describe('The bytes, base64-encoded.'),
  contentId: z.string().max(255).regex(/^[\w.@-]+$/, 'letters, digits, . @ _ -').optional().describe('For inline images referenced as cid: in the HTML.'),
  disposition: z.enum(['attachment', 'inline']).optional(),
});

export const SendBody = z
  .strictObject({
    from: AddressField.optional().describe("Address to send as: the mailbox's own (default) or an alias that points only to it."),
    fromName: headerSafe(200).optional().describe('Display name for From.'),
    to: AddressList,
    cc: AddressList.optional(),
    bcc: AddressList.optional().describe('Receives the message; not visible to other recipients (kept in the Sent copy).'),
    replyTo: AddressList.optional(),
    subject: headerSafe(998).default(''),
    text: z.string().max(20 * 1024 * 1024).optional(),
    html: z.string().max(20 * 1024 * 1024).optional(),
    headers: z
      .record(z.string().regex(ALLOWED_HEADER, 'only X-* (not X-Letterbox-*), List-Unsubscribe, List-Unsubscribe-Post, List-Id, List-Help, In-Reply-To, References, Auto-Submitted, Precedence, Keywords'), headerSafe(998))
      .optional()
      .describe('Extra headers, limited to a safe set: X-*, List-Unsubscribe(-Post), List-Id, List-Help, In-Reply-To, References, Auto-Submitted, Precedence, Keywords.'),
    attachments: z.array(Attachment).max(100).optional().describe('Their decoded total may not exceed submission.max_message_size.'),
  })
  .refine((b) => b.text !== undefined || b.html !== undefined, { message: 'give text, html or both', path: ['text'] });

export const SendResultSchema = z
  .object({
    messageId: z.string().describe('The Message-ID header value.'),
    accepted: z.array(z.object({ recipient: z.string(), status: z.enum(['delivered', 'queued', 'sandbox']), queueId: z.string().optional() })),
    rejected: z.array(z.object({ recipient: z.string(), code: z.number().int(), reason: z.string() })),
    queueIds: z.array(z.string()),
    sandbox: z.boolean().describe('true for test keys: recorded, never delivered.'),
    sentCopy: z.object({ folder: z.string(), uid: z.number().int().nullable() }).nullable().describe('Where the copy in the mailbox was stored (null for sandbox sends, or if storing it failed).'),
  })
  .meta({ id: 'SendResult' });
