// Log lines for humans and for grep: one line each, to stderr, with a level and a component.
// `TSGI_LOG_LEVEL` (or --log-level) picks the threshold: debug, info, warn, error, silent.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };
export const LOG_LEVELS = Object.keys(RANK) as LogLevel[];

let threshold = RANK[(process.env.TSGI_LOG_LEVEL as LogLevel) ?? 'info'] ?? RANK.info;

export function setLogLevel(level: LogLevel): void {
  threshold = RANK[level];
}

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string, err?: unknown): void;
  enabled(level: LogLevel): boolean;
}

export function createLogger(component: string): Logger {
  const tag = `tsgi ${component}[${process.pid}]`;
  const emit = (level: LogLevel, message: string, err?: unknown) => {
    if (RANK[level] < threshold) return;
    let line = `${new Date().toISOString()} ${tag} ${level}: ${message}`;
    if (err !== undefined) {
      const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
      line += `\n  ${detail.replace(/\n/g, '\n  ')}`;
    }
    process.stderr.write(line + '\n');
  };
  return {
    debug: (m) => emit('debug', m),
    info: (m) => emit('info', m),
    warn: (m) => emit('warn', m),
    error: (m, err) => emit('error', m, err),
    enabled: (level) => RANK[level] >= threshold,
  };
}
