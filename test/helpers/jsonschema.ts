// A small JSON Schema (2020-12 subset) checker for tests: enough to check API responses against
// the schemas of the served OpenAPI document (type, properties, required, additionalProperties,
// items, enum, const, anyOf/oneOf, $ref into the document, min/max).
export function checkSchema(doc: any, schema: any, value: unknown, path = '$'): string[] {
  if (schema === true || schema === undefined || (schema && Object.keys(schema).length === 0)) return [];
  if (schema.$ref) {
    let target = doc;
    for (const part of String(schema.$ref).replace(/^#\//, '').split('/')) target = target?.[part];
    if (!target) return [`${path}: unresolved $ref ${schema.$ref}`];
    return checkSchema(doc, target, value, path);
  }
  const anyOf = schema.anyOf ?? schema.oneOf;
  if (anyOf) {
    const results = anyOf.map((s: any) => checkSchema(doc, s, value, path));
    if (!results.some((r: string[]) => r.length === 0)) return [`${path}: matches none of anyOf (${results.map((r: string[]) => r[0]).join(' | ')})`];
    if (Object.keys(schema).every((k) => k === 'anyOf' || k === 'oneOf' || k === 'description')) return [];
  }
  const errs: string[] = [];
  if (schema.type !== undefined) {
    const types: string[] = Array.isArray(schema.type) ? schema.type : [schema.type];
    const actual = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
    const ok = types.some((t) => t === actual || (t === 'integer' && typeof value === 'number' && Number.isInteger(value)));
    if (!ok) return [`${path}: expected ${types.join('|')}, got ${actual}`];
  }
  if (schema.const !== undefined && value !== schema.const) errs.push(`${path}: expected ${JSON.stringify(schema.const)}`);
  if (schema.enum && !schema.enum.includes(value)) errs.push(`${path}: ${JSON.stringify(value)} not in ${JSON.stringify(schema.enum)}`);
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) errs.push(`${path}: below minimum`);
    if (schema.maximum !== undefined && value > schema.maximum) errs.push(`${path}: above maximum`);
  }
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    for (const r of schema.required ?? []) if (!(r in obj)) errs.push(`${path}.${r}: required`);
    for (const [k, v] of Object.entries(obj)) {
      const sub = schema.properties?.[k];
      if (sub !== undefined) errs.push(...checkSchema(doc, sub, v, `${path}.${k}`));
      else if (schema.additionalProperties === false) errs.push(`${path}.${k}: not in the schema`);
      else if (schema.additionalProperties && typeof schema.additionalProperties === 'object') errs.push(...checkSchema(doc, schema.additionalProperties, v, `${path}.${k}`));
    }
  }
  if (Array.isArray(value) && schema.items) value.forEach((v, i) => errs.push(...checkSchema(doc, schema.items, v, `${path}[${i}]`)));
  return errs;
}
