// `tsserve k8s`: the manifests written from serve.yaml are valid Kubernetes objects by the Kubernetes OpenAPI schemas
// (kubernetes-models and its Prometheus Operator and KEDA packages, which ship them: no check of our own), the ones in
// config/kubernetes/ are exactly what the repo's serve.yaml generates (no drift), and what they hold follows from the
// config: the grace period above every graceful_shutdown_timeout_s, CPUs from the replicas' resources.cpus, paths
// inside the image, keys from a Secret.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';
import { cliHere, fixtures } from './helpers';

const tsserve = cliHere();
const root = path.join(__dirname, '..');
// kubernetes-models is ECMAScript modules only: imported as such, not through the CommonJS require() TypeScript makes of import()
const importEsm = new Function('m', 'return import(m)') as (m: string) => Promise<Record<string, new (data: unknown) => { validate(): void }>>;

/** Each manifest validated by the model class of its apiVersion and kind; resolves with the kinds, in order. */
async function validated(t: { doesNotThrow(fn: () => void, message: string): unknown }, text: string): Promise<string[]> {
    const modules: Record<string, string> = {
        v1: 'kubernetes-models/v1', 'apps/v1': 'kubernetes-models/apps/v1', 'policy/v1': 'kubernetes-models/policy/v1',
        'autoscaling/v2': 'kubernetes-models/autoscaling/v2', 'monitoring.coreos.com/v1': '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1',
        'keda.sh/v1alpha1': '@kubernetes-models/keda/keda.sh/v1alpha1'
    };
    const kinds: string[] = [];
    for (const doc of yaml.loadAll(text) as Array<{ apiVersion: string; kind: string }>) {
        const Model = (await importEsm(modules[doc.apiVersion]))[doc.kind];
        t.doesNotThrow(() => new Model(doc).validate(), `${doc.apiVersion} ${doc.kind} is valid`);
        kinds.push(doc.kind);
    }
    return kinds;
}

t.test('the manifests in config/kubernetes/ are what the repo\'s serve.yaml generates, and valid', async (t) => {
    for (const [file, args] of [['tsserve.yaml', []], ['tsserve-keda.yaml', ['--autoscaler', 'keda']]] as const) {
        const r = await tsserve(['k8s', path.join(root, 'serve.yaml'), ...args]);
        t.equal(r.code, 0);
        t.equal(r.stdout, fs.readFileSync(path.join(root, 'config', 'kubernetes', file), 'utf8'), `config/kubernetes/${file} has not drifted (regenerate: tsserve k8s serve.yaml ${args.join(' ')} > config/kubernetes/${file})`);
        t.same(await validated(t, r.stdout), ['ConfigMap', 'Deployment', 'Service', 'PodDisruptionBudget', 'ServiceMonitor', args.length ? 'ScaledObject' : 'HorizontalPodAutoscaler']);
    }
});

t.test('what the manifests hold follows from serve.yaml', async (t) => {
    const dir = fixtures();
    fs.mkdirSync(path.join(dir, 'sub'));
    fs.copyFileSync(path.join(dir, 'mlp.onnx'), path.join(dir, 'sub', 'm.onnx'));
    fs.writeFileSync(path.join(dir, 'keys.txt'), 'short\n');
    fs.writeFileSync(path.join(dir, 'serve.yaml'), `
http_options: { port: 9000 }
max_cpus: 9
auth: { api_keys: { env: TSSERVE_TEST_KEYS }, admin_keys: { file: ./keys.txt } }
applications:
  - name: a
    deployments:
      - { name: fixed, model: { path: ./sub/m.onnx }, num_replicas: 2, resources: { cpus: 2 }, graceful_shutdown_timeout_s: 45 }
  - name: b
    deployments:
      - { name: auto, model: { path: "${path.join(dir, 'mlp.onnx')}" }, autoscaling_config: { min_replicas: 0, max_replicas: 8, target_ongoing_requests: 3 } }
`);
    // (the variable is unset here, and the key file holds no key: the keys are the pod's, not needed to write manifests)
    const r = await tsserve(['k8s', path.join(dir, 'serve.yaml'), '--image', 'registry.example/tsserve:1', '--namespace', 'models']);
    t.equal(r.code, 0, r.stderr);
    t.same(await validated(t, r.stdout), ['ConfigMap', 'Deployment', 'Service', 'PodDisruptionBudget', 'ServiceMonitor', 'HorizontalPodAutoscaler']);
    const [configMap, deployment, , , , hpa] = yaml.loadAll(r.stdout) as any[];
    t.ok([configMap, deployment, hpa].every((m) => m.metadata.namespace === 'models'), 'in the namespace asked for');
    const pod = yaml.load(configMap.data['serve.yaml']) as any;
    t.same([pod.applications[0].deployments[0].model.path, pod.applications[1].deployments[0].model.path, pod.auth.admin_keys.file],
        ['/app/sub/m.onnx', path.join(dir, 'mlp.onnx'), '/app/keys.txt'], 'relative paths under /app, absolute ones as they are');
    const spec = deployment.spec.template.spec;
    const c = spec.containers[0];
    t.equal(spec.terminationGracePeriodSeconds, 45 + 5 + 10, 'the grace period: the longest graceful_shutdown_timeout_s, the preStop sleep, and a margin');
    t.same(c.lifecycle.preStop.exec.command, ['sleep', '5']);
    t.same([c.image, c.imagePullPolicy, c.args], ['registry.example/tsserve:1', 'IfNotPresent', ['up', '/etc/tsserve/serve.yaml', '--host', '0.0.0.0']]);
    t.same(c.ports, [{ name: 'http', containerPort: 9000 }]);
    t.same([c.startupProbe.httpGet.path, c.readinessProbe.httpGet.path, c.livenessProbe.httpGet.path], ['/-/healthz', '/-/ready', '/-/healthz']);
    t.same(c.resources.requests.cpu, '6', 'requests: the front, 2 replicas x 2 CPUs, and the autoscaled one\'s first replica');
    t.same(c.resources.limits.cpu, '10', 'limits: the front and max_cpus, which the autoscaler grows within');
    t.match(c.resources.requests.memory, /^\d+Mi$/);
    t.same(c.env, [{ name: 'TSSERVE_TEST_KEYS', valueFrom: { secretKeyRef: { name: 'tsserve-keys', key: 'TSSERVE_TEST_KEYS' } } }], 'keys from the environment come from a Secret');
    t.same(hpa.spec.metrics[0].pods, { metric: { name: 'tsserve_ongoing_requests' }, target: { type: 'AverageValue', averageValue: '7' } }, 'a pod is sized for 2 x 2 + 1 x 3 ongoing requests');

    const keda = await tsserve(['k8s', path.join(dir, 'serve.yaml'), '--autoscaler', 'keda', '--namespace', 'models', '--prometheus', 'http://prom:9090']);
    const scaled = (yaml.loadAll(keda.stdout) as any[])[5];
    t.same(scaled.spec.triggers[0].metadata, { serverAddress: 'http://prom:9090', query: 'sum(tsserve_deployment_ongoing_requests{service="tsserve",namespace="models"})', threshold: '7' });
    const bad = await tsserve(['k8s', path.join(dir, 'serve.yaml'), '--autoscaler', 'vpa']);
    t.same([bad.code, bad.stderr], [2, '--autoscaler must be hpa or keda, got "vpa"\n']);
});
