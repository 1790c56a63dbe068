// nginx for the peer configurations: 2 workers in the foreground under a master, everything
// (prefix, pid, logs, temp files) in a directory of the run, in front of one upstream — an
// HTTP backend on a Unix socket (proxy_pass, upstream keepalive) or a uwsgi one (uwsgi_pass).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { start, waitForListen, type Proc } from './proc.js';

export type Upstream = { kind: 'http'; socket: string } | { kind: 'uwsgi'; socket: string };

/** nginx's own uwsgi_params (conf/uwsgi_params in its sources). */
export const UWSGI_PARAMS: readonly [string, string][] = [
  ['QUERY_STRING', '$query_string'], ['REQUEST_METHOD', '$request_method'],
  ['CONTENT_TYPE', '$content_type'], ['CONTENT_LENGTH', '$content_length'],
  ['REQUEST_URI', '$request_uri'], ['PATH_INFO', '$document_uri'], ['DOCUMENT_ROOT', '$document_root'],
  ['SERVER_PROTOCOL', '$server_protocol'], ['REQUEST_SCHEME', '$scheme'], ['HTTPS', '$https if_not_empty'],
  ['REMOTE_ADDR', '$remote_addr'], ['REMOTE_PORT', '$remote_port'], ['SERVER_PORT', '$server_port'],
  ['SERVER_NAME', '$server_name'],
];

function location(upstream: Upstream): string {
  if (upstream.kind === 'http') {
    return `      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_max_temp_file_size 0;`;
  }
  return `${UWSGI_PARAMS.map(([k, v]) => `      uwsgi_param ${k} ${v};`).join('\n')}
      uwsgi_pass backend;
      uwsgi_max_temp_file_size 0;`;
}

/**
 * The start of every benchmark nginx config, up to inside `http {`: a foreground master, its
 * files under `dir`, no access log, temp paths of its own.
 */
export function nginxPreamble(dir: string, { workers, connections }: { workers: number; connections: number }): string {
  // The master runs as whoever runs the benchmark; as root, keep the workers root too, so they
  // can reach sockets in the run's private (0700) directory.
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  return `${user}daemon off;
master_process on;
worker_processes ${workers};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
worker_rlimit_nofile ${connections * 2};
events { worker_connections ${connections}; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;`;
}

export function nginxConf(dir: string, port: number, upstream: Upstream): string {
  const keepalive = upstream.kind === 'http' ? '    keepalive 1024;\n' : '';
  return `${nginxPreamble(dir, { workers: 2, connections: 8192 })}
  client_max_body_size 0;
  client_body_buffer_size 16m;
  keepalive_requests 1000000;
  keepalive_timeout 65;
  upstream backend {
    server unix:${upstream.socket};
${keepalive}  }
  server {
    listen 127.0.0.1:${port};
    server_name ubuntu;
    location / {
${location(upstream)}
    }
  }
}
`;
}

/** Writes the config into `dir`/nginx and starts nginx; resolves once it accepts connections. */
export async function startNginx(nginx: string, dir: string, port: number, upstream: Upstream): Promise<Proc> {
  const prefix = join(dir, 'nginx');
  mkdirSync(prefix, { recursive: true });
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(conf, nginxConf(prefix, port, upstream));
  const proc = start('nginx', nginx, ['-p', prefix, '-c', conf, '-e', join(prefix, 'error.log')]);
  await waitForListen({ port }, proc);
  return proc;
}

/** The most frequent error in an nginx prefix's error.log, with its count (null if none). */
export function nginxErrorSummary(dir: string): string | null {
  let text: string;
  try {
    text = readFileSync(join(dir, 'nginx', 'error.log'), 'utf8');
  } catch {
    return null;
  }
  const counts = new Map<string, number>();
  for (const m of text.matchAll(/\[(?:error|crit|alert|emerg)\] \d+#\d+: (?:\*\d+ )?(.*?)(?:, client: .*)?$/gm)) {
    const message = m[1]!.replace(/unix:\S+/g, 'unix:…');
    counts.set(message, (counts.get(message) ?? 0) + 1);
  }
  const top = [...counts.entries()].sort((a, b) => b[1] - a[1])[0];
  return top === undefined ? null : `nginx error.log: ${top[1]}× "${top[0]}"`;
}
