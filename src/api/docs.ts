import type { OpenApiDoc } from './openapi.ts';

/**
 * A self-contained, human-readable page rendered from the OpenAPI document (no CDN, no script):
 * every operation grouped by tag with its scope, parameters, request body and response schemas,
 * then the named schemas. Served at /api/docs.
 */
const esc = (s: unknown) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function schemaHtml(schema: unknown): string {
  const json = JSON.stringify(schema, null, 2) ?? '';
  // Links from "$ref" to the schema's section.
  return `<pre>${esc(json).replace(/&quot;#\/components\/schemas\/(\w+)&quot;/g, (_m, id) => `&quot;<a href="#schema-${id}">#/components/schemas/${id}</a>&quot;`)}</pre>`;
}

function inline(md: string): string {
  return esc(md).replace(/`([^`]+)`/g, '<code>$1</code>').replace(/\n\n/g, '<br><br>');
}

export function renderDocs(doc: OpenApiDoc): string {
  const byTag = new Map<string, string[]>();
  const toc: string[] = [];
  for (const [path, ops] of Object.entries<any>(doc.paths)) {
    for (const [method, op] of Object.entries<any>(ops)) {
      const id = `op-${op.operationId}`;
      const params = (op.parameters ?? []) as any[];
      const body = op.requestBody?.content?.['application/json']?.schema;
      const responses = Object.entries<any>(op.responses)
        .map(([code, r]) => {
          const ref = r.$ref ? String(r.$ref).split('/').pop() : null;
          const resp = ref ? doc.components.responses[ref] : r;
          const schema = resp.content?.['application/json']?.schema;
          return `<tr><td>${esc(code)}</td><td>${esc(resp.description)}${!ref && schema ? schemaHtml(schema) : ''}</td></tr>`;
        })
        .join('');
      const html = `<section id="${id}" class="op">
<h3><span class="m ${esc(method)}">${esc(method.toUpperCase())}</span> <code>${esc(path)}</code></h3>
<p><strong>${esc(op.summary)}</strong></p>
<p>${inline(op.description ?? '')}</p>
${params.length ? `<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>required</th><th>schema</th><th>description</th></tr>${params.map((p) => `<tr><td><code>${esc(p.name)}</code></td><td>${esc(p.in)}</td><td>${p.required ? 'yes' : 'no'}</td><td><code>${esc(JSON.stringify(p.schema))}</code></td><td>${esc(p.description)}</td></tr>`).join('')}</table>` : ''}
${body ? `<h4>Request body (application/json)</h4>${schemaHtml(body)}` : ''}
<h4>Responses</h4><table>${responses}</table>
</section>`;
      const tag = op.tags?.[0] ?? 'Other';
      byTag.set(tag, [...(byTag.get(tag) ?? []), html]);
      toc.push(`<li><a href="#${id}"><span class="m ${esc(method)}">${esc(method.toUpperCase())}</span> ${esc(path)}</a></li>`);
    }
  }
  const sections = [...byTag].map(([tag, ops]) => `<h2 id="tag-${esc(tag)}">${esc(tag)}</h2>${ops.join('\n')}`).join('\n');
  const schemas = Object.entries<any>(doc.components.schemas)
    .map(([id, s]) => `<section id="schema-${esc(id)}"><h3>${esc(id)}</h3>${schemaHtml(s)}</section>`)
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(doc.info.title)}</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0;display:flex;color:#1d1d1f}
nav{width:330px;min-width:330px;height:100vh;overflow:auto;position:sticky;top:0;background:#f5f5f7;padding:1em;box-sizing:border-box;font-size:13px}
nav ul{list-style:none;padding:0;margin:0}nav li{margin:.2em 0}nav a{color:inherit;text-decoration:none}
main{padding:1em 2em;max-width:1000px;overflow:hidden}
.op{border-top:1px solid #ddd;padding:.5em 0 1em}
.m{display:inline-block;min-width:4.2em;text-align:center;border-radius:4px;color:#fff;font:bold 12px monospace;padding:2px 4px}
.get{background:#2a7ae2}.post{background:#2e9a4b}.put{background:#b8860b}.patch{background:#8a4baf}.delete{background:#c0392b}
pre{background:#f5f5f7;padding:.7em;overflow:auto;font-size:12px;max-height:30em}
table{border-collapse:collapse;margin:.3em 0}td,th{border:1px solid #ddd;padding:.3em .6em;vertical-align:top;text-align:left;font-size:13px}
code{font-size:13px}
</style></head><body>
<nav><strong>${esc(doc.info.title)}</strong><br><a href="/api/v1/openapi.json">openapi.json</a><ul>${toc.join('')}</ul></nav>
<main>
<h1>${esc(doc.info.title)} <small>v${esc(doc.info.version)}</small></h1>
<p>${inline(doc.info.description ?? '')}</p>
${sections}
<h2 id="schemas">Schemas</h2>
${schemas}
</main></body></html>
`;
}
