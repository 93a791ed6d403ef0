// HTML from tagged templates, escaped by default. Hand-written rather than a template engine:
// it is fifteen lines, the templates are ordinary TypeScript (type-checked against the data they
// render, no template files to ship or load), and every interpolation is escaped unless it is
// itself a Html value built here — so forgetting to escape is not possible, while an engine
// (eta, ejs) escapes only inside the right tag and leaves raw output one character away.

/** A piece of markup that is already safe (built by `html`). */
export class Html {
  readonly value: string;
  constructor(value: string) {
    this.value = value;
  }
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for element content and quoted attribute values. Pure. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

type Part = Html | string | number | boolean | null | undefined | readonly Part[];

function render(p: Part): string {
  if (p === null || p === undefined || p === false || p === true) return '';
  if (p instanceof Html) return p.value;
  if (Array.isArray(p)) return p.map(render).join('');
  return escapeHtml(String(p));
}

/** The tag: strings of the template are kept, every value is escaped (arrays joined; null, undefined and booleans render nothing). */
export function html(strings: TemplateStringsArray, ...values: Part[]): Html {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1];
  return new Html(out);
}
