// Checks every interop pairing runs the same way, whatever sits between the client and the app:
// a 20 MB upload (curl), a 20 MB download (undici), and a response that streams.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Agent, request } from 'undici';
import * as assert from 'uvu/assert';
import { digestOf } from '../helpers/bodies.js';
import { curl, interopDigest, uploadFile } from '../helpers/interop.js';

export const MB = 20;

/** POST a 20 MB file with curl; the app answers its size and sha256. */
export async function checkUpload(url: string, dir: string): Promise<void> {
  const file = uploadFile(dir, MB);
  const r = await curl(`${url}/upload`, ['--data-binary', `@${file.path}`, '-H', 'Content-Type: application/octet-stream']);
  assert.is(r.status, 200, `${r.body}\n${r.stderr}`);
  const got = JSON.parse(r.body) as { size: number; sha256: string };
  assert.is(got.size, file.size);
  assert.is(got.sha256, file.sha256);
}

/** GET 20 MB with undici, hashing as it streams in. */
export async function checkDownload(url: string, agent: Agent): Promise<void> {
  const res = await request(`${url}/download?mb=${MB}`, { dispatcher: agent });
  assert.is(res.statusCode, 200);
  assert.is(res.headers['content-length'], String(MB * 1024 * 1024));
  assert.equal(await digestOf(res.body), { bytes: MB * 1024 * 1024, sha256: interopDigest(MB) });
}

/**
 * The app sends a first line, then waits for a gate file before the rest: the client reads the
 * first line while the app is still waiting, so nothing on the way buffered the response.
 */
export async function checkStreaming(url: string, agent: Agent, dir: string): Promise<void> {
  const gate = join(dir, `gate-${Math.random().toString(36).slice(2)}`);
  const res = await request(`${url}/stream?gate=${encodeURIComponent(gate)}`, { dispatcher: agent });
  assert.is(res.statusCode, 200);
  const it = res.body[Symbol.asyncIterator]();
  let text = '';
  while (!text.includes('\n')) {
    const r = await it.next();
    assert.not.ok(r.done, 'the body ended before the first line');
    text += (r.value as Buffer).toString();
  }
  assert.is(text, 'line 1\n', 'the first line arrives on its own, before the app may go on');
  assert.not.ok(existsSync(gate));
  writeFileSync(gate, '');
  for (;;) {
    const r = await it.next();
    if (r.done) break;
    text += (r.value as Buffer).toString();
  }
  assert.is(text, 'line 1\nline 2\nline 3\n');
}

/**
 * The app sends its head alone (write('')) and its event only once a gate file exists: the
 * client has the head while the app still waits, so nothing on the way held the head back.
 */
export async function checkHeadFirst(url: string, agent: Agent, dir: string): Promise<void> {
  const gate = join(dir, `gate-${Math.random().toString(36).slice(2)}`);
  const res = await request(`${url}/events?gate=${encodeURIComponent(gate)}`, { dispatcher: agent, headersTimeout: 8000 });
  assert.is(res.statusCode, 200);
  assert.is(res.headers['content-type'], 'text/event-stream');
  assert.not.ok(existsSync(gate), 'the head came while the app was still waiting');
  writeFileSync(gate, '');
  assert.is(await res.body.text(), 'data: 1\n\n');
}
