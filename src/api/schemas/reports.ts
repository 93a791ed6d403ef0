import { z } from 'zod';
import { decimal, Flag } from './common.ts';

// Deliverability reports received (issue #18; src/reports/).

export const TlsReportQuery = z.strictObject({
  days: decimal(1, 3650).default(30).describe('The period: reports whose reporting period ended in the last N days (default 30).'),
});

export const ReportQuery = z.strictObject({
  days: decimal(1, 3650).default(30).describe('The period: reports whose reporting period ended in the last N days (default 30).'),
  ptr: Flag.optional().describe('0 = do not look up the reverse DNS name of each source (default: looked up for the 50 busiest).'),
});

const Disposition = z.object({ none: z.number().int(), quarantine: z.number().int(), reject: z.number().int() });

export const DmarcSourceSchema = z
  .object({
    sourceIp: z.string(),
    ptr: z.string().nullable().describe('Reverse DNS name of the source (looked up now; reports carry only the IP).'),
    messages: z.number().int(),
    dkimAligned: z.number().int().describe('Messages with an aligned, passing DKIM signature.'),
    spfAligned: z.number().int().describe('Messages with an aligned SPF pass.'),
    dmarcPass: z.number().int(),
    dmarcFail: z.number().int(),
    disposition: Disposition.describe('What the receivers did with its messages.'),
    headerFrom: z.array(z.string()),
    reporters: z.array(z.string()),
    failing: z.boolean().describe('true when some of its messages failed DMARC alignment: someone spoofing the domain, or a sender (a newsletter service, a forwarder, a server) not yet authorised in SPF/DKIM.'),
  })
  .meta({ id: 'DmarcSource' });

export const DmarcReportInfoSchema = z
  .object({
    id: z.string(),
    receivedAt: z.string(),
    status: z.enum(['accepted', 'rejected']),
    reason: z.string().nullable().describe('Why the report was rejected (malformed, too large, a decompression bomb, about another domain...).'),
    orgName: z.string().nullable(),
    orgEmail: z.string().nullable(),
    reportId: z.string().nullable(),
    begin: z.string().nullable(),
    end: z.string().nullable(),
    policy: z.object({ domain: z.string(), adkim: z.string().nullable(), aspf: z.string().nullable(), p: z.string(), sp: z.string().nullable(), pct: z.number().nullable(), fo: z.string().nullable() }).nullable(),
    errors: z.array(z.string()),
    messages: z.number().int(),
    mailFrom: z.string(),
    remoteIp: z.string(),
  })
  .meta({ id: 'DmarcReportInfo' });

export const DmarcViewSchema = z
  .object({
    domain: z.string(),
    address: z.string().nullable().describe('The reports address in the DMARC record (rua=), or null when reports.dmarc_address is "".'),
    days: z.number().int(),
    since: z.string(),
    summary: z.object({
      reports: z.number().int(),
      messages: z.number().int(),
      dmarcPass: z.number().int(),
      dmarcFail: z.number().int(),
      sources: z.array(DmarcSourceSchema).describe('Per sending IP, most messages first.'),
    }),
    reports: z.array(DmarcReportInfoSchema).describe('Reports received in the period, newest first (at most 200).'),
    rejected: z.number().int(),
  })
  .meta({ id: 'DmarcReports' });

export const TlsViewSchema = z
  .object({
    domain: z.string(),
    address: z.string().nullable().describe('The address in the TLS-RPT record (rua=), or null when reports.tls_address is "".'),
    days: z.number().int(),
    since: z.string(),
    summary: z.object({
      reports: z.number().int(),
      successful: z.number().int().describe('TLS sessions to our MX that succeeded.'),
      failed: z.number().int(),
      policies: z.array(z.object({ policyType: z.string().describe('sts, tlsa or no-policy-found.'), policyDomain: z.string(), successful: z.number().int(), failed: z.number().int(), reporters: z.array(z.string()) })),
      failures: z
        .array(z.object({ resultType: z.string().describe('RFC 8460 result type, e.g. certificate-expired, certificate-host-mismatch, starttls-not-supported, sts-policy-fetch-error.'), receivingMx: z.string().nullable(), sessions: z.number().int(), sendingIps: z.array(z.string()), reporters: z.array(z.string()) }))
        .describe('Failures by result type and MX, most sessions first.'),
    }),
    reports: z.array(
      z.object({
        id: z.string(), receivedAt: z.string(), status: z.enum(['accepted', 'rejected']), reason: z.string().nullable(), orgName: z.string().nullable(), contact: z.string().nullable(),
        reportId: z.string().nullable(), begin: z.string().nullable(), end: z.string().nullable(), successful: z.number().int(), failed: z.number().int(), mailFrom: z.string(), remoteIp: z.string(),
      }),
    ),
    rejected: z.number().int(),
  })
  .meta({ id: 'TlsReports' });
