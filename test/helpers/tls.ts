// Certificates made for a test with Debian's openssl: a CA, and server pairs it signed for
// 127.0.0.1 and localhost. Made in a temporary directory, never committed.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Pair {
  cert: string;
  key: string;
}

function openssl(dir: string, args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr || r.error?.message}`);
}

/** A CA in `dir`: ca.pem and ca-key.pem. */
export function makeCa(dir: string): string {
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca.pem',
    '-days', '2', '-subj', '/CN=tsgi test CA']);
  return join(dir, 'ca.pem');
}

/** A server pair NAME.pem / NAME-key.pem for 127.0.0.1 and localhost, signed by the CA in `dir`. */
export function makeServerPair(dir: string, name: string): Pair {
  openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}-key.pem`, '-out', `${name}.csr`,
    '-subj', `/CN=${name}`]);
  const ext = join(dir, `${name}.ext`);
  spawnSync('sh', ['-c', `printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ${ext}`]);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial',
    '-out', `${name}.pem`, '-days', '2', '-extfile', ext]);
  return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}-key.pem`) };
}

export const readPem = (path: string): Buffer => readFileSync(path);
