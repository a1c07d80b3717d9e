// parse-prometheus-text-format ships no types: what test/observe.test.ts uses of it.
declare module 'parse-prometheus-text-format' {
    /** The metric families of a Prometheus text exposition, each with its samples. */
    export default function parsePrometheusTextFormat(text: string): unknown[];
}
