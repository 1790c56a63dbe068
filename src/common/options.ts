// The one declarative table of options. Every option has a flag, an environment variable, a
// default, a check and a line of help; the CLI parser, the environment and `--help` are all
// driven from it, and a bad value stops start-up with a message that says what to use.
import { readFileSync } from 'node:fs';
import { DEFAULTS } from '../protocol/constants.js';
import { ConfigError } from '../protocol/errors.js';
import { type Address, parseAddress } from './address.js';
import { LOG_LEVELS, type LogLevel } from './log.js';
import { parseTrustProxy } from './trust-proxy.js';

export type Command = 'front' | 'serve' | 'run' | 'demo' | 'ctl';

type Kind = 'string' | 'strings' | 'int' | 'seconds' | 'bytes' | 'address' | 'addresses' | 'mode' | 'level' | 'proxies'
  | 'choice' | 'mounts' | 'bool';

/** Kinds whose values are lists: a repeated flag adds to the list, and a config file may give an array. */
const LIST_KINDS: ReadonlySet<Kind> = new Set(['strings', 'addresses', 'proxies', 'mounts']);

/** A `--static /PREFIX=DIR` mount: URLs under prefix are files under dir. */
export interface StaticMount {
  /** URL prefix, starting and (unless '/') not ending with '/'. */
  prefix: string;
  /** Directory, as given (resolved against the working directory at start). */
  dir: string;
}

interface OptionSpec {
  /** Key in the parsed config object. */
  key: string;
  flag: string;
  env?: string;
  kind: Kind;
  default?: unknown;
  commands: readonly Command[];
  help: string;
  min?: number;
  max?: number;
  /** For kind 'choice': the values accepted. */
  choices?: readonly string[];
  /** The value's name in --help (`--workers N`); the kind's usual one when left out. */
  meta?: string;
  /** A one-letter form (`-w`), for the options given most often. */
  short?: string;
  /** Other long names taking the same value (`--bind` for `--listen`). */
  aliases?: readonly string[];
}

/** The metavariable each kind shows in --help, unless its row names one. */
const META: Record<Kind, string> = {
  string: 'PATH', int: 'N', seconds: 'SECONDS', bytes: 'SIZE', address: 'ADDR', addresses: 'ADDR', mode: 'MODE',
  level: 'LEVEL', proxies: 'PEERS', choice: 'CHOICE', mounts: '/PREFIX=DIR', bool: '', strings: 'VALUE',
};

/**
 * How --help groups the options, in this order; an option in no group is listed under
 * "Other options".
 */
const GROUPS: readonly (readonly [string, readonly string[]])[] = [
  ['Application and addresses', ['appModule', 'listen', 'port', 'socket', 'uwsgiSocket', 'uwsgiListen', 'backends', 'dnsServers', 'dnsInterval', 'control', 'controlListen',
    'register', 'advertise', 'scriptName', 'static', 'staticDotfiles', 'reload', 'config', 'check']],
  ['Processes', ['workers', 'processes', 'timeout', 'maxRequests', 'maxRequestsJitter', 'gracefulTimeout', 'shutdownDelay']],
  ['TLS and HTTP/2', ['tlsCert', 'tlsKey', 'tlsCa', 'tlsMinVersion', 'http2', 'backendTlsCert', 'backendTlsKey', 'backendTlsCa',
    'backendTlsServername']],
  ['Trust and access', ['trustProxy', 'controlAllow', 'socketMode']],
  ['Timeouts', ['responseTimeout', 'queueTimeout', 'keepAliveTimeout', 'headersTimeout', 'bodyTimeout', 'sendTimeout',
    'lingerTimeout', 'pingInterval', 'pingTimeout']],
  ['Limits', ['queueSize', 'maxConcurrentStreams', 'maxHeaderSize', 'maxHeaders', 'maxBodySize', 'maxConnections', 'maxInFlight',
    'maxResponseHeaderSize', 'maxRequestHeaderSize', 'maxStreams', 'window', 'maxFrameSize']],
  ['Logs, metrics and tracing', ['logLevel', 'accessLog', 'logFormat', 'admin', 'requestIdHeader', 'otlpEndpoint']],
];

/** The rows, as written (their literal types give the Options types below). */
const TABLE = [
  // front
  { key: 'listen', flag: '--listen', short: '-b', aliases: ['--bind'], env: 'TSGI_LISTEN', kind: 'address',
    commands: ['front', 'serve', 'run'], meta: 'HOST:PORT|unix:PATH',
    help: 'front and run: HTTP address; serve: tsgi address' },
  { key: 'backends', flag: '--backend', env: 'TSGI_BACKENDS', kind: 'addresses', default: [], commands: ['front'],
    help: 'backend address: unix:PATH or tcp:HOST:PORT (uwsgi:unix:PATH or uwsgi:tcp:HOST:PORT for a uWSGI server); repeat for several (env: comma-separated)' },
  { key: 'trustProxy', flag: '--trust-proxy', env: 'TSGI_TRUST_PROXY', kind: 'proxies', default: [], commands: ['front'],
    help: 'peers whose X-Forwarded-For / X-Forwarded-Proto / X-Real-IP are believed: loopback, unix, or CIDRs (comma-separated or repeated); nobody by default' },
  { key: 'responseTimeout', flag: '--response-timeout', env: 'TSGI_RESPONSE_TIMEOUT', kind: 'seconds', default: 60,
    commands: ['front'], help: 'seconds to wait for a response head from the backend, from the end of the request body, before answering 504' },
  { key: 'queueTimeout', flag: '--queue-timeout', env: 'TSGI_QUEUE_TIMEOUT', kind: 'seconds', default: 5,
    commands: ['front'], help: 'seconds a request waits for a ready backend before 503' },
  { key: 'queueSize', flag: '--queue-size', env: 'TSGI_QUEUE_SIZE', kind: 'int', default: 1024, min: 0,
    commands: ['front'], help: 'requests that may wait for a ready backend; beyond it, 503 at once' },
  { key: 'keepAliveTimeout', flag: '--keep-alive-timeout', kind: 'seconds', default: 5, commands: ['front'],
    help: 'seconds an idle client connection is kept open' },
  { key: 'headersTimeout', flag: '--headers-timeout', kind: 'seconds', default: 30, commands: ['front'],
    help: 'seconds a client has to send the complete request head' },
  { key: 'maxHeaderSize', flag: '--max-header-size', kind: 'bytes', default: 16384, min: 1024, commands: ['front'],
    help: 'largest request head accepted (bytes); larger ones get 431' },
  { key: 'maxHeaders', flag: '--max-headers', kind: 'int', default: 100, min: 1, max: 10000, commands: ['front'],
    help: 'most header fields accepted in a request head; more get 431' },
  { key: 'maxBodySize', flag: '--max-body-size', env: 'TSGI_MAX_BODY_SIZE', kind: 'bytes', default: 100 * 1024 * 1024, min: 0,
    commands: ['front'], help: 'largest request body accepted (bytes; 0: no limit); larger ones get 413' },
  { key: 'bodyTimeout', flag: '--body-timeout', kind: 'seconds', default: 30, commands: ['front'],
    help: 'seconds a request body may go without a byte arriving before 408 (0: no limit)' },
  { key: 'sendTimeout', flag: '--send-timeout', env: 'TSGI_SEND_TIMEOUT', kind: 'seconds', default: 60, commands: ['front'],
    help: 'seconds a response may go without the client reading a byte; then it is abandoned and the connection closed (0: no limit)' },
  { key: 'lingerTimeout', flag: '--linger-timeout', kind: 'seconds', default: 5, commands: ['front'],
    help: 'seconds a connection the front is done with (after a close or a refusal) is read and dropped at most, and an unread request body at most, before it is closed' },
  { key: 'maxConnections', flag: '--max-connections', env: 'TSGI_MAX_CONNECTIONS', kind: 'int', default: 10000, min: 0,
    commands: ['front'], help: 'client connections open at once (0: no limit); beyond it, new ones are answered 503 and closed' },
  { key: 'maxInFlight', flag: '--max-in-flight', env: 'TSGI_MAX_IN_FLIGHT', kind: 'int', default: 0, min: 0,
    commands: ['front'], help: 'requests in flight to backends at once (0: no limit); beyond it, 503 with Retry-After at once' },
  { key: 'maxTunnels', flag: '--max-tunnels', env: 'TSGI_MAX_TUNNELS', kind: 'int', default: 1000, min: 0, commands: ['front'],
    help: 'upgraded connections (WebSocket tunnels) open at once per front process, those being set up included (0: no limit); beyond it, an upgrade request gets 503' },
  { key: 'tunnelIdleTimeout', flag: '--tunnel-idle-timeout', env: 'TSGI_TUNNEL_IDLE_TIMEOUT', kind: 'seconds', default: 300,
    commands: ['front'], help: 'seconds an upgraded connection may pass no byte either way before it is closed (0: no limit); --response-timeout ends at the 101' },
  { key: 'static', flag: '--static', env: 'TSGI_STATIC', kind: 'mounts', default: [], commands: ['front'],
    help: 'serve files: /PREFIX=DIR (repeat for several; env: comma-separated); the longest matching prefix wins, other URLs go to the backends' },
  { key: 'staticDotfiles', flag: '--static-dotfiles', kind: 'choice', choices: ['ignore', 'deny', 'allow'], default: 'ignore',
    commands: ['front'], help: 'dotfiles under --static: ignore (404), deny (403) or allow' },
  { key: 'accessLog', flag: '--access-log', env: 'TSGI_ACCESS_LOG', kind: 'string', meta: 'FILE', commands: ['front'],
    help: 'write an access log line per request to FILE, or - for stdout (off by default)' },
  { key: 'logFormat', flag: '--log-format', env: 'TSGI_LOG_FORMAT', kind: 'choice', choices: ['combined', 'common', 'json'],
    default: 'combined', commands: ['front'], help: 'access log format: combined, common or json (lines)' },
  { key: 'control', flag: '--control', env: 'TSGI_CONTROL', kind: 'string', commands: ['front', 'serve', 'ctl'],
    help: 'front: Unix socket for backend registration and tsgi ctl; serve: Unix socket for tsgi ctl (list, scale, reload the workers); ctl: the control socket to talk to' },
  { key: 'controlListen', flag: '--control-listen', env: 'TSGI_CONTROL_LISTEN', kind: 'address', commands: ['front'],
    help: 'HOST:PORT where backends on other hosts register (tsgi serve --register tls:HOST:PORT): mutual TLS with the --backend-tls-* files' },
  { key: 'controlAllow', flag: '--control-allow', env: 'TSGI_CONTROL_ALLOW', kind: 'proxies', default: ['unix', 'loopback'],
    commands: ['front'], help: 'backend addresses the control socket may add: unix, loopback, IP addresses or CIDRs (comma-separated or repeated; replaces the default)' },
  { key: 'tlsCert', flag: '--tls-cert', env: 'TSGI_TLS_CERT', kind: 'string', commands: ['front', 'serve'],
    help: 'front: serve HTTPS on --listen: the certificate (PEM; its chain after it in the same file); needs --tls-key; '
      + 'serve: --listen HOST:PORT speaks mutual TLS to fronts (with --tls-key and --tls-ca); SIGHUP reloads it' },
  { key: 'tlsKey', flag: '--tls-key', env: 'TSGI_TLS_KEY', kind: 'string', commands: ['front', 'serve'],
    help: 'the private key of --tls-cert (PEM)' },
  { key: 'tlsMinVersion', flag: '--tls-min-version', kind: 'choice', choices: ['TLSv1.2', 'TLSv1.3'], default: 'TLSv1.2',
    commands: ['front'], help: 'oldest TLS version accepted: TLSv1.2 or TLSv1.3' },
  { key: 'http2', flag: '--http2', kind: 'choice', choices: ['on', 'off'], default: 'on', commands: ['front'],
    help: 'HTTP/2 for clients: h2 by ALPN with TLS, h2c with prior knowledge (the connection preface) on the same port; off: HTTP/1.1 alone' },
  { key: 'maxConcurrentStreams', flag: '--max-concurrent-streams', kind: 'int', default: 100, min: 1, max: 65535,
    commands: ['front'], help: 'HTTP/2 streams a client may have open on one connection' },
  { key: 'backendTlsCa', flag: '--backend-tls-ca', env: 'TSGI_BACKEND_TLS_CA', kind: 'string', commands: ['front'],
    help: 'PEM CA file that signs the certificates of tls: backends (with --backend-tls-cert and --backend-tls-key; re-read on SIGHUP)' },
  { key: 'backendTlsCert', flag: '--backend-tls-cert', env: 'TSGI_BACKEND_TLS_CERT', kind: 'string', commands: ['front'],
    help: 'PEM certificate the front shows tls: backends (mutual TLS)' },
  { key: 'backendTlsKey', flag: '--backend-tls-key', env: 'TSGI_BACKEND_TLS_KEY', kind: 'string', commands: ['front'],
    help: 'PEM private key of --backend-tls-cert' },
  { key: 'backendTlsServername', flag: '--backend-tls-servername', env: 'TSGI_BACKEND_TLS_SERVERNAME', kind: 'string', meta: 'NAME', commands: ['front'],
    help: 'name every tls: backend\'s certificate must carry (default: the HOST, or the NAME of a dns:/srv: backend)' },
  { key: 'dnsInterval', flag: '--dns-interval', kind: 'seconds', default: 5, commands: ['front'],
    help: 'seconds between resolutions of dns: and srv: backends at most (sooner when the records\' TTL is shorter, but not under 1 s)' },
  { key: 'dnsServers', flag: '--dns-server', env: 'TSGI_DNS_SERVERS', kind: 'strings', meta: 'IP[:PORT]', default: [], commands: ['front'],
    help: 'DNS server (IP[:PORT]) for dns: and srv: backends instead of the system\'s (/etc/resolv.conf); repeat for several' },
  { key: 'maxResponseHeaderSize', flag: '--max-response-header-size', kind: 'bytes', default: DEFAULTS.maxHeadSize, min: 1024,
    commands: ['front'], help: 'largest response head taken from a backend, decoded (bytes); larger ones get 502' },
  { key: 'pingInterval', flag: '--ping-interval', kind: 'seconds', default: 5, commands: ['front', 'serve'],
    help: 'seconds between health pings on each tsgi connection (front: to backends; serve: to fronts) (0: none)' },
  { key: 'pingTimeout', flag: '--ping-timeout', kind: 'seconds', default: 10, commands: ['front', 'serve'],
    help: 'seconds without a pong, or a new tsgi connection without HELLO, before the connection is dropped' },
  // serve
  { key: 'socket', flag: '--socket', env: 'TSGI_SOCKET', kind: 'string', commands: ['serve'],
    help: 'Unix socket path to serve the tsgi protocol on (same as --listen unix:PATH)' },
  { key: 'uwsgiSocket', flag: '--uwsgi-socket', env: 'TSGI_UWSGI_SOCKET', kind: 'string', commands: ['serve'],
    help: 'Unix socket path to also serve the uwsgi protocol on (nginx: uwsgi_pass unix:PATH)' },
  { key: 'uwsgiListen', flag: '--uwsgi-listen', env: 'TSGI_UWSGI_LISTEN', kind: 'address', commands: ['serve'],
    help: 'HOST:PORT (or unix:PATH) to also serve the uwsgi protocol on' },
  { key: 'processes', flag: '--processes', env: 'TSGI_PROCESSES', kind: 'int', default: 1, min: 1, max: 64, commands: ['front'],
    help: 'front processes sharing the listener, each with its own connections to every backend (1: one process, no primary)' },
  { key: 'workers', flag: '--workers', short: '-w', env: 'TSGI_WORKERS', kind: 'int', min: 1, max: 256, commands: ['serve'],
    help: 'run a supervisor and N worker processes sharing the socket (without it: one process, no supervisor)' },
  { key: 'timeout', flag: '--timeout', env: 'TSGI_TIMEOUT', kind: 'seconds', default: 0, commands: ['serve'],
    help: 'a request running longer is answered 504 at once (cut, if its head went out); with --workers its worker is killed after 1 s and replaced (0: never)' },
  { key: 'maxRequests', flag: '--max-requests', env: 'TSGI_MAX_REQUESTS', kind: 'int', default: 0, min: 0, commands: ['serve'],
    help: 'with --workers: recycle a worker after this many requests (0: never)' },
  { key: 'maxRequestsJitter', flag: '--max-requests-jitter', kind: 'int', default: 0, min: 0, commands: ['serve'],
    help: 'add up to this many (random) to --max-requests per worker, so they do not recycle together' },
  { key: 'register', flag: '--register', env: 'TSGI_REGISTER', kind: 'string', commands: ['serve'],
    help: 'a front\'s control socket (PATH), or tls:HOST:PORT of its --control-listen (mutual TLS with --tls-*): announce this backend there when ready, withdraw it on graceful stop' },
  { key: 'advertise', flag: '--advertise', env: 'TSGI_ADVERTISE', kind: 'address', commands: ['serve'],
    help: 'HOST:PORT --register announces, as fronts on other hosts reach it (default: the --listen address, unless it is a wildcard such as 0.0.0.0)' },
  { key: 'gracefulTimeout', flag: '--graceful-timeout', env: 'TSGI_GRACEFUL_TIMEOUT', kind: 'seconds', default: 30,
    commands: ['serve', 'front'], help: 'seconds in-flight requests get to finish on SIGTERM' },
  { key: 'shutdownDelay', flag: '--shutdown-delay', env: 'TSGI_SHUTDOWN_DELAY', kind: 'seconds', commands: ['serve', 'front'],
    help: 'seconds to keep serving after SIGTERM, with /readyz already 503, before draining (default: 5 in a Kubernetes pod, where KUBERNETES_SERVICE_HOST is set; else 0)' },
  { key: 'tlsCa', flag: '--tls-ca', env: 'TSGI_TLS_CA', kind: 'string', commands: ['serve'],
    help: 'PEM CA file: only fronts with a certificate it signs may connect' },
  { key: 'scriptName', flag: '--script-name', env: 'SCRIPT_NAME', kind: 'string', meta: 'PREFIX', default: '', commands: ['serve'],
    help: 'URL prefix the app is mounted at: becomes SCRIPT_NAME and is cut from PATH_INFO' },
  { key: 'maxRequestHeaderSize', flag: '--max-request-header-size', kind: 'bytes', default: DEFAULTS.maxHeadSize, min: 1024,
    commands: ['serve'], help: 'largest request head taken from a front, decoded (bytes); the stream is refused beyond' },
  { key: 'maxStreams', flag: '--max-streams', kind: 'int', default: DEFAULTS.maxStreams, min: 1, commands: ['serve'],
    help: 'concurrent requests per front connection' },
  // both
  { key: 'window', flag: '--window', kind: 'bytes', default: DEFAULTS.initialWindow, min: 1024, max: 0x7fffffff,
    commands: ['front', 'serve'], help: 'flow-control window per stream (bytes buffered per request body direction)' },
  { key: 'maxFrameSize', flag: '--max-frame-size', kind: 'bytes', default: DEFAULTS.maxFrameSize, min: 16384, max: 64 * 1024 * 1024,
    commands: ['front', 'serve'], help: 'largest frame accepted from the peer (bytes)' },
  { key: 'admin', flag: '--admin', env: 'TSGI_ADMIN', kind: 'address', commands: ['front', 'serve'],
    help: 'HOST:PORT (or unix:PATH) for the admin server: /metrics (Prometheus), /status (JSON), / (live status page)' },
  { key: 'requestIdHeader', flag: '--request-id-header', meta: 'NAME', env: 'TSGI_REQUEST_ID_HEADER', kind: 'string', default: 'x-request-id',
    commands: ['front', 'serve'], help: 'front: the request id header, kept if a request has one, else added (a new id) for the app; both: the id named in log lines about the request' },
  { key: 'otlpEndpoint', flag: '--otlp-endpoint', meta: 'URL', env: 'TSGI_OTLP_ENDPOINT', kind: 'string', commands: ['front', 'serve'],
    help: 'OTLP/HTTP traces URL (e.g. http://127.0.0.1:4318/v1/traces): export a span per request (front: accept to end; serve: the app call), W3C traceparent propagated; none by default' },
  { key: 'socketMode', flag: '--socket-mode', kind: 'mode', default: 0o660, commands: ['front', 'serve'],
    help: 'permissions of Unix sockets we create (octal)' },
  { key: 'logLevel', flag: '--log-level', env: 'TSGI_LOG_LEVEL', kind: 'level', default: 'info',
    commands: ['front', 'serve', 'run', 'demo'], help: `log threshold: ${LOG_LEVELS.join(', ')}` },
  { key: 'config', flag: '--config', short: '-c', env: 'TSGI_CONFIG', kind: 'string', commands: ['front', 'serve'], meta: 'FILE',
    help: 'JSON file of options: {"listen": "…", "backend": ["unix:…"], "response-timeout": 30, …} (flag names without --); SIGHUP re-reads the front\'s backends from it' },
  { key: 'check', flag: '--check', kind: 'bool', default: false, commands: ['front', 'serve'],
    help: 'check the options (serve: and load the app) without binding anything, then exit: 0 if all is well, 2 or 3 if not' },
  { key: 'appModule', flag: '--app', env: 'TSGI_APP', kind: 'string', commands: ['serve', 'run'], meta: 'APP_MODULE',
    help: 'the application module, as a config file names it ("app": "app.js"); APP_MODULE on the command line wins' },
  // demo
  { key: 'port', flag: '--port', short: '-p', env: 'PORT', kind: 'int', default: 8080, min: 0, max: 65535, commands: ['demo'],
    meta: 'PORT', help: 'port for the demo front on 127.0.0.1' },
  // run
  { key: 'port', flag: '--port', short: '-p', env: 'PORT', kind: 'int', default: 8000, min: 0, max: 65535, commands: ['run'],
    meta: 'PORT', help: 'port on 127.0.0.1 for the development server (--listen picks another address)' },
  { key: 'reload', flag: '--reload', env: 'TSGI_RELOAD', kind: 'bool', default: false, commands: ['run'],
    help: 'restart the app when a file under its directory changes (development only)' },
] as const satisfies readonly OptionSpec[];

export const OPTIONS: readonly OptionSpec[] = TABLE;

type Spec = (typeof TABLE)[number];

/** What each kind of option holds once parsed. */
interface KindValues {
  string: string;
  strings: string[];
  int: number;
  seconds: number;
  bytes: number;
  mode: number;
  address: Address;
  addresses: Address[];
  level: LogLevel;
  proxies: string[];
  choice: string;
  mounts: StaticMount[];
  bool: boolean;
}

type ValueOf<S extends Spec> = S extends { readonly choices: readonly (infer C)[] } ? C : KindValues[S['kind']];

/**
 * The options of a command, typed from the table: one field per option, by its key; those with a
 * default are always set once resolved, the others may be undefined.
 */
export type Options<C extends Command> = {
  -readonly [S in Spec as C extends S['commands'][number] ? S['key'] : never]:
    S extends { readonly default: unknown } ? ValueOf<S> : ValueOf<S> | undefined;
};

/** The default of an option, from the table (the one place each default is written). */
export function defaultOf<K extends Spec['key']>(key: K): Extract<Spec, { key: K }> extends { default: infer D } ? D : undefined {
  return OPTIONS.find((o) => o.key === key)?.default as never;
}

/** Checks a value given in code (an embedder's config) as the command line would: a ConfigError says what to use. */
function checkValue(spec: OptionSpec, value: unknown): void {
  const bad = (expected: string) => {
    throw new ConfigError(`${spec.flag}: expected ${expected}, got ${JSON.stringify(value)}`);
  };
  switch (spec.kind) {
    case 'bool':
      if (typeof value !== 'boolean') bad('true or false');
      return;
    case 'int':
    case 'seconds':
    case 'bytes':
    case 'mode':
      if (typeof value !== 'number' || !Number.isFinite(value)) bad('a number');
      if (spec.kind === 'int' && !Number.isInteger(value)) bad('a whole number');
      if ((value as number) < (spec.min ?? 0)) bad(`at least ${spec.min ?? 0}`);
      if (spec.max !== undefined && (value as number) > spec.max) bad(`at most ${spec.max}`);
      return;
    case 'choice':
      if (!spec.choices!.includes(value as string)) bad(`one of ${spec.choices!.join(', ')}`);
      return;
    case 'level':
      if (!LOG_LEVELS.includes(value as LogLevel)) bad(`one of ${LOG_LEVELS.join(', ')}`);
      return;
    case 'string':
      if (typeof value !== 'string') bad('a string');
      return;
    case 'strings':
    case 'addresses':
    case 'proxies':
    case 'mounts':
      if (!Array.isArray(value)) bad('a list');
      return;
    case 'address':
      if (value === null || typeof value !== 'object') bad('an address');
  }
}

/**
 * The options of `command` from what an embedder (or the CLI) gave: each value checked as a
 * flag's would be, each missing one set to the table's default. Keys the table does not know
 * (callbacks, the app) pass through.
 */
export function resolveOptions<C extends Command, G extends Partial<Options<C>>>(command: C, given: G): Options<C> & G {
  const out: Record<string, unknown> = { ...given };
  for (const spec of OPTIONS) {
    if (!spec.commands.includes(command)) continue;
    const value = out[spec.key];
    if (value === undefined) {
      if (spec.default !== undefined) out[spec.key] = Array.isArray(spec.default) ? [...spec.default] : spec.default;
    } else {
      checkValue(spec, value);
    }
  }
  return out as Options<C> & G;
}

export type Origin = 'flag' | 'env' | 'file' | 'default';

export interface ParsedOptions<C extends Command = Command> {
  /** Every option of the command: given, or its default (undefined when it has none). */
  values: Options<C>;
  /** Where each value came from. */
  origin: Record<string, Origin>;
  positionals: string[];
  help: boolean;
}

function fail(spec: OptionSpec, raw: string, expected: string): never {
  throw new ConfigError(`${spec.flag}: expected ${expected}, got '${raw}'`);
}

function parseMount(raw: string, flag: string): StaticMount {
  const eq = raw.indexOf('=');
  if (eq <= 0 || eq === raw.length - 1 || !raw.startsWith('/')) {
    throw new ConfigError(`${flag}: expected /PREFIX=DIR, such as /static=./public, got '${raw}'`);
  }
  let prefix = raw.slice(0, eq);
  while (prefix.length > 1 && prefix.endsWith('/')) prefix = prefix.slice(0, -1);
  if (/[?#%\\]/.test(prefix) || prefix.split('/').some((seg) => seg === '.' || seg === '..')) {
    throw new ConfigError(`${flag}: the prefix '${prefix}' must be a plain URL path (no ?, #, %, \\, . or .. segments)`);
  }
  return { prefix, dir: raw.slice(eq + 1) };
}

function convert(spec: OptionSpec, raw: string): unknown {
  switch (spec.kind) {
    case 'string':
      return raw;
    case 'bool':
      if (!/^(true|false|yes|no|1|0)$/i.test(raw)) fail(spec, raw, 'true or false');
      return /^(true|yes|1)$/i.test(raw);
    case 'strings':
      return raw.split(',').map((v) => v.trim()).filter(Boolean);
    case 'address':
      return parseAddress(raw, spec.flag);
    case 'addresses':
      return raw.split(',').filter(Boolean).map((a) => parseAddress(a.trim(), spec.flag, true));
    case 'proxies':
      return parseTrustProxy(raw, spec.flag);
    case 'mounts':
      return raw.split(',').filter(Boolean).map((m) => parseMount(m.trim(), spec.flag));
    case 'choice':
      if (!spec.choices!.includes(raw)) fail(spec, raw, `one of ${spec.choices!.join(', ')}`);
      return raw;
    case 'level':
      if (!LOG_LEVELS.includes(raw as LogLevel)) fail(spec, raw, `one of ${LOG_LEVELS.join(', ')}`);
      return raw;
    case 'mode':
      if (!/^0?[0-7]{3}$/.test(raw)) fail(spec, raw, 'an octal mode such as 660');
      return parseInt(raw, 8);
    case 'int':
    case 'seconds':
    case 'bytes': {
      const m = spec.kind === 'bytes' ? /^(\d+)([kKmMgG]?)$/.exec(raw) : /^\d+(\.\d+)?$/.exec(raw);
      if (m === null) {
        fail(spec, raw, spec.kind === 'bytes' ? 'a size such as 65536, 64k or 1m'
          : spec.kind === 'seconds' ? 'a number of seconds' : 'a whole number');
      }
      let n = Number(spec.kind === 'bytes' ? m[1] : raw);
      if (spec.kind === 'bytes') n *= { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase()]!;
      if (spec.kind === 'int' && !Number.isInteger(n)) fail(spec, raw, 'a whole number');
      if (spec.min !== undefined && n < spec.min) fail(spec, raw, `at least ${spec.min}`);
      if (spec.max !== undefined && n > spec.max) fail(spec, raw, `at most ${spec.max}`);
      return n;
    }
  }
}

/**
 * Parses argv for a command. Precedence: flag, then environment variable, then default.
 * `--flag value` and `--flag=value` both work; `--backend` (a list) may repeat.
 */
/**
 * Reads a JSON config file: an object whose keys are flag names without the dashes and whose
 * values are what the flag takes (a list for a repeatable flag).
 */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`--config: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`--config: ${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError(`--config: ${path} must hold a JSON object of options`);
  }
  return data as Record<string, unknown>;
}

/**
 * Parses argv for a command. Precedence: flag, then environment variable, then the config
 * file (--config), then the default. `--flag value` and `--flag=value` both work; `--backend`
 * (a list) may repeat.
 */
export function parseOptions<C extends Command>(command: C, argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ParsedOptions<C> {
  const specs = OPTIONS.filter((o) => o.commands.includes(command));
  const byFlag = new Map<string, OptionSpec>();
  for (const s of specs) {
    for (const name of [s.flag, ...(s.aliases ?? []), ...(s.short !== undefined ? [s.short] : [])]) byFlag.set(name, s);
  }
  const values: Record<string, unknown> = {};
  const origin: Record<string, Origin> = {};
  const positionals: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') { help = true; continue; }
    if (arg === '--') { positionals.push(...argv.slice(i + 1)); break; }
    const short = /^-[A-Za-z]/.test(arg);
    if (!arg.startsWith('--') && !short) { positionals.push(arg); continue; }
    // -w4 and -w=4 are -w 4; --flag=value is --flag value.
    const eq = short ? (arg.length > 2 ? 2 : -1) : arg.indexOf('=');
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const spec = byFlag.get(flag);
    if (spec === undefined) {
      const known = specs.map((s) => s.flag).join(' ');
      throw new ConfigError(`unknown option ${flag} for 'tsgi ${command}' (options: ${known} --help)`);
    }
    let raw: string;
    if (eq !== -1) raw = arg.slice(arg[eq] === '=' ? eq + 1 : eq);
    else if (spec.kind === 'bool') raw = 'true';
    else {
      const next = argv[++i];
      if (next === undefined) throw new ConfigError(`${flag} needs a value`);
      raw = next;
    }
    const value = convert(spec, raw);
    if (LIST_KINDS.has(spec.kind)) values[spec.key] = [...((values[spec.key] as unknown[]) ?? []), ...(value as unknown[])];
    else values[spec.key] = value;
    origin[spec.key] = 'flag';
  }
  const configPath = (values.config as string | undefined) ?? (specs.some((s) => s.key === 'config') ? env.TSGI_CONFIG : undefined);
  const file = configPath ? configValues(command, readConfigFile(configPath), configPath) : {};
  for (const spec of specs) {
    if (values[spec.key] !== undefined) continue;
    const raw = spec.env !== undefined ? env[spec.env] : undefined;
    if (raw !== undefined && raw !== '') {
      values[spec.key] = convert(spec, raw);
      origin[spec.key] = 'env';
    } else if (file[spec.key] !== undefined) {
      values[spec.key] = file[spec.key];
      origin[spec.key] = 'file';
    } else if (spec.default !== undefined) {
      values[spec.key] = spec.default;
      origin[spec.key] = 'default';
    }
  }
  return { values: values as Options<C>, origin, positionals, help };
}

/** Converts a config file's entries with the same checks as flags; unknown keys are errors. */
export function configValues(command: Command, data: Record<string, unknown>, path: string): Record<string, unknown> {
  const specs = OPTIONS.filter((o) => o.commands.includes(command));
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(data)) {
    const spec = specs.find((s) => s.flag === `--${name}`);
    if (spec === undefined) {
      throw new ConfigError(`${path}: unknown option "${name}" for 'tsgi ${command}' (keys are flag names without --)`);
    }
    if (spec.key === 'config') continue;
    const items = Array.isArray(value) ? value : [value];
    if (items.length !== 1 && !LIST_KINDS.has(spec.kind)) throw new ConfigError(`${path}: "${name}" takes one value`);
    const converted = items.map((v) => (spec.kind === 'bool' && typeof v === 'boolean' ? v : convert(spec, String(v))));
    out[spec.key] = LIST_KINDS.has(spec.kind) ? converted.flat() : converted[0];
  }
  return out;
}

/** The options part of `tsgi COMMAND --help`, generated from the table: grouped, each with its metavariable. */
export function optionsHelp(command: Command): string {
  const specs = OPTIONS.filter((o) => o.commands.includes(command));
  const row = (s: OptionSpec) => {
    const def = s.default === undefined || s.default === '' || s.default === false || (Array.isArray(s.default) && s.default.length === 0) ? ''
      : ` (default: ${s.kind === 'mode' ? (s.default as number).toString(8) : String(s.default)})`;
    const env = s.env ? ` [env ${s.env}]` : '';
    const meta = s.kind === 'bool' ? '' : ` ${s.meta ?? (s.choices ? s.choices.join('|') : META[s.kind])}`;
    const names = [...(s.short !== undefined ? [s.short] : []), s.flag, ...(s.aliases ?? [])].join(', ');
    const left = `  ${names}${meta}`;
    return `${left.length > 31 ? `${left}\n${' '.repeat(33)}` : left.padEnd(33)}${s.help}${def}${env}`;
  };
  const out: string[] = [];
  const listed = new Set<string>();
  for (const [title, keys] of [...GROUPS, ['Other options', specs.map((s) => s.key)] as const]) {
    const rows = specs.filter((s) => keys.includes(s.key) && !listed.has(s.key));
    if (rows.length === 0) continue;
    for (const s of rows) listed.add(s.key);
    out.push(`${title}:`, ...rows.map(row), '');
  }
  return out.join('\n').trimEnd();
}
