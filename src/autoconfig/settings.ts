import { parseHostPort, type Config } from '../config/schema.ts';

/** Where mail clients connect (the server's name, first port of each listener; null when not configured). */
export interface ClientSettings {
  host: string;
  imaps: number | null;
  submissions: number | null;
  submission: number | null;
}

export function clientSettings(config: Config): ClientSettings {
  const first = (l: string[]) => (l[0] ? parseHostPort(l[0])!.port : null);
  return { host: config.hostname, imaps: first(config.listen.imap), submissions: first(config.listen.submissions), submission: first(config.listen.submission) };
}

