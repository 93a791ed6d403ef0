// Mail clients that set themselves up from an address and a password:
// - Thunderbird autoconfig (https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat):
//   GET autoconfig.<domain>/mail/config-v1.1.xml?emailaddress=… and
//   GET <domain>/.well-known/autoconfig/mail/config-v1.1.xml
// - Outlook's "POX" autodiscover ([MS-OXDSCLI]): POST /autodiscover/autodiscover.xml
// - Apple configuration profiles (.mobileconfig, com.apple.mail.managed payload), served per mailbox
//   through the API (src/api/routes/selfservice.ts).
// The documents are pure functions of the config; the HTTP handler answers only for domains
// Letterbox serves, and the same way for every local part (no hint whether an address exists).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import { XMLParser } from 'fast-xml-parser';
import type { ClientSettings } from './settings.ts';

export { clientSettings, type ClientSettings } from './settings.ts';

export function xmlEscape(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** Thunderbird's config-v1.1.xml for a domain: IMAP over TLS, submission over TLS then STARTTLS. */
export function thunderbirdConfig(domain: string, s: ClientSettings): string {
  const server = (tag: string, type: string, port: number, socket: 'SSL' | 'STARTTLS') =>
    `    <${tag} type="${type}">
      <hostname>${xmlEscape(s.host)}</hostname>
      <port>${port}</port>
      <socketType>${socket}</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </${tag}>`;
  const servers = [
    ...(s.imaps ? [server('incomingServer', 'imap', s.imaps, 'SSL')] : []),
    ...(s.submissions ? [server('outgoingServer', 'smtp', s.submissions, 'SSL')] : []),
    ...(s.submission ? [server('outgoingServer', 'smtp', s.submission, 'STARTTLS')] : []),
  ];
  const d = xmlEscape(domain);
  return `<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="${d}">
    <domain>${d}</domain>
    <displayName>${d} (Letterbox)</displayName>
    <displayShortName>${d}</displayShortName>
${servers.join('\n')}
  </emailProvider>
</clientConfig>
`;
}

const AUTODISCOVER_RESPONSE_NS = 'http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006';
const OUTLOOK_SCHEMA = 'http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a';

/** The POX autodiscover answer for an address: IMAP (SSL) and SMTP (SSL on 465, else STARTTLS). */
export function autodiscoverResponse(address: string, s: ClientSettings): string {
  const proto = (type: string, port: number, tls: 'ssl' | 'starttls') =>
    `      <Protocol>
        <Type>${type}</Type>
        <Server>${xmlEscape(s.host)}</Server>
        <Port>${port}</Port>
        <DomainRequired>off</DomainRequired>
        <LoginName>${xmlEscape(address)}</LoginName>
        <SPA>off</SPA>
${tls === 'ssl' ? '        <SSL>on</SSL>' : '        <SSL>off</SSL>\n        <Encryption>TLS</Encryption>'}
        <AuthRequired>on</AuthRequired>
      </Protocol>`;
  const smtpPort = s.submissions ?? s.submission;
  const protocols = [
    ...(s.imaps ? [proto('IMAP', s.imaps, 'ssl')] : []),
    ...(smtpPort ? [proto('SMTP', smtpPort, s.submissions ? 'ssl' : 'starttls')] : []),
  ];
  return `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="${AUTODISCOVER_RESPONSE_NS}">
  <Response xmlns="${OUTLOOK_SCHEMA}">
    <Account>
      <AccountType>email</AccountType>
      <Action>settings</Action>
${protocols.join('\n')}
    </Account>
  </Response>
</Autodiscover>
`;
}

/** An autodiscover error answer (the request's address is not served here, or the request is bad). */
export function autodiscoverError(code: number, message: string): string {
  return `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="${AUTODISCOVER_RESPONSE_NS}">
  <Response>
    <Error Time="00:00:00" Id="0">
      <ErrorCode>${code}</ErrorCode>
      <Message>${xmlEscape(message)}</Message>
      <DebugData />
    </Error>
  </Response>
</Autodiscover>
`;
}

/**
 * The <EMailAddress> of a POX autodiscover request, or null. fast-xml-parser does not expand
 * external entities or DTDs (processEntities off), so a hostile body cannot read files or blow up.
 */
export function autodiscoverRequestAddress(xml: string): string | null {
  let doc: any;
  try {
    doc = new XMLParser({ removeNSPrefix: true, processEntities: false, ignoreDeclaration: true, parseTagValue: false }).parse(xml);
  } catch {
    return null;
  }
  const v = doc?.Autodiscover?.Request?.EMailAddress;
  return typeof v === 'string' ? v.trim() : null;
}

/** A stable UUID (RFC 4122 layout) derived from `seed`: the same profile replaces itself on reinstall. */
export function stableUuid(seed: string): string {
  const h = createHash('sha256').update(seed).digest();
  h[6] = (h[6] & 0x0f) | 0x50;
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex').toUpperCase();
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

export interface MobileconfigInput {
  address: string;
  mailboxId: string;
  settings: ClientSettings;
  /** Embedded only when given; without it the device asks for the password when the profile is installed. */
  password?: string;
}

/** An Apple configuration profile with one IMAP account (unsigned XML plist). */
export function mobileconfig(i: MobileconfigInput): string {
  const s = i.settings;
  const str = (k: string, v: string) => `      <key>${k}</key>\n      <string>${xmlEscape(v)}</string>`;
  const int = (k: string, v: number) => `      <key>${k}</key>\n      <integer>${v}</integer>`;
  const bool = (k: string, v: boolean) => `      <key>${k}</key>\n      <${v}/>`;
  const reverseHost = s.host.split('.').reverse().join('.');
  const id = `${reverseHost}.letterbox.${i.mailboxId}`;
  const smtpPort = s.submissions ?? s.submission ?? 465;
  const account = [
    str('EmailAccountDescription', i.address),
    str('EmailAccountType', 'EmailTypeIMAP'),
    str('EmailAddress', i.address),
    str('IncomingMailServerAuthentication', 'EmailAuthPassword'),
    str('IncomingMailServerHostName', s.host),
    int('IncomingMailServerPortNumber', s.imaps ?? 993),
    bool('IncomingMailServerUseSSL', true),
    str('IncomingMailServerUsername', i.address),
    ...(i.password !== undefined ? [str('IncomingPassword', i.password), str('OutgoingPassword', i.password)] : []),
    str('OutgoingMailServerAuthentication', 'EmailAuthPassword'),
    str('OutgoingMailServerHostName', s.host),
    int('OutgoingMailServerPortNumber', smtpPort),
    // Apple's UseSSL means TLS of either kind: implicit on 465, STARTTLS on 587.
    bool('OutgoingMailServerUseSSL', true),
    str('OutgoingMailServerUsername', i.address),
    bool('OutgoingPasswordSameAsIncomingPassword', true),
    str('PayloadDescription', `Mail account ${i.address}`),
    str('PayloadDisplayName', i.address),
    str('PayloadIdentifier', `${id}.email`),
    str('PayloadType', 'com.apple.mail.managed'),
    str('PayloadUUID', stableUuid(`${id}.email`)),
    int('PayloadVersion', 1),
    bool('PreventAppSheet', false),
    bool('PreventMove', false),
    bool('SMIMEEnabled', false),
  ].join('\n');
  const top = (k: string, v: string) => `  <key>${k}</key>\n  ${v}`;
  return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadContent</key>
  <array>
    <dict>
${account}
    </dict>
  </array>
${top('PayloadDescription', `<string>${xmlEscape(`Sets up ${i.address} on ${s.host}`)}</string>`)}
${top('PayloadDisplayName', `<string>${xmlEscape(i.address)}</string>`)}
${top('PayloadIdentifier', `<string>${xmlEscape(id)}</string>`)}
${top('PayloadRemovalDisallowed', '<false/>')}
${top('PayloadType', '<string>Configuration</string>')}
${top('PayloadUUID', `<string>${stableUuid(id)}</string>`)}
${top('PayloadVersion', '<integer>1</integer>')}
</dict>
</plist>
`;
}

export interface AutoconfigHandlerOptions {
  settings: ClientSettings;
  /** Is `domain` (lower case) one of ours? Looked up per request. */
  isDomain: (domain: string) => boolean;
}

const THUNDERBIRD_PATHS = new Set(['/mail/config-v1.1.xml', '/.well-known/autoconfig/mail/config-v1.1.xml']);
const AUTODISCOVER_PATHS = new Set(['/autodiscover/autodiscover.xml', '/Autodiscover/Autodiscover.xml']);
const MAX_AUTODISCOVER_BODY = 16 * 1024;

function hostOf(req: IncomingMessage): string {
  return String(req.headers.host ?? '')
    .toLowerCase()
    .replace(/:\d+$/, '')
    .replace(/\.$/, '');
}

function domainOfAddress(a: string): string | null {
  const at = a.lastIndexOf('@');
  if (at <= 0 || at === a.length - 1 || a.length > 320) return null;
  return a.slice(at + 1).toLowerCase().replace(/\.$/, '');
}

/**
 * Which domain an autoconfig request is about: the address's domain when one is given (it must be
 * the Host's domain, after dropping autoconfig./autodiscover., unless the request reached us under
 * our own hostname), else the Host's domain. Null when nothing usable was sent. Pure.
 */
export function requestDomain(host: string, address: string | null, ourHostname: string): string | null {
  const hostDomain = host.replace(/^(autoconfig|autodiscover)\./, '');
  if (address !== null) {
    const d = domainOfAddress(address);
    if (!d) return null;
    if (host && host !== ourHostname.toLowerCase() && d !== hostDomain) return null;
    return d;
  }
  return hostDomain || null;
}

function send(res: ServerResponse, req: IncomingMessage, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'max-age=300' }).end(req.method === 'HEAD' ? undefined : body);
}

/** Answers the autoconfig/autodiscover paths; false for any other path (left to the next handler). */
export function handleAutoconfig(o: AutoconfigHandlerOptions, req: IncomingMessage, res: ServerResponse): boolean {
  const url = new URL(req.url ?? '/', 'http://x');
  const host = hostOf(req);
  if (THUNDERBIRD_PATHS.has(url.pathname)) {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      req.resume(); // the body is not read: the connection is not reused
      res.writeHead(405, { allow: 'GET, HEAD', connection: 'close' }).end();
      return true;
    }
    const domain = requestDomain(host, url.searchParams.get('emailaddress'), o.settings.host);
    if (!domain || !o.isDomain(domain)) send(res, req, 404, 'text/plain; charset=utf-8', 'no mail configuration for this domain here\n');
    else send(res, req, 200, 'application/xml; charset=utf-8', thunderbirdConfig(domain, o.settings));
    return true;
  }
  if (AUTODISCOVER_PATHS.has(url.pathname)) {
    if (req.method !== 'POST') {
      req.resume();
      res.writeHead(405, { allow: 'POST', connection: 'close' }).end();
      return true;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (c: Buffer) => {
      if (tooBig) return;
      size += c.length;
      if (size > MAX_AUTODISCOVER_BODY) {
        tooBig = true;
        res.setHeader('connection', 'close');
        send(res, req, 413, 'text/plain; charset=utf-8', 'request too large\n');
        req.resume(); // the rest is read and dropped; the connection closes after the answer
      } else chunks.push(c);
    });
    req.on('end', () => {
      if (tooBig) return;
      const address = autodiscoverRequestAddress(Buffer.concat(chunks).toString('utf8'));
      const domain = address ? requestDomain(host, address, o.settings.host) : null;
      if (!address || !domain || !o.isDomain(domain)) {
        // 600 = "Invalid Request" in [MS-OXDSCLI]; the same answer for a foreign domain as for junk.
        send(res, req, 200, 'text/xml; charset=utf-8', autodiscoverError(600, 'Invalid Request'));
      } else send(res, req, 200, 'text/xml; charset=utf-8', autodiscoverResponse(address, o.settings));
    });
    req.on('error', () => {});
    return true;
  }
  return false;
}
