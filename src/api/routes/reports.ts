import { defineRoute, type RouteSpec } from '../route.ts';
import { visibleDomain } from '../access.ts';
import { IdParams } from '../schemas/common.ts';
import { DmarcViewSchema, ReportQuery, TlsReportQuery, TlsViewSchema } from '../schemas/reports.ts';
import { dmarcView, tlsView } from '../../reports/view.ts';

const tag = 'Domains';

// Deliverability reports received at a domain's report addresses (issue #18; src/reports/).
export const reportRoutes: RouteSpec[] = [
  defineRoute({
    method: 'get', path: '/domains/:id/dmarc-reports', operationId: 'getDmarcReports', tag, scope: 'domains:read',
    summary: 'DMARC aggregate reports received, summarised per sending source',
    description:
      'Reports that receivers (Google, Microsoft, Yahoo...) sent to the address in the DMARC record (rua=), over the last `days`. Per source IP: messages, DKIM and SPF alignment, DMARC pass/fail, what receivers did; `failing` flags sources whose mail failed alignment. Rejected reports (malformed, too large, hostile) are listed with the reason.',
    params: IdParams, query: ReportQuery, response: DmarcViewSchema,
    handler: async (req) => {
      const d = visibleDomain(req, req.params.id);
      const reverse = req.query.ptr === false ? null : (ip: string) => req.app.resolver.reverse(ip);
      return { data: await dmarcView(req.app, d.id, { days: req.query.days, reverse }) };
    },
  }),
  defineRoute({
    method: 'get', path: '/domains/:id/tls-reports', operationId: 'getTlsReports', anyThread: true, tag, scope: 'domains:read',
    summary: 'SMTP TLS reports (RFC 8460) received, summarised',
    description:
      'Reports that senders sent to the address in the TLS-RPT record (_smtp._tls, rua=) over the last `days`: TLS sessions to this server that succeeded and failed, per policy (MTA-STS, DANE, none), and the failures by result type and MX. Rejected reports are listed with the reason.',
    params: IdParams, query: TlsReportQuery, response: TlsViewSchema,
    handler: (req) => ({ data: tlsView(req.app, visibleDomain(req, req.params.id).id, { days: req.query.days }) }),
  }),
];
