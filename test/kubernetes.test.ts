// Keeps examples/kubernetes/ deployable: every document is validated offline against the
// Kubernetes OpenAPI schema (kubernetes-models, generated from Kubernetes' own schema: types,
// required fields, enums), and what the manifests say about tsgi is checked against tsgi itself:
// the containers' flags parse with the options table, the probes reach /livez and /readyz on the
// --admin port, terminationGracePeriodSeconds outlasts --graceful-timeout + --shutdown-delay, and
// the front resolves the backends' headless Service on the port the backends listen on.
import { readdirSync, readFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseAllDocuments } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Service } from 'kubernetes-models/v1/Service';
import { parseAddress } from '../src/common/address.js';
import { parseOptions } from '../src/common/options.js';

const test = suite('examples/kubernetes');
const DIR = new URL('../../examples/kubernetes/', import.meta.url);

type Doc = { kind: string; metadata: { name: string }; spec: Record<string, any> };

const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  Deployment, Service, PodDisruptionBudget, HorizontalPodAutoscaler,
};

function load(): Doc[] {
  const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml'));
  assert.ok(files.length >= 2, 'front and backend manifests');
  return files.flatMap((f) => parseAllDocuments(readFileSync(new URL(f, DIR), 'utf8')).map((d) => {
    assert.is(d.errors.length, 0, `${f}: ${d.errors.map((e) => e.message).join('; ')}`);
    return d.toJS() as Doc;
  }));
}

const docs = load();
const find = (kind: string, name: string) => {
  const doc = docs.find((d) => d.kind === kind && d.metadata.name === name);
  assert.ok(doc !== undefined, `${kind} ${name}`);
  return doc!;
};

test('every document validates against the Kubernetes schema (and the validator does refuse a wrong one)', () => {
  assert.ok(docs.length >= 8, `${docs.length} documents`);
  for (const doc of docs) {
    const Model = MODELS[doc.kind];
    assert.ok(Model !== undefined, `a validator for ${doc.kind}`);
    try {
      new Model(doc).validate();
    } catch (err) {
      assert.unreachable(`${doc.kind} ${doc.metadata.name}: ${(err as Error).message}`);
    }
  }
  const broken = structuredClone(find('Deployment', 'tsgi-front'));
  broken.spec.template.spec.containers[0].ports[0].containerPort = 'http';
  assert.throws(() => new Deployment(broken as any).validate(), /containerPort must be integer/);
});

/** The container's tsgi command line, parsed as tsgi would. */
function tsgiArgs(deployment: Doc, command: 'front' | 'serve') {
  const container = deployment.spec.template.spec.containers[0];
  const argv = [...container.command, ...container.args] as string[];
  const at = argv.indexOf(command);
  assert.ok(argv.slice(0, at).join(' ').endsWith('tsgi'), `${deployment.metadata.name} runs tsgi ${command}`);
  return { container, values: parseOptions(command, argv.slice(at + 1), {}).values as Record<string, any> };
}

for (const [name, command] of [['tsgi-front', 'front'], ['tsgi-backend', 'serve']] as const) {
  test(`${name}: its flags parse, its probes reach the admin port, its grace period outlasts the drain`, () => {
    const deployment = find('Deployment', name);
    const { container, values } = tsgiArgs(deployment, command);
    const adminPort = container.ports.find((p: { name: string }) => p.name === 'admin').containerPort;
    assert.is(values.admin.port, adminPort);
    assert.is(container.readinessProbe.httpGet.path, '/readyz');
    assert.is(container.livenessProbe.httpGet.path, '/livez');
    assert.is(container.readinessProbe.httpGet.port, 'admin');
    assert.is(container.livenessProbe.httpGet.port, 'admin');
    const grace = deployment.spec.template.spec.terminationGracePeriodSeconds;
    assert.ok(values.shutdownDelay > 0, '--shutdown-delay given');
    assert.ok(grace > values.gracefulTimeout + values.shutdownDelay,
      `terminationGracePeriodSeconds ${grace} > --graceful-timeout ${values.gracefulTimeout} + --shutdown-delay ${values.shutdownDelay}`);
    assert.ok(container.resources.requests.cpu, 'a CPU request (the autoscaler needs it)');
    assert.ok(container.resources.requests.memory, 'a memory request');
    const hpa = find('HorizontalPodAutoscaler', name);
    assert.equal(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name });
    assert.is(hpa.spec.metrics[0].resource.name, 'cpu');
    const pdb = find('PodDisruptionBudget', name);
    assert.equal(pdb.spec.selector.matchLabels, deployment.spec.selector.matchLabels);
    assert.equal(find('Service', name).spec.selector, deployment.spec.selector.matchLabels);
  });
}

test('the front resolves the backends\' headless Service, with mutual TLS, on the port the backends listen on', () => {
  const front = tsgiArgs(find('Deployment', 'tsgi-front'), 'front').values;
  const backend = tsgiArgs(find('Deployment', 'tsgi-backend'), 'serve').values;
  const service = find('Service', 'tsgi-backend');
  assert.is(service.spec.clusterIP, 'None', 'headless');
  assert.is(front.backends.length, 1);
  const target = front.backends[0];
  assert.equal({ discover: target.discover, tls: target.tls }, { discover: 'dns', tls: true });
  assert.ok(target.host.startsWith('tsgi-backend.'), target.host);
  assert.is(service.spec.ports[0].port, target.port);
  assert.is(backend.listen.port, target.port);
  assert.ok(backend.tlsCert && backend.tlsKey && backend.tlsCa, 'the backend serves TLS');
  assert.ok(front.backendTlsCert && front.backendTlsKey && front.backendTlsCa, 'the front shows its certificate');
  assert.equal(parseAddress(`tls:dns:${target.host}:${target.port}`, 'x', true), target);
});

test.run();
