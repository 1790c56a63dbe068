// The same Express hello route served two ways in one run — on plain node:http, and by
// `tsgi serve` (through fromNodeHandler) behind `tsgi front` — and the ratio of their req/s;
// beside them, the gateway hello app (examples/hello.js) on tsgi: the bridge without Express.
//   npm run build --silent && node dist/bench/express.js      (BENCH_SECONDS, BENCH_CONNECTIONS)
import { join } from 'node:path';
import { pickGenerator, type LoadResult } from './loadgen.js';
import { machineLines } from './machine.js';
import { APPS, CLI, ROOT, freePort, installCleanup, start, stopAll, tempDir, waitForListen, type Proc } from './proc.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const APP = join(APPS, 'express-hello.js');

let dir: string | null = null;
installCleanup(() => dir);

async function measure(url: string, gen: Awaited<ReturnType<typeof pickGenerator>>): Promise<LoadResult> {
  await gen.run({ url, seconds: 1, connections: CONNECTIONS, method: 'GET' }); // warm-up
  return gen.run({ url, seconds: SECONDS, connections: CONNECTIONS, method: 'GET' });
}

function line(label: string, r: LoadResult): string {
  const rps = r.requests / r.seconds;
  return `${label.padEnd(28)} ${rps.toFixed(0).padStart(8)} req/s   p50 ${(r.p50Us / 1000).toFixed(2)} ms   p99 ${(r.p99Us / 1000).toFixed(2)} ms`
    + (r.errors > 0 ? `   errors: ${r.errorDetail}` : '');
}

async function main(): Promise<void> {
  dir = tempDir('tsgi-bench-express-');
  const gen = await pickGenerator(dir);
  for (const l of machineLines()) console.log(l);
  console.log(`load: ${gen.name}; ${CONNECTIONS} connections, ${SECONDS} s per cell after 1 s of warm-up\n`);

  const port = await freePort();
  const bare: Proc = start('express on node:http', process.execPath, [APP, `127.0.0.1:${port}`]);
  await waitForListen({ port }, bare);
  const plain = await measure(`http://127.0.0.1:${port}/hello`, gen);
  await bare.stop();

  /** `tsgi serve app` behind `tsgi front`, measured, stopped. */
  const viaTsgi = async (app: string, path: string): Promise<LoadResult> => {
    const socket = join(dir!, `serve-${path.slice(1)}.sock`);
    const serve = start('tsgi serve', process.execPath, [CLI, 'serve', app, '--socket', socket, '--graceful-timeout', '2']);
    await serve.waitFor(/serving on unix:/);
    const frontPort = await freePort();
    const front = start('tsgi front', process.execPath,
      [CLI, 'front', '--listen', `127.0.0.1:${frontPort}`, '--backend', `unix:${socket}`, '--graceful-timeout', '2']);
    await front.waitFor(/listening on http /);
    const r = await measure(`http://127.0.0.1:${frontPort}${path}`, gen);
    await front.stop();
    await serve.stop();
    return r;
  };
  const bridged = await viaTsgi(APP, '/hello');
  const gateway = await viaTsgi(join(ROOT, 'examples/hello.js'), '/');

  console.log(line('express on node:http', plain));
  console.log(line('express on tsgi (front+serve)', bridged));
  console.log(line('gateway hello on tsgi', gateway));
  const ratio = (bridged.requests / bridged.seconds) / (plain.requests / plain.seconds);
  console.log(`\nratio tsgi / node:http: ${ratio.toFixed(2)}`);
}

main().then(() => stopAll(), async (err: unknown) => {
  console.error(err);
  await stopAll();
  process.exitCode = 1;
});
