// Values of serve.yaml taken from the environment, so that secrets and per-machine settings stay out of the file:
// `${VAR}` is the variable's value, `${VAR:-default}` the default when it is unset or empty, `$${...}` a literal
// `${...}`. Only string values are read (after YAML parsing, so a value cannot inject YAML); a whole value such as
// `${PORT:-8000}` is then converted by the schema like any other ("8000" -> 8000).
/** A variable that a value names and the environment lacks; `at` is the value's path in the document. */
export interface Unset {
    at: Array<string | number>;
    message: string;
}

const reference = /\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** The document with every reference in its string values replaced, and an issue for each variable that is unset. */
export function substitute(doc: unknown, env: NodeJS.ProcessEnv = process.env): { value: unknown; issues: Unset[] } {
    const issues: Unset[] = [];
    const walk = (v: unknown, at: Array<string | number>): unknown => {
        if (typeof v === 'string') {
            return v.includes('${') ? v.replace(reference, (whole, escaped: string, name: string, fallback?: string) => {
                if (escaped) {
                    return whole.slice(1);
                }
                const value = env[name];
                if (value !== undefined && value !== '') {
                    return value;
                }
                if (fallback === undefined) {
                    issues.push({ at, message: `environment variable ${name} is not set (write \${${name}:-default} to give a default)` });
                }
                return fallback ?? '';
            }) : v;
        }
        if (Array.isArray(v)) {
            return v.map((x, i) => walk(x, [...at, i]));
        }
        if (v && typeof v === 'object') {
            return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, [...at, k])]));
        }
        return v;
    };
    return { value: walk(doc, []), issues };
}
