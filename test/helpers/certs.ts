// Certificates for the TLS tests, made with the openssl command in a temp directory (never
// committed): a CA, a backend certificate with the SANs asked for, a front (client) certificate,
// and on demand certificates from a second CA that the other side does not trust.
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './procs.js';

export interface CertFiles {
  cert: string;
  key: string;
}

export interface Pki {
  dir: string;
  ca: string;
  /** Issues a certificate signed by this CA (SANs as `DNS:name` / `IP:1.2.3.4`). */
  issue(name: string, sans: string[], usage: 'serverAuth' | 'clientAuth' | 'serverAuth,clientAuth'): CertFiles;
  remove(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A fresh CA in its own temp directory. */
export function makePki(caName = 'tsgi test CA'): Pki {
  const dir = tempDir('tsgi-pki-');
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', `/CN=${caName}`, '-keyout', 'ca.key', '-out', 'ca.pem'], dir);
  let serial = 0;
  return {
    dir,
    ca: join(dir, 'ca.pem'),
    issue(name, sans, usage) {
      const base = `${name}-${++serial}`;
      const ext = join(dir, `${base}.ext`);
      writeFileSync(ext, [
        'basicConstraints=CA:FALSE',
        `extendedKeyUsage=${usage}`,
        ...(sans.length > 0 ? [`subjectAltName=${sans.join(',')}`] : []),
      ].join('\n') + '\n');
      openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${name}`,
        '-keyout', `${base}.key`, '-out', `${base}.csr`], dir);
      openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
        '-days', '2', '-extfile', ext, '-out', `${base}.pem`], dir);
      return { cert: join(dir, `${base}.pem`), key: join(dir, `${base}.key`) };
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
